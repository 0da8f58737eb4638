// #/apps/{id}: an app. Its appId (copy), name and resources (edit, delete), and its users
// (remove).

import { enc } from '../api.js';
import { announce, clearError, commandBlock, confirmDialog, copyButton, field, h, showError, splitKeys, tableWrap, timeEl } from '../dom.js';
import { keyChips, publicKeys } from './apps.js';

/** "temperature, humidity on 2 things" from a roles object {RSRC_<key>: {<thingId>: {get…}}}. */
export function rolesSummary(roles) {
  if (!roles || typeof roles !== 'object') return '';
  const resources = [];
  const things = new Set();
  for (const [k, v] of Object.entries(roles)) {
    resources.push(k.replace(/^RSRC_/, ''));
    if (v && typeof v === 'object') for (const t of Object.keys(v)) things.add(t);
  }
  if (!resources.length) return '';
  const thingText = things.size ? ` on ${things.size} thing${things.size === 1 ? '' : 's'}` : '';
  return `${resources.sort().join(', ')}${thingText}`;
}

export async function render(ctx) {
  const id = ctx.params[0];
  const base = `/v2/panel/apps/${enc(id)}`;
  const idLine = h(
    'p',
    { class: 'muted' },
    'App ID ',
    h('code', { testid: 'app-id' }, id),
    ' ',
    copyButton(id, { testid: 'app-id-copy', 'aria-label': 'Copy the appId', label: 'Copy appId' }),
  );
  ctx.title('App', idLine);
  let app = null;

  // =============================== users ===============================
  const tbody = h('tbody');
  const table = h(
    'table',
    { testid: 'users-table' },
    h('caption', { class: 'visually-hidden' }, 'Users of the app'),
    h('thead', null, h('tr', null, ...['Email', 'Roles', 'Linked things', 'Registered', 'Last login', ''].map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'visually-hidden' }, 'Actions'))))),
    tbody,
  );
  const wrap = tableWrap(table, 'Users table');
  const empty = h('div', { class: 'empty', testid: 'users-empty', hidden: true });
  const usersSection = h('section', { class: 'card', 'aria-labelledby': 'users-h' }, h('h2', { id: 'users-h' }, 'Users'), wrap, empty);

  function renderEmpty() {
    const host = location.host;
    const register = `curl -k -X POST https://${host}/v2/register -H 'Content-Type: application/json' -d '{"email":"user@example.com","password":"a hard to guess password","app":"${id}"}'`;
    empty.replaceChildren(
      h('p', null, h('strong', null, 'No users yet.')),
      h('p', null, 'Users register through the App API with this app’s appId (the answer holds their session token and roles; registering also signs them in):'),
      commandBlock(register, 'users-empty-curl'),
      h(
        'p',
        null,
        'They sign in again later with ',
        h('code', null, 'POST /v2/login'),
        ' and the same body. A user sees a thing’s values once they link it (with its thingToken) and the app asks for the thing’s public resources.',
      ),
    );
  }

  async function loadUsers(early) {
    const res = await (early || ctx.get(`${base}/users`));
    const users = res.users || [];
    tbody.replaceChildren(
      ...users.map((u) => {
        const remove = h('button', { type: 'button', class: 'danger small', testid: 'user-remove', 'aria-label': `Remove ${u.email}` }, 'Remove');
        remove.addEventListener('click', async () => {
          clearError();
          const ok = await confirmDialog(`Remove the user ${u.email} from this app? Their sessions end and their account in this app is deleted.`, { ok: 'Remove' });
          if (!ok) {
            remove.focus();
            return;
          }
          try {
            await ctx.api('DELETE', `${base}/users/${enc(String(u.userId))}`);
            announce(`User ${u.email} removed`);
            await loadUsers();
            table.closest('section')?.querySelector('h2')?.focus();
          } catch (err) {
            ctx.fail(err);
          }
        });
        const linked = u.linkedThings || [];
        return h(
          'tr',
          { testid: 'user-row', dataset: { id: String(u.userId) } },
          h('td', null, u.email),
          h('td', null, rolesSummary(u.roles) || h('span', { class: 'muted' }, 'none')),
          h(
            'td',
            null,
            linked.length
              ? linked.flatMap((t, i) => [i ? ', ' : null, h('a', { href: `#/things/${enc(t)}` }, h('code', null, t))])
              : h('span', { class: 'muted' }, 'none'),
          ),
          h('td', null, timeEl(u.createdAt)),
          h('td', null, timeEl(u.lastLogin, 'never')),
          h('td', null, remove),
        );
      }),
    );
    wrap.hidden = users.length === 0;
    empty.hidden = users.length > 0;
    if (!users.length) renderEmpty();
  }

  // =============================== settings ===============================
  const nameIn = h('input', { type: 'text', testid: 'app-name-input', required: true, maxlength: '200', autocomplete: 'off' });
  const resIn = h('input', { type: 'text', testid: 'app-resources-input', autocomplete: 'off' });
  const save = h('button', { type: 'submit', class: 'primary', testid: 'app-save' }, 'Save');
  const del = h('button', { type: 'button', class: 'danger', testid: 'app-delete' }, 'Delete app');
  const chipsBox = h('div');
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'app-settings-h' },
    h('h2', { id: 'app-settings-h' }, 'Settings'),
    field('Name', nameIn),
    field('Resources', resIn, 'Comma-separated public resource keys of your products.'),
    chipsBox,
    h('div', { class: 'actions' }, save, h('span', { class: 'spacer' }), del),
  );

  function fill() {
    nameIn.value = app.name || '';
    resIn.value = (app.resources || []).join(', ');
    ctx.setTitle(app.name || id);
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    if (!nameIn.value.trim()) {
      showError('Give the app a name.');
      nameIn.focus();
      return;
    }
    save.disabled = true;
    try {
      const res = await ctx.api('PUT', base, { name: nameIn.value.trim(), resources: splitKeys(resIn.value) });
      app = res.app || (await ctx.get(base)).app;
      fill();
      announce('App saved');
    } catch (err) {
      ctx.fail(err);
    } finally {
      save.disabled = false;
    }
  });

  del.addEventListener('click', async () => {
    clearError();
    const ok = await confirmDialog(`Delete the app “${app ? app.name : id}”? Its users and their data are deleted with it. This cannot be undone.`);
    if (!ok) {
      del.focus();
      return;
    }
    try {
      await ctx.api('DELETE', base);
      announce('App deleted');
      ctx.navigate('#/apps');
    } catch (err) {
      ctx.fail(err);
      del.focus();
    }
  });

  // The app, its users and the public keys are asked for at once; a 404 shows only the error.
  const appReq = ctx.get(base);
  const usersReq = ctx.get(`${base}/users`);
  const keysReq = publicKeys(ctx);
  usersReq.catch(() => {}); // awaited below, unless the app is not found
  keysReq.catch(() => {});
  let res;
  try {
    res = await appReq;
  } catch (e) {
    if (ctx.notFound(e, 'App', '#/apps', '‹ Back to the apps')) return;
    throw e;
  }
  app = res.app || res;
  ctx.main.append(usersSection, form);
  fill();
  const [keys] = await Promise.all([keysReq, loadUsers(usersReq)]);
  chipsBox.replaceChildren(keyChips(keys, resIn));
  ctx.ready();
}
