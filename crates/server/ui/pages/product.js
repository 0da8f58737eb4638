// #/products/{id}: a product's things (paged, sorted, searched server-side, latest values updated
// live), its activation codes (generate, list, CSV) and its settings (edit, delete).

import { enc, withQuery } from '../api.js';
import {
  announce,
  clearError,
  commandBlock,
  confirmDialog,
  debounce,
  field,
  h,
  jsonText,
  showError,
  tableWrap,
  timeEl,
} from '../dom.js';
import { liveIndicator, openLive } from '../live.js';
import { keysOf, resourcesFromInputs } from './products.js';

const PAGE = 25;
const CODES_SHOWN = 200;
const SORTS = { thingId: 'asc', name: 'asc', activatedAt: 'desc' };

export async function render(ctx) {
  const id = ctx.params[0];
  const base = `/v2/panel/products/${enc(id)}`;
  const idLine = h('p', { class: 'muted' }, 'Product ID ', h('code', { testid: 'product-id' }, id));
  ctx.title('Product', idLine);

  let product = null;
  let codes = [];
  const state = {
    q: ctx.query.get('q') || '',
    sort: SORTS[ctx.query.get('sort')] ? ctx.query.get('sort') : 'activatedAt',
    order: ctx.query.get('order') === 'asc' || ctx.query.get('order') === 'desc' ? ctx.query.get('order') : null,
    skip: Math.max(0, Number.parseInt(ctx.query.get('skip') || '0', 10) || 0),
  };
  if (!state.order) state.order = SORTS[state.sort];

  // =============================== things ===============================
  const search = h('input', {
    type: 'search',
    testid: 'things-search',
    placeholder: 'thingId prefix or name',
    autocomplete: 'off',
    value: state.q,
  });
  const live = liveIndicator();
  const thead = h('thead');
  const tbody = h('tbody');
  const table = h('table', { testid: 'things-table', class: 'things' }, h('caption', { class: 'visually-hidden' }, 'Things of the product'), thead, tbody);
  const totalEl = h('span', { testid: 'things-total' }, '0');
  const rangeEl = h('span');
  const prev = h('button', { type: 'button', testid: 'things-prev' }, '‹ Previous');
  const next = h('button', { type: 'button', testid: 'things-next' }, 'Next ›');
  const pager = h('div', { class: 'pager' }, h('p', { 'aria-live': 'polite' }, rangeEl, totalEl, ' things'), h('div', { class: 'buttons' }, prev, next));
  const empty = h('div', { class: 'empty', testid: 'things-empty', hidden: true });
  const noMatch = h('p', { class: 'empty', hidden: true });
  const thingsWrap = tableWrap(table, 'Things table');
  const thingsSection = h(
    'section',
    { class: 'card', 'aria-labelledby': 'things-h' },
    h('div', { class: 'section-head' }, h('h2', { id: 'things-h' }, 'Things'), live.el),
    field('Search things', search, 'Matches the start of the thingId or part of the name.'),
    thingsWrap,
    pager,
    noMatch,
    empty,
  );

  let rows = new Map(); // thingId -> {tr, cells: {key: td}, name, lastSeen}
  let stream = null;
  let loadSeq = 0;
  let declared = [];
  let emptyPoll = 0;
  ctx.onLeave(() => clearTimeout(emptyPoll));

  function header() {
    const sortable = (key, label) => {
      const th = h('th', { scope: 'col', testid: `sort-${key}`, class: 'sortable' });
      if (state.sort === key) th.setAttribute('aria-sort', state.order === 'asc' ? 'ascending' : 'descending');
      const arrow = state.sort === key ? (state.order === 'asc' ? ' ▲' : ' ▼') : '';
      th.append(h('button', { type: 'button', class: 'sort' }, label, h('span', { 'aria-hidden': 'true' }, arrow)));
      th.addEventListener('click', () => {
        if (state.sort === key) state.order = state.order === 'asc' ? 'desc' : 'asc';
        else {
          state.sort = key;
          state.order = SORTS[key];
        }
        state.skip = 0;
        header();
        loadThings().catch(ctx.fail);
        // The header was rebuilt: keep the focus on the column the user sorted.
        thead.querySelector(`[data-testid="sort-${key}"] button`)?.focus();
      });
      return th;
    };
    const tr = h(
      'tr',
      null,
      sortable('thingId', 'Thing ID'),
      sortable('name', 'Name'),
      sortable('activatedAt', 'Activated'),
      h('th', { scope: 'col' }, 'Last seen'),
      ...declared.map((k) => h('th', { scope: 'col', class: 'num' }, k)),
    );
    thead.replaceChildren(tr);
  }

  function valueCell(key, item) {
    const td = h('td', { testid: `latest-${key}`, class: 'value' });
    setValue(td, item);
    return td;
  }

  function setValue(td, item) {
    if (!item) {
      td.textContent = '';
      td.append(h('span', { class: 'muted' }, '—'));
      td.removeAttribute('title');
      delete td.dataset.datetime;
      return;
    }
    td.textContent = jsonText(item.value);
    if (item.datetime) {
      td.dataset.datetime = item.datetime;
      td.title = new Date(item.datetime).toLocaleString();
    }
  }

  function flash(el) {
    el.classList.remove('flash');
    void el.offsetWidth; // restart the animation
    el.classList.add('flash');
  }

  function thingsUrl() {
    return withQuery(`${base}/things`, { limit: PAGE, skip: state.skip, sort: state.sort, order: state.order, q: state.q });
  }

  /** `early`: the answer's promise when the request was already started (the first load). */
  async function loadThings(early) {
    const seq = ++loadSeq;
    ctx.setQuery({
      q: state.q,
      sort: state.sort === 'activatedAt' ? null : state.sort,
      order: state.order === SORTS[state.sort] ? null : state.order,
      skip: state.skip || null,
    });
    const res = await (early || ctx.get(thingsUrl()));
    if (seq !== loadSeq) return; // a newer request (typing) won
    const things = res.things || [];
    const total = Number(res.total ?? things.length);
    if (things.length === 0 && state.skip > 0 && total > 0) {
      // The page emptied (things deleted): go back to the last page.
      state.skip = Math.max(0, Math.floor((total - 1) / PAGE) * PAGE);
      return loadThings();
    }
    rows = new Map();
    tbody.replaceChildren(
      ...things.map((t) => {
        const cells = {};
        const nameTd = h('td', { testid: 'thing-name' }, t.name || h('span', { class: 'muted' }, '—'));
        const seenTd = h('td', { testid: 'thing-last-seen' }, timeEl(t.lastSeen, 'never'));
        const tr = h(
          'tr',
          { testid: 'thing-row', dataset: { id: t.thingId } },
          h('td', null, h('a', { href: `#/things/${enc(t.thingId)}` }, h('code', null, t.thingId))),
          nameTd,
          h('td', null, timeEl(t.activatedAt)),
          seenTd,
          ...declared.map((k) => (cells[k] = valueCell(k, t.latest && t.latest[k]))),
        );
        rows.set(t.thingId, { tr, cells, nameTd, seenTd, lastSeen: t.lastSeen ? Date.parse(t.lastSeen) : 0 });
        return tr;
      }),
    );
    totalEl.textContent = String(total);
    rangeEl.textContent = things.length ? `${state.skip + 1}–${state.skip + things.length} of ` : '';
    prev.disabled = state.skip <= 0;
    next.disabled = state.skip + things.length >= total;
    const none = things.length === 0;
    thingsWrap.hidden = none;
    pager.hidden = none && !state.q;
    noMatch.hidden = !(none && state.q);
    noMatch.textContent = none && state.q ? `No thing matches “${state.q}”.` : '';
    empty.hidden = !(none && !state.q && state.skip === 0);
    renderEmpty();
    connectLive();
    // While the product has no thing, look again every few seconds: the first activation (the
    // curl above) then shows up without a reload.
    clearTimeout(emptyPoll);
    if (!empty.hidden) emptyPoll = setTimeout(() => loadThings().catch(ctx.fail), 5000);
  }

  function renderEmpty() {
    if (empty.hidden) return;
    const unused = codes.find((c) => !c.used);
    const code = unused ? unused.code : 'ACTIVATION_CODE';
    const host = location.host;
    const activate = `curl -k -X POST https://${host}/v2/things -H 'Content-Type: application/json' -d '{"activationCode":"${code}"}'`;
    const key = declared[0] || 'temperature';
    const write = `curl -k -X POST https://${host}/v2/things/THING_TOKEN -H 'Content-Type: application/json' -d '{"values":[{"key":"${key}","value":21.5}]}'`;
    empty.replaceChildren(
      h('p', null, h('strong', null, 'No things yet.')),
      unused
        ? h('p', null, 'Activate a first thing with one of this product’s unused activation codes:')
        : h(
            'p',
            null,
            'This product has no unused activation code: generate one in ',
            h('a', { href: '#codes-h', class: 'inpage' }, 'Activation codes'),
            ' below, and this command will show it. Then activate a first thing with it:',
          ),
      commandBlock(activate, 'things-empty-curl'),
      h(
        'p',
        null,
        'The answer holds the thing’s ',
        h('code', null, 'thingToken'),
        ' (the thing’s secret: the device keeps it). The thing then writes values with it:',
      ),
      commandBlock(write),
      h('p', { class: 'muted' }, '-k accepts the server’s self-signed certificate; drop it when the server has a real one.'),
    );
  }

  function connectLive() {
    if (stream) stream.close();
    stream = openLive([...rows.keys()], {
      onState: (s) => live.set(rows.size ? s : 'closed'),
      onValues: (msg) => {
        const row = rows.get(msg.thingId);
        if (!row) return;
        for (const v of msg.values || []) {
          if (row.cells[v.key]) {
            setValue(row.cells[v.key], v);
            flash(row.cells[v.key]);
          }
          if (v.key === '$settings.name' || (v.key === '$settings' && v.value && typeof v.value === 'object' && 'name' in v.value)) {
            const name = v.key === '$settings' ? v.value.name : v.value;
            row.nameTd.textContent = typeof name === 'string' ? name : jsonText(name);
          }
          const ms = Date.parse(v.datetime);
          if (ms && ms >= row.lastSeen) {
            row.lastSeen = ms;
            row.seenTd.replaceChildren(timeEl(new Date(ms).toISOString()));
            flash(row.seenTd);
          }
        }
      },
      onReady: (reconnected) => {
        if (reconnected) loadThings().catch(ctx.fail); // refetch what the gap may have missed
      },
      onEnd: (env) => {
        if (Number(env.code) === 404) loadThings().catch(ctx.fail); // a thing was deleted
      },
    });
    if (!rows.size) live.set('closed');
  }
  ctx.onLeave(() => stream && stream.close());

  const runSearch = debounce(() => {
    state.q = search.value.trim();
    state.skip = 0;
    loadThings().catch(ctx.fail);
  }, 300);
  ctx.onLeave(() => runSearch.cancel());
  search.addEventListener('input', runSearch);
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      runSearch.cancel();
      state.q = search.value.trim();
      state.skip = 0;
      loadThings().catch(ctx.fail);
    }
  });
  prev.addEventListener('click', () => {
    state.skip = Math.max(0, state.skip - PAGE);
    loadThings().catch(ctx.fail);
  });
  next.addEventListener('click', () => {
    state.skip += PAGE;
    loadThings().catch(ctx.fail);
  });

  // =============================== activation codes ===============================
  const count = h('input', { type: 'number', testid: 'codes-count', min: '1', max: '1000', step: '1', value: '1', inputmode: 'numeric' });
  const generate = h('button', { type: 'submit', class: 'primary', testid: 'codes-generate' }, 'Generate');
  const csv = h('a', { href: `${base}/activation-codes?format=csv`, download: `activation-codes-${id}.csv`, testid: 'codes-csv', class: 'button' }, 'Download CSV');
  const codesBody = h('tbody');
  const codesTable = h(
    'table',
    { testid: 'codes-table' },
    h('caption', { class: 'visually-hidden' }, 'Activation codes'),
    h('thead', null, h('tr', null, ...['Code', 'Status', 'Thing', 'Created', 'Used'].map((t) => h('th', { scope: 'col' }, t)))),
    codesBody,
  );
  const codesSummary = h('p', { class: 'muted', testid: 'codes-summary' });
  const codesForm = h(
    'form',
    { class: 'inline-form', 'aria-label': 'Generate activation codes' },
    field('Number of codes', count),
    generate,
    csv,
  );
  const codesWrap = tableWrap(codesTable, 'Activation codes table');
  codesWrap.classList.add('tall');
  const codesSection = h(
    'section',
    { class: 'card', 'aria-labelledby': 'codes-h' },
    h('h2', { id: 'codes-h', tabindex: '-1' }, 'Activation codes'),
    h('p', { class: 'muted' }, 'A device activates once with an unused code and becomes a thing of this product.'),
    codesForm,
    codesSummary,
    codesWrap,
  );

  async function loadCodes(early) {
    const res = await (early || ctx.get(`${base}/activation-codes`));
    codes = (res.codes || []).slice();
    codes.sort((a, b) => Number(a.used) - Number(b.used) || String(b.createdAt).localeCompare(String(a.createdAt)));
    const unused = codes.filter((c) => !c.used).length;
    codesSummary.textContent = codes.length
      ? `${codes.length} code${codes.length === 1 ? '' : 's'}, ${unused} unused${codes.length > CODES_SHOWN ? ` (the first ${CODES_SHOWN} shown: download the CSV for all)` : ''}.`
      : 'No activation codes yet: generate some.';
    codesBody.replaceChildren(
      ...codes.slice(0, CODES_SHOWN).map((c) =>
        h(
          'tr',
          { testid: 'code-row', dataset: { code: c.code, used: String(!!c.used) } },
          h('td', null, h('code', null, c.code)),
          h('td', null, h('span', { class: c.used ? 'badge' : 'badge ok' }, c.used ? 'used' : 'unused')),
          h('td', null, c.thingId ? h('a', { href: `#/things/${enc(c.thingId)}` }, h('code', null, c.thingId)) : h('span', { class: 'muted' }, '—')),
          h('td', null, timeEl(c.createdAt)),
          h('td', null, timeEl(c.usedAt)),
        ),
      ),
    );
    codesWrap.hidden = codes.length === 0;
    renderEmpty();
  }

  codesForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    const n = Number.parseInt(count.value, 10);
    if (!Number.isFinite(n) || n < 1) {
      showError('The number of codes must be a whole number of at least 1.');
      count.focus();
      return;
    }
    generate.disabled = true;
    try {
      const res = await ctx.api('POST', `${base}/activation-codes`, { count: n });
      await loadCodes();
      const made = res.codes || [];
      for (const tr of codesBody.querySelectorAll('tr')) if (made.includes(tr.dataset.code)) tr.classList.add('flash');
      announce(`${made.length} activation code${made.length === 1 ? '' : 's'} generated`);
    } catch (err) {
      ctx.fail(err);
    } finally {
      generate.disabled = false;
    }
  });

  // =============================== settings ===============================
  const nameIn = h('input', { type: 'text', testid: 'product-name-input', required: true, maxlength: '200', autocomplete: 'off' });
  const pubIn = h('input', { type: 'text', testid: 'product-public-input', autocomplete: 'off' });
  const privIn = h('input', { type: 'text', testid: 'product-private-input', autocomplete: 'off' });
  const save = h('button', { type: 'submit', class: 'primary', testid: 'product-save' }, 'Save');
  const del = h('button', { type: 'button', class: 'danger', testid: 'product-delete' }, 'Delete product');
  const settingsForm = h(
    'form',
    { class: 'card', 'aria-labelledby': 'settings-h' },
    h('h2', { id: 'settings-h' }, 'Settings'),
    field('Name', nameIn),
    h(
      'div',
      { class: 'row' },
      field('Public resource keys', pubIn, 'Comma-separated; apps may be granted these.'),
      field('Private resource keys', privIn, 'Comma-separated.'),
    ),
    h('div', { class: 'actions' }, save, h('span', { class: 'spacer' }), del),
  );

  function fillSettings() {
    nameIn.value = product.name || '';
    pubIn.value = keysOf(product.resources, true).join(', ');
    privIn.value = keysOf(product.resources, false).join(', ');
    ctx.setTitle(product.name || id);
    declared = (product.resources || []).map((r) => r.key);
  }

  settingsForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    if (!nameIn.value.trim()) {
      showError('Give the product a name.');
      nameIn.focus();
      return;
    }
    save.disabled = true;
    try {
      const res = await ctx.api('PUT', base, { name: nameIn.value.trim(), resources: resourcesFromInputs(pubIn.value, privIn.value) });
      product = res.product || (await ctx.get(base)).product;
      fillSettings();
      header();
      await loadThings();
      announce('Product saved');
    } catch (err) {
      ctx.fail(err);
    } finally {
      save.disabled = false;
    }
  });

  del.addEventListener('click', async () => {
    clearError();
    const ok = await confirmDialog(`Delete the product “${product ? product.name : id}”? Its activation codes are deleted with it. This cannot be undone.`);
    if (!ok) {
      del.focus();
      return;
    }
    try {
      await ctx.api('DELETE', base);
      announce('Product deleted');
      ctx.navigate('#/products');
    } catch (err) {
      if (err.status === 409) {
        showError(/delete/i.test(err.message) ? err.message : `${err.message.replace(/[.!]?$/, '.')} Delete its things first (each thing’s page has a Delete button).`);
      } else ctx.fail(err);
      del.focus();
    }
  });

  // In-page links (#codes-h) must not trigger the router: focus the target instead.
  empty.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a.inpage');
    if (!a) return;
    e.preventDefault();
    codesSection.scrollIntoView({ block: 'start' });
    count.focus({ preventScroll: true });
  });

  // The product, its codes and its things are asked for at once; the page is drawn once the
  // product has answered (a 404 shows only the error).
  const productReq = ctx.get(base);
  const codesReq = ctx.get(`${base}/activation-codes`);
  const thingsReq = ctx.get(thingsUrl());
  codesReq.catch(() => {}); // awaited below, unless the product is not found
  thingsReq.catch(() => {});
  let res;
  try {
    res = await productReq;
  } catch (e) {
    if (ctx.notFound(e, 'Product', '#/products', '‹ Back to the products')) return;
    throw e;
  }
  product = res.product || res;
  ctx.main.append(thingsSection, codesSection, settingsForm);
  fillSettings();
  header();
  await Promise.all([loadCodes(codesReq), loadThings(thingsReq)]);
  ctx.ready();
}
