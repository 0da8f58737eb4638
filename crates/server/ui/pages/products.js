// #/products: the account's products and the form that creates one.

import { enc } from '../api.js';
import { announce, clearError, field, h, showError, splitKeys, tableWrap, timeEl } from '../dom.js';

export function resourcesFromInputs(publicText, privateText) {
  const pub = splitKeys(publicText);
  const priv = splitKeys(privateText).filter((k) => !pub.includes(k));
  return [...pub.map((key) => ({ key, public: true })), ...priv.map((key) => ({ key, public: false }))];
}

export function keysOf(resources, pub) {
  return (resources || []).filter((r) => !!r.public === pub).map((r) => r.key);
}

export async function render(ctx) {
  ctx.title('Products');
  const listSection = h('section', { class: 'list-section', 'aria-labelledby': 'products-h' }, h('h2', { id: 'products-h', class: 'visually-hidden' }, 'Your products'));
  const tbody = h('tbody');
  const table = h(
    'table',
    { testid: 'products-table' },
    h('caption', { class: 'visually-hidden' }, 'Products'),
    h(
      'thead',
      null,
      h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Product ID'), h('th', { scope: 'col' }, 'Public resources'), h('th', { scope: 'col' }, 'Private resources'), h('th', { scope: 'col' }, 'Created')),
    ),
    tbody,
  );
  const empty = h(
    'div',
    { class: 'empty', testid: 'products-empty', hidden: true },
    h('p', null, h('strong', null, 'No products yet.')),
    h(
      'p',
      null,
      'A product describes a kind of device and the resources (keys) its things write, such as ',
      h('code', null, 'temperature'),
      '. Create one with the form below: give it a name, the keys apps may read (public) and the keys only you see (private). Then open it to generate activation codes for your devices.',
    ),
  );
  listSection.append(tableWrap(table, 'Products table'), empty);

  // ---- create form
  const name = h('input', { type: 'text', testid: 'product-name', name: 'name', required: true, maxlength: '200', autocomplete: 'off' });
  const pub = h('input', { type: 'text', testid: 'product-public', name: 'public', autocomplete: 'off', placeholder: 'temperature, humidity' });
  const priv = h('input', { type: 'text', testid: 'product-private', name: 'private', autocomplete: 'off', placeholder: 'battery' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'product-create-submit' }, 'Create product');
  const form = h(
    'form',
    { class: 'card', testid: 'product-create-form', 'aria-labelledby': 'create-h' },
    h('h2', { id: 'create-h' }, 'Create a product'),
    field('Name', name),
    h(
      'div',
      { class: 'row' },
      field('Public resource keys', pub, 'Comma-separated; apps may be granted these.'),
      field('Private resource keys', priv, 'Comma-separated; only the panel and the thing see these.'),
    ),
    h('div', { class: 'actions' }, submit),
  );

  let highlight = null;

  async function load() {
    const res = await ctx.get('/v2/panel/products');
    const products = res.products || [];
    tbody.replaceChildren(
      ...products.map((p) =>
        h(
          'tr',
          { testid: 'product-row', dataset: { id: p.productId }, class: p.productId === highlight ? 'flash' : null },
          h('td', null, h('a', { href: `#/products/${enc(p.productId)}` }, p.name || p.productId)),
          h('td', null, h('code', null, p.productId)),
          h('td', null, keysOf(p.resources, true).join(', ') || h('span', { class: 'muted' }, '—')),
          h('td', null, keysOf(p.resources, false).join(', ') || h('span', { class: 'muted' }, '—')),
          h('td', null, timeEl(p.createdAt)),
        ),
      ),
    );
    empty.hidden = products.length > 0;
    table.closest('.table-wrap').hidden = products.length === 0;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    if (!name.value.trim()) {
      showError('Give the product a name.');
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const res = await ctx.api('POST', '/v2/panel/products', {
        name: name.value.trim(),
        resources: resourcesFromInputs(pub.value, priv.value),
      });
      highlight = res.productId;
      form.reset();
      await load();
      announce(`Product created: ${res.productId}`);
      name.focus();
    } catch (err) {
      ctx.fail(err);
    } finally {
      submit.disabled = false;
    }
  });

  ctx.main.append(listSection, form);
  await load();
  ctx.ready();
}
