// #/things/{id}: one thing. Its identity and token, the latest value of every key, one chart per
// numeric resource (range buttons, drag-to-zoom refetching finer buckets, live values appended),
// recent values of any key, $settings, $geo, and a write form. Recent values and writes go
// through the Thing API with the thing's token; everything else through the panel API.

import { enc, withQuery } from '../api.js';
import {
  announce,
  clearError,
  confirmDialog,
  copyButton,
  debounce,
  field,
  h,
  jsonText,
  numericValue,
  showError,
  tableWrap,
  timeEl,
  toLocalInput,
} from '../dom.js';
import { liveIndicator, openLive } from '../live.js';

const tall = (el) => {
  el.classList.add('tall');
  return el;
};
const SPANS = { '1h': 3600e3, '1d': 86400e3, '1w': 7 * 86400e3 };
const RANGE_LABELS = { '1h': 'Last hour', '1d': 'Last day', '1w': 'Last week' };
const RECENT = 50;

export async function render(ctx) {
  const id = ctx.params[0];
  const base = `/v2/panel/things/${enc(id)}`;
  ctx.title('Thing');
  // The chart code (and uPlot) loads while the thing's data is asked for.
  const chartModReq = import('../chart.js');
  chartModReq.catch(() => {}); // awaited when the first chart is made

  let thing = null;
  let token = '';
  const latest = new Map(); // key -> {value, datetime}
  const keys = new Set(); // every key known to have values

  // =============================== identity ===============================
  const live = liveIndicator();
  const tokenCode = h('code', { testid: 'thing-token', class: 'secret' });
  const idCode = h('code', { testid: 'thing-id' }, id);
  const productLink = h('a', { href: '#/products' });
  const activated = h('dd');
  const lastSeen = h('dd', { testid: 'thing-last-seen' });
  const del = h('button', { type: 'button', class: 'danger', testid: 'thing-delete' }, 'Delete thing');
  const info = h(
    'section',
    { class: 'card', 'aria-labelledby': 'info-h' },
    h('div', { class: 'section-head' }, h('h2', { id: 'info-h' }, 'Identity'), live.el),
    h(
      'dl',
      { class: 'props' },
      h('dt', null, 'Thing ID'),
      h('dd', null, idCode, copyButton(id, { 'aria-label': 'Copy the thingId', testid: 'thing-id-copy' })),
      h('dt', null, 'Thing token'),
      h('dd', null, tokenCode, copyButton(() => token, { 'aria-label': 'Copy the thing token', testid: 'thing-token-copy' })),
      h('dt', null, 'Product'),
      h('dd', null, productLink),
      h('dt', null, 'Activated'),
      activated,
      h('dt', null, 'Last seen'),
      lastSeen,
    ),
    h('p', { class: 'muted' }, 'The token is the thing’s secret: whoever holds it can write as this thing.'),
    h('div', { class: 'actions' }, h('span', { class: 'spacer' }), del),
  );

  // =============================== latest values ===============================
  const latestBody = h('tbody');
  const latestRows = new Map(); // key -> {valueTd, timeTd}
  const latestTable = h(
    'table',
    { testid: 'latest-table' },
    h('caption', { class: 'visually-hidden' }, 'Latest value of each resource'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Resource'), h('th', { scope: 'col' }, 'Latest value'), h('th', { scope: 'col' }, 'At'))),
    latestBody,
  );
  const latestEmpty = h('p', { class: 'empty', hidden: true }, 'No values yet. Write one with the form at the bottom of the page, or from the device.');
  const latestSection = h(
    'section',
    { class: 'card', 'aria-labelledby': 'latest-h' },
    h('h2', { id: 'latest-h' }, 'Latest values'),
    tableWrap(latestTable, 'Latest values table'),
    latestEmpty,
  );

  function setLatest(key, item, { flash = false } = {}) {
    const cur = latest.get(key);
    if (cur && cur.datetime && item.datetime && Date.parse(item.datetime) < Date.parse(cur.datetime)) return false; // older
    latest.set(key, item);
    let row = latestRows.get(key);
    if (!row) {
      const valueTd = h('td', { testid: `latest-${key}`, class: 'value' });
      const timeTd = h('td');
      const tr = h('tr', { dataset: { key } }, h('th', { scope: 'row' }, h('code', null, key)), valueTd, timeTd);
      row = { tr, valueTd, timeTd };
      latestRows.set(key, row);
      // Keep the rows in key order.
      const after = [...latestRows.keys()].filter((k) => k !== key).sort().find((k) => k > key);
      latestBody.insertBefore(tr, after ? latestRows.get(after).tr : null);
    }
    row.valueTd.textContent = jsonText(item.value);
    row.valueTd.title = jsonText(item.value);
    if (item.datetime) row.valueTd.dataset.datetime = item.datetime;
    row.timeTd.replaceChildren(timeEl(item.datetime));
    if (flash) {
      row.valueTd.classList.remove('flash');
      void row.valueTd.offsetWidth;
      row.valueTd.classList.add('flash');
    }
    latestEmpty.hidden = true;
    return true;
  }

  // =============================== charts ===============================
  const range = { mode: '1d', start: 0, end: 0, before: '1d' };
  const rangeButtons = {};
  const rangeBar = h('div', { class: 'range-bar', role: 'group', 'aria-label': 'Time range' });
  for (const m of ['1h', '1d', '1w']) {
    rangeButtons[m] = h('button', { type: 'button', testid: `range-${m}`, 'aria-pressed': 'false' }, RANGE_LABELS[m]);
    rangeButtons[m].addEventListener('click', () => setRange(m));
    rangeBar.append(rangeButtons[m]);
  }
  const customBtn = h('button', { type: 'button', testid: 'range-custom', 'aria-pressed': 'false', 'aria-expanded': 'false', 'aria-controls': 'custom-range' }, 'Custom…');
  const resetBtn = h('button', { type: 'button', testid: 'range-reset', hidden: true }, 'Reset zoom');
  rangeBar.append(customBtn, resetBtn);
  const startIn = h('input', { type: 'datetime-local', testid: 'range-start', step: '60' });
  const endIn = h('input', { type: 'datetime-local', testid: 'range-end', step: '60' });
  const applyBtn = h('button', { type: 'submit', class: 'primary', testid: 'range-apply' }, 'Apply');
  const customForm = h('form', { id: 'custom-range', class: 'inline-form', hidden: true, 'aria-label': 'Custom time range' }, field('From', startIn), field('To', endIn), applyBtn);
  const rangeText = h('p', { class: 'muted range-text', 'aria-live': 'polite', testid: 'range-text' });
  const chartsBox = h('div', { class: 'charts' });
  const chartsEmpty = h('p', { class: 'empty', hidden: true }, 'No numeric resource yet: a resource gets a chart once its latest value is a number (or a string holding one, such as "23.5").');
  const chartsSection = h(
    'section',
    { class: 'card', 'aria-labelledby': 'charts-h' },
    h('h2', { id: 'charts-h' }, 'Charts'),
    rangeBar,
    customForm,
    rangeText,
    h('p', { class: 'muted small-print' }, 'Drag across a chart to zoom into that span (finer detail is fetched); double-click or Reset zoom to go back.'),
    chartsEmpty,
    chartsBox,
  );
  const charts = new Map(); // key -> {chart, fig, caption, seq}
  let chartMod = null;

  function currentRange() {
    if (SPANS[range.mode]) {
      const end = Date.now();
      return { start: end - SPANS[range.mode], end };
    }
    return { start: range.start, end: range.end };
  }

  function showRangeState() {
    for (const [m, b] of Object.entries(rangeButtons)) b.setAttribute('aria-pressed', String(range.mode === m));
    customBtn.setAttribute('aria-pressed', String(range.mode === 'custom'));
    resetBtn.hidden = range.mode !== 'zoom';
    const r = currentRange();
    const f = (ms) => new Date(ms).toLocaleString();
    rangeText.textContent = SPANS[range.mode]
      ? `${RANGE_LABELS[range.mode]} (live): ${f(r.start)} – now`
      : `${range.mode === 'zoom' ? 'Zoomed' : 'Custom'}: ${f(r.start)} – ${f(r.end)}`;
  }

  function setRange(mode, start, end) {
    if (mode !== 'zoom' && mode !== range.mode) range.before = mode;
    if (mode === 'zoom' && range.mode !== 'zoom') range.before = range.mode;
    range.mode = mode;
    if (start !== undefined) {
      range.start = start;
      range.end = end;
    }
    if (mode !== 'custom') {
      customForm.hidden = true;
      customBtn.setAttribute('aria-expanded', 'false');
    }
    showRangeState();
    refetchCharts().catch(ctx.fail);
  }

  customBtn.addEventListener('click', () => {
    const open = customForm.hidden;
    customForm.hidden = !open;
    customBtn.setAttribute('aria-expanded', String(open));
    if (open) {
      const r = currentRange();
      startIn.value = toLocalInput(r.start);
      endIn.value = toLocalInput(r.end);
      startIn.focus();
    }
  });
  customForm.addEventListener('submit', (e) => {
    e.preventDefault();
    clearError();
    const s = startIn.value ? new Date(startIn.value).getTime() : NaN;
    const en = endIn.value ? new Date(endIn.value).getTime() : NaN;
    if (!Number.isFinite(s) || !Number.isFinite(en) || s >= en) {
      showError('Choose a start before the end.');
      startIn.focus();
      return;
    }
    setRange('custom', s, en);
  });
  customForm.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      customForm.hidden = true;
      customBtn.setAttribute('aria-expanded', 'false');
      customBtn.focus();
    }
  });
  resetBtn.addEventListener('click', () => {
    const back = range.before && range.before !== 'zoom' ? range.before : '1d';
    setRange(back);
    rangeButtons[back]?.focus();
  });
  chartsBox.addEventListener('dblclick', () => {
    if (range.mode === 'zoom') resetBtn.click();
  });

  function chartable(key) {
    return !key.startsWith('$') && latest.has(key) && numericValue(latest.get(key).value) !== null;
  }

  const pendingCharts = new Map(); // key -> Promise of the entry (one chart per key)
  function ensureChart(key) {
    if (charts.has(key)) return Promise.resolve(charts.get(key));
    if (!pendingCharts.has(key)) pendingCharts.set(key, makeChart(key).finally(() => pendingCharts.delete(key)));
    return pendingCharts.get(key);
  }

  async function makeChart(key) {
    if (!chartMod) chartMod = await chartModReq;
    if (!ctx.alive) return null;
    const caption = h('figcaption', null, h('span', { class: 'chart-key' }, key), h('span', { class: 'muted chart-note' }));
    const fig = h('figure', { class: 'chart', testid: `chart-${key}`, dataset: { key, points: '0', updated: '' } }, caption);
    // Keep the charts in key order.
    const after = [...charts.keys()].sort().find((k) => k > key);
    chartsBox.insertBefore(fig, after ? charts.get(after).fig : null);
    chartsEmpty.hidden = true;
    const chart = chartMod.createChart(fig, {
      label: key,
      range: currentRange,
      onZoom: (a, b) => {
        if (b - a < 1000) return;
        setRange('zoom', a, b);
      },
    });
    const entry = { chart, fig, note: caption.querySelector('.chart-note'), seq: 0, stats: null };
    charts.set(key, entry);
    return entry;
  }

  function requestSeries(key, width) {
    const r = currentRange();
    return ctx.get(
      withQuery(`${base}/series/${enc(key)}`, {
        startDate: new Date(r.start).toISOString(),
        endDate: new Date(r.end).toISOString(),
        points: Math.min(4000, Math.max(10, Math.floor(width))),
      }),
    );
  }

  /** The caption after the values drawn: the series answer's counts plus the live values added since. */
  function showNote(entry) {
    const st = entry.stats;
    if (!st) return;
    const n = st.count;
    const parts = [`${n} value${n === 1 ? '' : 's'}`];
    if (st.downsampled) parts.push(`${entry.chart.points} points: average line, min–max band`);
    if (st.nonNumeric) parts.push(`${st.nonNumeric} non-numeric skipped`);
    entry.note.textContent = ` · ${parts.join(' · ')}`;
  }

  /** `early`: the series answer's promise when it was asked for before the chart existed. */
  async function fetchSeries(key, early) {
    const entry = charts.get(key);
    if (!entry) return;
    const seq = ++entry.seq;
    entry.fig.setAttribute('aria-busy', 'true');
    try {
      const res = await (early || requestSeries(key, entry.chart.width()));
      if (seq !== entry.seq) return;
      entry.chart.setSeries(res);
      entry.stats = {
        count: Number(res.count ?? (res.t || []).length),
        downsampled: !!res.downsampled,
        nonNumeric: Number(res.nonNumeric || 0),
      };
      showNote(entry);
    } finally {
      if (seq === entry.seq) entry.fig.removeAttribute('aria-busy');
    }
  }

  async function refetchCharts() {
    await Promise.all([...charts.keys()].map(fetchSeries));
  }

  const slide = setInterval(() => {
    if (SPANS[range.mode]) {
      for (const { chart } of charts.values()) chart.redraw();
      showRangeState();
    }
  }, 15000);
  ctx.onLeave(() => {
    clearInterval(slide);
    for (const { chart } of charts.values()) chart.destroy();
    charts.clear();
  });

  // =============================== recent values ===============================
  const keySelect = h('select', { testid: 'values-key' });
  const valuesBody = h('tbody');
  const valuesTable = h(
    'table',
    { testid: 'values-table' },
    h('caption', { class: 'visually-hidden' }, 'Recent values'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'At'), h('th', { scope: 'col' }, 'Value (JSON)'))),
    valuesBody,
  );
  const moreBtn = h('button', { type: 'button', testid: 'values-more', hidden: true }, 'Older values');
  const valuesNote = h('p', { class: 'muted', 'aria-live': 'polite' });
  const valuesSection = h(
    'section',
    { class: 'card', 'aria-labelledby': 'values-h' },
    h('h2', { id: 'values-h' }, 'Recent values'),
    field('Resource', keySelect),
    valuesNote,
    tall(tableWrap(valuesTable, 'Recent values table')),
    moreBtn,
  );
  let recent = []; // items shown, newest first
  let valuesSeq = 0;

  function valueRow(item) {
    return h('tr', { testid: 'value-row', dataset: { datetime: item.datetime || '' } }, h('td', null, timeEl(item.datetime)), h('td', { class: 'value' }, h('code', null, jsonText(item.value))));
  }

  function syncKeyOptions() {
    const have = new Set([...keySelect.options].map((o) => o.value));
    const all = [...keys].sort();
    for (const k of all) {
      if (have.has(k)) continue;
      const opt = h('option', { value: k }, k);
      const after = [...keySelect.options].find((o) => o.value > k);
      keySelect.insertBefore(opt, after || null);
    }
    const opts = [...keys].sort().map((k) => h('option', { value: k }));
    keyList.replaceChildren(...opts);
  }

  async function loadValues(older = false) {
    const key = keySelect.value;
    const seq = ++valuesSeq;
    if (!key) {
      valuesBody.replaceChildren();
      valuesNote.textContent = 'No resource has values yet.';
      moreBtn.hidden = true;
      return;
    }
    const params = { limit: RECENT };
    if (older && recent.length) params.endDate = recent[recent.length - 1].datetime;
    let items = [];
    try {
      items = await ctx.get(withQuery(`/v2/things/${enc(token)}/resources/${enc(key)}`, params), { noAuthRedirect: true });
    } catch (e) {
      if (e.status !== 404) throw e;
      items = [];
    }
    if (seq !== valuesSeq) return;
    if (!Array.isArray(items)) items = [];
    if (older) {
      const seen = new Set(recent.map((i) => `${i.datetime}\u0000${jsonText(i.value)}`));
      items = items.filter((i) => !seen.has(`${i.datetime}\u0000${jsonText(i.value)}`));
      recent = recent.concat(items);
      valuesBody.append(...items.map(valueRow));
    } else {
      recent = items;
      valuesBody.replaceChildren(...items.map(valueRow));
    }
    moreBtn.hidden = items.length < RECENT - 1;
    valuesNote.textContent = recent.length ? `${recent.length} value${recent.length === 1 ? '' : 's'}, newest first.` : 'No values for this resource.';
  }

  function addRecent(item) {
    if (item.key !== keySelect.value) return;
    const ms = Date.parse(item.datetime);
    const text = jsonText(item.value);
    if (recent.some((r) => Date.parse(r.datetime) === ms && jsonText(r.value) === text)) return; // already listed
    let i = recent.findIndex((r) => Date.parse(r.datetime) < ms);
    if (i < 0) i = recent.length;
    if (i >= RECENT && i >= recent.length) return; // older than everything shown
    recent.splice(i, 0, item);
    const tr = valueRow(item);
    tr.classList.add('flash');
    valuesBody.insertBefore(tr, valuesBody.children[i] || null);
    valuesNote.textContent = `${recent.length} value${recent.length === 1 ? '' : 's'}, newest first.`;
  }

  keySelect.addEventListener('change', () => loadValues().catch(ctx.fail));
  moreBtn.addEventListener('click', () => loadValues(true).catch(ctx.fail));

  // =============================== $settings and $geo ===============================
  const settingsPre = h('pre', { testid: 'settings', class: 'json', tabindex: '0' });
  const geoBox = h('div', { testid: 'geo' });
  const metaSection = h(
    'section',
    { class: 'card two-col', 'aria-label': 'Settings and location' },
    h('div', null, h('h2', null, h('code', null, '$settings')), settingsPre),
    h('div', null, h('h2', null, h('code', null, '$geo')), geoBox),
  );

  function showSettings(s) {
    settingsPre.textContent = JSON.stringify(s && typeof s === 'object' ? s : s ?? {}, null, 2);
  }

  function showGeo(g, datetime) {
    let value = g;
    if (g && typeof g === 'object' && 'value' in g && !('coordinates' in g)) {
      datetime = g.datetime;
      value = g.value;
    }
    let coords = null;
    if (value && Array.isArray(value.coordinates)) coords = value.coordinates;
    else if (Array.isArray(value) && value.length >= 2) coords = value;
    if (!coords) {
      geoBox.replaceChildren(
        h('p', { class: 'muted' }, 'No location yet. A thing reports one by writing '),
        h('pre', { class: 'cmd' }, h('code', null, '{"values":[{"key":"$geo","value":{"type":"Point","coordinates":[2.1734,41.3851]}}]}')),
        h('p', { class: 'muted small-print' }, 'GeoJSON order: longitude first, then latitude.'),
      );
      return;
    }
    const [lon, lat] = coords;
    geoBox.replaceChildren(
      h(
        'dl',
        { class: 'props' },
        h('dt', null, 'Latitude'),
        h('dd', { class: 'geo-lat' }, String(lat)),
        h('dt', null, 'Longitude'),
        h('dd', { class: 'geo-long' }, String(lon)),
        datetime ? [h('dt', null, 'At'), h('dd', null, timeEl(datetime))] : null,
      ),
      h('pre', { class: 'json' }, jsonText(value)),
    );
  }

  const refreshThing = debounce(async () => {
    try {
      const res = await ctx.get(base);
      thing = res.thing;
      showSettings(thing.settings);
      showGeo(thing.geo);
      if (thing.name) ctx.setTitle(thing.name);
    } catch (e) {
      ctx.fail(e);
    }
  }, 500);
  ctx.onLeave(() => refreshThing.cancel());

  // =============================== write form ===============================
  const keyList = h('datalist', { id: 'thing-keys' });
  const wKey = h('input', { type: 'text', testid: 'write-key', list: 'thing-keys', required: true, autocomplete: 'off', spellcheck: 'false' });
  const wValue = h('textarea', { testid: 'write-value', rows: '2', spellcheck: 'false' });
  const wStore = h('input', { type: 'checkbox', testid: 'write-store', id: 'write-store', checked: true });
  const wBroadcast = h('input', { type: 'checkbox', testid: 'write-broadcast', id: 'write-broadcast', checked: true });
  const wSubmit = h('button', { type: 'submit', class: 'primary', testid: 'write-submit' }, 'Write');
  const wResult = h('output', { testid: 'write-result', 'aria-live': 'polite', class: 'write-result' });
  const writeForm = h(
    'form',
    { class: 'card', testid: 'write-form', 'aria-labelledby': 'write-h' },
    h('h2', { id: 'write-h' }, 'Write a value'),
    keyList,
    h(
      'div',
      { class: 'row' },
      field('Key', wKey),
      field('Value', wValue, 'Parsed as JSON when it is JSON (21.5, true, {"a":1}, "text"); sent as a string otherwise.'),
    ),
    h(
      'div',
      { class: 'checks' },
      h('label', { for: 'write-store' }, wStore, ' Store'),
      h('label', { for: 'write-broadcast' }, wBroadcast, ' Broadcast to subscribers'),
    ),
    h('div', { class: 'actions' }, wSubmit),
    wResult,
  );

  writeForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    const key = wKey.value.trim();
    if (!key) {
      wResult.dataset.status = 'error';
      wResult.textContent = 'Enter a key.';
      wKey.focus();
      return;
    }
    let value;
    try {
      value = JSON.parse(wValue.value);
    } catch {
      value = wValue.value;
    }
    const store = wStore.checked;
    const broadcast = wBroadcast.checked;
    wSubmit.disabled = true;
    wResult.dataset.status = 'pending';
    wResult.textContent = 'Writing…';
    try {
      const res = await ctx.api('POST', withQuery(`/v2/things/${enc(token)}`, { store, broadcast }), { values: [{ key, value }] }, { noAuthRedirect: true });
      wResult.dataset.status = 'ok';
      wResult.textContent = `Written (${store ? 'stored' : 'not stored'}, ${broadcast ? 'broadcast' : 'not broadcast'}): ${jsonText(value)}. Server answer: ${typeof res === 'string' ? res : jsonText(res)}`;
      if (store && !broadcast) {
        // No live event comes back for it: read it back.
        pullLatest(key).catch(ctx.fail);
      }
    } catch (err) {
      if (!ctx.alive) return;
      wResult.dataset.status = 'error';
      wResult.textContent = `Not written: ${err.message}${err.status ? ` (HTTP ${err.status})` : ''}`;
    } finally {
      wSubmit.disabled = false;
    }
  });

  async function pullLatest(key) {
    const items = await ctx.get(withQuery(`/v2/things/${enc(token)}/resources/${enc(key)}`, { limit: 1 }), { noAuthRedirect: true });
    if (Array.isArray(items) && items[0]) onValue({ key, value: items[0].value, datetime: items[0].datetime });
  }

  // =============================== live ===============================
  function onValue(v) {
    const isNew = !keys.has(v.key);
    keys.add(v.key);
    if (isNew) syncKeyOptions();
    const newer = setLatest(v.key, { value: v.value, datetime: v.datetime }, { flash: true });
    const ms = Date.parse(v.datetime);
    if (ms && (!thing.lastSeenMs || ms > thing.lastSeenMs)) {
      thing.lastSeenMs = ms;
      lastSeen.replaceChildren(timeEl(v.datetime));
    }
    const n = numericValue(v.value);
    if (!v.key.startsWith('$') && n !== null && ms) {
      const r = currentRange();
      const entry = charts.get(v.key);
      if (entry) {
        if ((SPANS[range.mode] || (ms >= r.start && ms <= r.end)) && entry.chart.append(ms, n) && entry.stats) {
          entry.stats.count += 1;
          showNote(entry);
        }
      } else if (newer && chartable(v.key)) {
        ensureChart(v.key)
          .then((e) => e && fetchSeries(v.key))
          .catch(ctx.fail);
      }
    }
    addRecent(v);
    if (!keySelect.value) {
      keySelect.value = v.key;
      loadValues().catch(ctx.fail);
    }
    if (v.key === '$settings' && newer) showSettings(v.value);
    else if (v.key.startsWith('$settings.')) refreshThing();
    if (v.key === '$geo' && newer) showGeo(v.value, v.datetime);
    else if (v.geo) refreshThing();
    if (v.key === '$settings.name' && typeof v.value === 'string') ctx.setTitle(v.value || id);
  }

  let stream = null;
  function connectLive() {
    stream = openLive([id], {
      onState: (s) => live.set(s),
      onValues: (msg) => {
        if (msg.thingId !== id) return;
        for (const v of msg.values || []) onValue(v);
      },
      onReady: (reconnected) => {
        if (reconnected) {
          // Values written during the gap: refetch.
          refetchCharts().catch(ctx.fail);
          loadLatest().catch(ctx.fail);
          loadValues().catch(ctx.fail);
        }
      },
      onEnd: (env) => {
        if (Number(env.code) === 404) {
          showError('This thing was deleted.');
          live.set('closed');
        }
      },
    });
  }
  ctx.onLeave(() => stream && stream.close());

  // =============================== delete ===============================
  del.addEventListener('click', async () => {
    clearError();
    const ok = await confirmDialog(`Delete the thing ${id}? Its values are deleted with it and its token stops working. This cannot be undone.`);
    if (!ok) {
      del.focus();
      return;
    }
    try {
      await ctx.api('DELETE', base);
      announce('Thing deleted');
      ctx.navigate(thing && thing.productId ? `#/products/${enc(thing.productId)}` : '#/products');
    } catch (err) {
      ctx.fail(err);
      del.focus();
    }
  });

  // =============================== load ===============================
  async function loadLatest() {
    // The panel answer has the latest value of every declared resource; the Thing API's
    // all_resources has every key (undeclared ones and $-keys too).
    for (const [k, item] of Object.entries(thing.latest || {})) {
      keys.add(k);
      setLatest(k, item);
    }
    try {
      const all = await ctx.get(withQuery(`/v2/things/${enc(token)}/all_resources`, { limit: 1 }), { noAuthRedirect: true });
      if (Array.isArray(all)) {
        for (const r of all) {
          const item = r && Array.isArray(r.values) ? r.values[0] : null;
          if (!r || !r.key) continue;
          keys.add(r.key);
          if (item) setLatest(r.key, { value: item.value, datetime: item.datetime });
        }
      }
    } catch (e) {
      if (!ctx.alive) throw e;
      console.warn('all_resources', e);
    }
    for (const k of thing.resources || []) keys.add(k);
    latestEmpty.hidden = latestRows.size > 0;
    syncKeyOptions();
  }

  let res;
  try {
    res = await ctx.get(base);
  } catch (e) {
    if (ctx.notFound(e, 'Thing', '#/products', '‹ Back to the products')) return;
    throw e;
  }
  thing = res.thing || res;
  ctx.main.append(info, latestSection, chartsSection, valuesSection, metaSection, writeForm);
  token = thing.thingToken || '';
  thing.lastSeenMs = thing.lastSeen ? Date.parse(thing.lastSeen) : 0;
  ctx.setTitle(thing.name || id);
  tokenCode.textContent = token;
  const product = thing.product || {};
  productLink.textContent = product.name || thing.productId || '—';
  productLink.href = `#/products/${enc(thing.productId || product.productId || '')}`;
  activated.replaceChildren(timeEl(thing.activatedAt));
  lastSeen.replaceChildren(timeEl(thing.lastSeen, 'never'));
  showSettings(thing.settings);
  showGeo(thing.geo);

  connectLive(); // early: values written while the rest loads are not missed

  // Each numeric key of the answer's `latest` gets its series asked for at once, sized to the
  // charts' width (the figure's padding and border aside), and its chart drawn as soon as the
  // chart code and the answer are both there, while the other requests run.
  const seriesWidth = Math.max(200, (chartsBox.clientWidth || 600) - 22);
  const earlyKeys = Object.entries(thing.latest || {})
    .filter(([k, item]) => !k.startsWith('$') && item && numericValue(item.value) !== null)
    .map(([k]) => k)
    .sort();
  const earlyCharts = earlyKeys.map((k) => {
    const req = requestSeries(k, seriesWidth);
    req.catch(() => {}); // awaited by fetchSeries
    return ensureChart(k).then((e) => e && fetchSeries(k, req));
  });
  if (earlyKeys.length) showRangeState();
  earlyCharts.forEach((p) => p.catch(() => {})); // awaited below

  await loadLatest();

  // Declared resources first in the selects; the first numeric one is the default recent key.
  const declared = (product.resources || []).map((r) => r.key);
  const chartKeys = [...latest.keys()].filter(chartable).sort();
  const firstKey = declared.find((k) => keys.has(k)) || chartKeys[0] || [...keys].sort()[0] || '';
  if (firstKey) keySelect.value = firstKey;
  wKey.value = declared[0] || chartKeys[0] || '';

  showRangeState();
  chartsEmpty.hidden = chartKeys.length > 0 || charts.size > 0;
  const moreCharts = chartKeys
    .filter((k) => !earlyKeys.includes(k))
    .map((k) => ensureChart(k).then((e) => e && fetchSeries(k)));
  await Promise.all([...earlyCharts, ...moreCharts, loadValues()]);
  ctx.ready();
}
