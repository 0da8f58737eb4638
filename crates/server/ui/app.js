// The panel's shell: session check at start, the hash router (#/login, #/products,
// #/products/{id}, #/things/{id}, #/apps, #/apps/{id}), the header (navigation, account, sign
// out) and the per-page context every page module gets.
//
// A page module exports `render(ctx)`. `ctx` gives the page its parameters, an AbortSignal that
// fires when the user navigates away (pending requests are cancelled, `onLeave` callbacks close
// live streams and charts), and `ready()`, which sets body[data-ready="true"] and records
// performance.mark('tl:ready:<page>') once the page's first data is on screen.

import { api, isAbort, loadSession, onUnauthorized, session, signOut } from './api.js';
import { announce, byTestId, clearError, h, showError } from './dom.js';

const ROUTES = [
  { re: /^\/login$/, name: 'login', module: './pages/login.js' },
  { re: /^\/products$/, name: 'products', module: './pages/products.js' },
  { re: /^\/products\/([^/]+)$/, name: 'product', module: './pages/product.js' },
  { re: /^\/things\/([^/]+)$/, name: 'thing', module: './pages/thing.js' },
  { re: /^\/apps$/, name: 'apps', module: './pages/apps.js' },
  { re: /^\/apps\/([^/]+)$/, name: 'app', module: './pages/app.js' },
];

const DEFAULT_ROUTE = '#/products';

let current = null; // {name, controller, leave: [], ...}
let returnTo = null;
let pendingError = null;
let navCount = 0;

const main = document.getElementById('main');
const body = document.body;

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  return { path: q < 0 ? raw : raw.slice(0, q), query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function updateChrome() {
  const signedIn = !!session.current;
  const nav = byTestId('nav');
  nav.hidden = !signedIn;
  document.getElementById('nav-toggle').hidden = !signedIn;
  byTestId('account-email').textContent = signedIn ? session.current.email || '' : '';
}

function markNav(name) {
  const section = name === 'product' || name === 'thing' ? 'products' : name === 'app' ? 'apps' : name;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.testid === `nav-${section}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  closeMenu();
}

function leave() {
  if (!current) return;
  current.controller.abort();
  for (const fn of current.leave.splice(0)) {
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
  }
  current = null;
}

async function route() {
  const { path, query } = parseHash();
  if (path === '' || path === '/') {
    location.replace(DEFAULT_ROUTE); // fires hashchange
    return;
  }
  if (!path.startsWith('/')) return; // an in-page anchor: not a route
  const match = ROUTES.map((r) => ({ r, m: path.match(r.re) })).find((x) => x.m);
  leave();
  body.dataset.ready = 'false';
  clearError();
  const nav = ++navCount;

  if (match && match.r.name !== 'login' && !session.current) {
    returnTo = location.hash;
    location.replace('#/login');
    return;
  }
  if (match && match.r.name === 'login' && session.current) {
    location.replace(DEFAULT_ROUTE);
    return;
  }

  const name = match ? match.r.name : 'notfound';
  body.dataset.page = name;
  markNav(name);
  updateChrome();
  performance.mark(`tl:nav:${name}`);

  const controller = new AbortController();
  const ctx = makeCtx(name, match ? match.m.slice(1).map(safeDecode) : [], query, controller);
  current = { name, controller, leave: ctx._leave };
  main.replaceChildren();

  if (pendingError) {
    showError(pendingError);
    pendingError = null;
  }

  if (!match) {
    ctx.title('Page not found');
    main.append(h('p', null, 'There is no page here. ', h('a', { href: DEFAULT_ROUTE }, 'Go to the products.')));
    ctx.ready();
    return;
  }
  try {
    const mod = await importPage(match.r.module);
    if (controller.signal.aborted) return;
    await mod.render(ctx);
  } catch (e) {
    if (isAbort(e) || controller.signal.aborted) return;
    console.error(e);
    showError(e);
    ctx.ready();
  }
  if (nav > 1 && !controller.signal.aborted) {
    // Move focus to the new page's heading for keyboard and screen-reader users, unless the
    // page already focused something of its own (a form field).
    const t = byTestId('page-title', main);
    if (t && (document.activeElement === document.body || !main.contains(document.activeElement))) t.focus({ preventScroll: true });
  }
}

// Page modules by path: started at most once (at start, in parallel with the session request).
const pageImports = new Map();
function importPage(module) {
  if (!pageImports.has(module)) {
    const p = import(module);
    p.catch(() => pageImports.delete(module)); // a failed load is retried on the next visit
    pageImports.set(module, p);
  }
  return pageImports.get(module);
}

function makeCtx(name, params, query, controller) {
  const leaveFns = [];
  let readyDone = false;
  const ctx = {
    name,
    params,
    query,
    main,
    signal: controller.signal,
    _leave: leaveFns,
    get alive() {
      return !controller.signal.aborted;
    },
    /** API call bound to this page (cancelled when the page is left). */
    api(method, path, bodyValue, opts = {}) {
      return api(method, path, bodyValue, { signal: controller.signal, ...opts });
    },
    get(path, opts = {}) {
      return api('GET', path, undefined, { signal: controller.signal, ...opts });
    },
    onLeave(fn) {
      leaveFns.push(fn);
    },
    /** The page's h1 (and the document title). */
    title(text, ...extra) {
      const h1 = h('h1', { testid: 'page-title', tabindex: '-1' }, text);
      document.title = `${text} · Thingline`;
      const header = h('div', { class: 'page-head' }, h1, ...extra);
      main.prepend(header);
      return h1;
    },
    setTitle(text) {
      const h1 = byTestId('page-title', main);
      if (h1) h1.textContent = text;
      document.title = `${text} · Thingline`;
    },
    ready() {
      if (readyDone || controller.signal.aborted) return;
      readyDone = true;
      body.dataset.ready = 'true';
      performance.clearMarks(`tl:ready:${name}`);
      performance.mark(`tl:ready:${name}`);
    },
    /**
     * When `e` is a 404 of the page's own object: shows only the error and a link back to the
     * list (the rest of the page is not drawn), marks the page ready and answers true.
     */
    notFound(e, what, backHref, backLabel) {
      if (!e || e.status !== 404 || controller.signal.aborted) return false;
      main.replaceChildren(h('p', { class: 'not-found' }, h('a', { href: backHref }, backLabel)));
      document.title = `${what} not found · Thingline`;
      showError(/not found/i.test(e.message || '') ? e : `${what} not found.`);
      ctx.ready();
      return true;
    },
    /** Shows an error unless it is the cancellation of a left page. */
    fail(e) {
      if (isAbort(e) || controller.signal.aborted) return;
      if (e && e.status === 401) return; // the sign-in redirect says it
      console.error(e);
      showError(e);
    },
    /** Keeps page state (search, sort, paging) in the address without a navigation. */
    setQuery(params) {
      if (controller.signal.aborted) return;
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
      const { path } = parseHash();
      const s = q.toString();
      history.replaceState(null, '', `#${path}${s ? `?${s}` : ''}`);
    },
    navigate(hash) {
      location.hash = hash;
    },
    /** After a successful sign-in: back to where the user was going. */
    afterSignIn() {
      updateChrome();
      const to = returnTo && !returnTo.startsWith('#/login') ? returnTo : DEFAULT_ROUTE;
      returnTo = null;
      location.replace(to);
    },
  };
  return ctx;
}

