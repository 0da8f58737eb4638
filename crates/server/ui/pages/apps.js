// #/apps: the account's apps and the form that creates one.

import { enc } from '../api.js';
import { announce, clearError, copyButton, field, h, showError, splitKeys, tableWrap, timeEl } from '../dom.js';

/** The public keys the account's products declare (what an app may ask for). */
export async function publicKeys(ctx) {
  try {
    const res = await ctx.get('/v2/panel/products');
    const keys = new Set();
    for (const p of res.products || []) for (const r of p.resources || []) if (r.public) keys.add(r.key);
    return [...keys].sort();
  } catch (e) {
    if (!ctx.alive) throw e;
    return [];
  }
}

/** Buttons that add a key to a comma-separated input. */
export function keyChips(keys, input) {
  if (!keys.length) {
    return h('p', { class: 'muted small-print' }, 'No product declares a public resource yet: an app can only use keys some product declares public.');
  }
  return h(
    'div',
    { class: 'chips', role: 'group', 'aria-label': 'Public resource keys of your products' },
    h('span', { class: 'muted small-print' }, 'Public keys of your products: '),
    ...keys.map((k) =>
      h(
        'button',
        {
          type: 'button',
          class: 'chip',
          'aria-label': `Add ${k}`,
          on: {
            click: () => {
              const cur = splitKeys(input.value);
              if (!cur.includes(k)) cur.push(k);
              input.value = cur.join(', ');
              input.dispatchEvent(new Event('input'));
            },
          },
        },
        `+ ${k}`,
      ),
    ),
  );
}

export async function render(ctx) {
  ctx.title('Apps');
  const tbody = h('tbody');
  const table = h(
    'table',
    { testid: 'apps-table' },
    h('caption', { class: 'visually-hidden' }, 'Apps'),
    h('thead', null, h('tr', null, ...['Name', 'App ID', 'Resources', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody,
  );
  const wrap = tableWrap(table, 'Apps table');
  const empty = h(
    'div',
    { class: 'empty', testid: 'apps-empty', hidden: true },
    h('p', null, h('strong', null, 'No apps yet.')),
    h(
      'p',
      null,
      'An app is what your users sign in to (a mobile or web app using the App API). Create one below with the public resource keys it may read; its appId is what the app sends when users register.',
    ),
  );

  const name = h('input', { type: 'text', testid: 'app-name', required: true, maxlength: '200', autocomplete: 'off' });
  const resources = h('input', { type: 'text', testid: 'app-resources', autocomplete: 'off', placeholder: 'temperature, humidity' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'app-create-submit' }, 'Create app');
  const chipsBox = h('div');
  const form = h(
    'form',
    { class: 'card', testid: 'app-create-form', 'aria-labelledby': 'app-create-h' },
    h('h2', { id: 'app-create-h' }, 'Create an app'),
    field('Name', name),
    field('Resources', resources, 'Comma-separated public resource keys of your products.'),
    chipsBox,
    h('div', { class: 'actions' }, submit),
  );
  let highlight = null;

  async function load() {
    const res = await ctx.get('/v2/panel/apps');
    const apps = res.apps || [];
    tbody.replaceChildren(
      ...apps.map((a) =>
        h(
          'tr',
          { testid: 'app-row', dataset: { id: a.appId }, class: a.appId === highlight ? 'flash' : null },
          h('td', null, h('a', { href: `#/apps/${enc(a.appId)}` }, a.name || a.appId)),
          h('td', { class: 'nowrap' }, h('code', null, a.appId), ' ', copyButton(a.appId, { 'aria-label': `Copy the appId of ${a.name || a.appId}` })),
          h('td', null, (a.resources || []).join(', ') || h('span', { class: 'muted' }, '—')),
          h('td', null, timeEl(a.createdAt)),
        ),
      ),
    );
    empty.hidden = apps.length > 0;
    wrap.hidden = apps.length === 0;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    if (!name.value.trim()) {
      showError('Give the app a name.');
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const res = await ctx.api('POST', '/v2/panel/apps', { name: name.value.trim(), resources: splitKeys(resources.value) });
      highlight = res.appId;
      form.reset();
      await load();
      announce(`App created: ${res.appId}`);
      name.focus();
    } catch (err) {
      ctx.fail(err);
    } finally {
      submit.disabled = false;
    }
  });

  ctx.main.append(h('section', { class: 'list-section', 'aria-label': 'Your apps' }, wrap, empty), form);
  const [keys] = await Promise.all([publicKeys(ctx), load()]);
  chipsBox.replaceChildren(keyChips(keys, resources));
  ctx.ready();
}
