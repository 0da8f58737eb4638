// DOM helpers. Server data only ever reaches the page as text (textContent, attribute values):
// nothing here, nor anywhere in the panel, writes innerHTML.

/**
 * Builds an element. `attrs`: `class`, `testid` (data-testid), `dataset` (object), `on`
 * (event → handler), boolean/`value`/`checked`/`disabled`… set as properties when the element has
 * them, anything else as an attribute (null/undefined/false skipped). Children: nodes, strings
 * (text), numbers, arrays, null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'testid') el.dataset.testid = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'style') throw new Error('inline styles are not allowed (CSP)');
      else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${CSS.escape(id)}"]`);

// ---- values and dates -------------------------------------------------------------------------

/** A value as JSON text, verbatim ("23.5" stays a quoted string, 23.5 a number). */
export function jsonText(v) {
  if (v === undefined) return '';
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

const NUMERIC = /^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$/;

/** The number a value stands for (a JSON number, or a string holding a decimal number), else null. */
export function numericValue(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && NUMERIC.test(v)) {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** A `<time>` element showing an ISO datetime in the user's locale (the ISO text as its title). */
export function timeEl(iso, empty = '—') {
  if (!iso) return h('span', { class: 'muted' }, empty);
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', null, iso);
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, dateFmt.format(d));
}

export function formatDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateFmt.format(d);
}

/** `Date` → the value of an `<input type="datetime-local">` (local time, minutes). */
export function toLocalInput(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function splitKeys(text) {
  return [...new Set(String(text).split(',').map((s) => s.trim()).filter(Boolean))];
}

// ---- page chrome ------------------------------------------------------------------------------

/** Shows an error (an Error, an ApiError or a string) in the alert region. */
export function showError(err) {
  const region = byTestId('error');
  if (!region) return;
  const msg = typeof err === 'string' ? err : err && err.message ? err.message : 'Something went wrong';
  region.textContent = msg;
  if (err && err.status) region.dataset.status = String(err.status);
  else delete region.dataset.status;
  document.getElementById('error-dismiss')?.removeAttribute('hidden');
  document.getElementById('error-box')?.classList.add('has-error');
}

export function clearError() {
  const region = byTestId('error');
  if (!region) return;
  region.textContent = '';
  delete region.dataset.status;
  document.getElementById('error-dismiss')?.setAttribute('hidden', '');
  document.getElementById('error-box')?.classList.remove('has-error');
}

let statusTimer = 0;
/** A short polite announcement ("Saved", "Copied") in the status region. */
export function announce(text) {
  const region = document.getElementById('status');
  if (!region) return;
  region.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => {
    region.textContent = '';
  }, 4000);
}

/** A horizontally scrollable wrapper for a table (keyboard-scrollable: it takes focus). */
export function tableWrap(table, label) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': label }, table);
}

/** Asks for confirmation in a modal `<dialog>` (Escape or Cancel: false). */
export function confirmDialog(message, { ok = 'Delete', danger = true } = {}) {
  return new Promise((resolve) => {
    document.querySelector('dialog.confirm')?.remove();
    const okBtn = h('button', { type: 'button', class: danger ? 'danger' : 'primary', testid: 'confirm-ok' }, ok);
    const cancelBtn = h('button', { type: 'button', testid: 'confirm-cancel' }, 'Cancel');
    const text = h('p', { id: 'confirm-text' }, message);
    const dlg = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-text', testid: 'confirm' },
      text,
      h('div', { class: 'actions' }, cancelBtn, okBtn),
    );
    let answered = false;
    const done = (v) => {
      if (answered) return;
      answered = true;
      if (dlg.open) dlg.close();
      dlg.remove();
      resolve(v);
    };
    okBtn.addEventListener('click', () => done(true));
    cancelBtn.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(false);
    });
    dlg.addEventListener('close', () => done(false));
    document.body.appendChild(dlg);
    dlg.showModal();
    cancelBtn.focus();
  });
}

/** Copies text to the clipboard (navigator.clipboard, else a selected textarea + execCommand). */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      announce('Copied to the clipboard');
      return true;
    }
  } catch {
    // fall back below
  }
  const ta = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
  ta.value = text;
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  announce(ok ? 'Copied to the clipboard' : 'Copying failed: select the text and press Ctrl+C');
  return ok;
}

/** A copy button for `text` (a string or a function returning it). */
export function copyButton(text, attrs = {}) {
  return h(
    'button',
    {
      type: 'button',
      class: 'small',
      ...attrs,
      on: { click: () => copyText(typeof text === 'function' ? text() : text) },
    },
    attrs.label || 'Copy',
  );
}

/** A `<pre>` with a command and a copy button. */
export function commandBlock(cmd, testid) {
  const pre = h('pre', { class: 'cmd' }, h('code', null, cmd));
  return h('div', { class: 'cmd-block', testid }, pre, copyButton(cmd, { 'aria-label': 'Copy the command', label: 'Copy' }));
}

export function debounce(fn, ms) {
  let t = 0;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

export function field(labelText, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  let hintEl = null;
  if (hint) {
    hintEl = h('small', { class: 'hint', id: `${id}-hint` }, hint);
    input.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: id }, labelText), input, hintEl);
}