// ---- header -------------------------------------------------------------------------------------

function closeMenu() {
  const t = document.getElementById('nav-toggle');
  t.setAttribute('aria-expanded', 'false');
  document.querySelector('.topbar').classList.remove('open');
}

document.getElementById('nav-toggle').addEventListener('click', (e) => {
  const open = e.currentTarget.getAttribute('aria-expanded') !== 'true';
  e.currentTarget.setAttribute('aria-expanded', String(open));
  document.querySelector('.topbar').classList.toggle('open', open);
});

document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && document.querySelector('.topbar.open')) {
    closeMenu();
    document.getElementById('nav-toggle').focus();
  }
});

document.getElementById('skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

document.getElementById('error-dismiss').addEventListener('click', () => clearError());

byTestId('signout').addEventListener('click', async () => {
  try {
    await signOut();
  } catch (e) {
    // Signed out locally either way; the server session may already be gone.
    if (e.status && e.status !== 401) showError(e);
  }
  leave();
  updateChrome();
  returnTo = null;
  location.hash = '#/login';
  announce('Signed out');
});

onUnauthorized(() => {
  updateChrome();
  if (current && current.name === 'login') return;
  returnTo = location.hash;
  pendingError = 'Your session has ended: sign in again.';
  leave();
  location.hash = '#/login';
});

window.addEventListener('hashchange', route);

// ---- start --------------------------------------------------------------------------------------

// The session request starts at once (module scripts run right after parsing), and the page
// module of the address is imported in parallel with it (index.html preloads them all).
(async () => {
  const { path } = parseHash();
  const first = ROUTES.find((r) => r.re.test(path));
  await Promise.all([
    loadSession().catch((e) => {
      pendingError = e;
    }),
    first ? importPage(first.module).catch(() => null) : null, // route() reports a failure
  ]);
  updateChrome();
  route();
})();

// Exposed for people scripting the panel from the console and for tests.
window.thingline = { api, session };
