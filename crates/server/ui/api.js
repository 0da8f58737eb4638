// The panel API client: same-origin fetch with the session cookie, JSON in and out, the CSRF
// header on every state-changing request, and the thethings.iO error envelope
// ({"status":"error","code","message"}) turned into an ApiError with a readable message.

/** The signed-in session ({email, csrf, expiresAt}) or null. */
export const session = { current: null };

const listeners = { unauthorized: [] };

/** Called (once per burst) when an API call answers 401: the session is gone. */
export function onUnauthorized(fn) {
  listeners.unauthorized.push(fn);
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function isAbort(e) {
  return e && (e.name === 'AbortError' || e.aborted === true);
}

function describe(status, data, res) {
  if (data && typeof data === 'object' && typeof data.message === 'string' && data.message) return data.message;
  if (status === 401) return 'Not signed in, or the session has ended.';
  if (status === 403) return 'Forbidden.';
  if (status === 404) return 'Not found.';
  if (status === 429) return 'Too many requests: wait a moment and try again.';
  if (status >= 500) return `The server failed (${status} ${res.statusText || ''}).`.replace(' )', ')');
  return `Request failed (${status} ${res.statusText || ''}).`.replace(' )', ')');
}

/**
 * `api(method, path, body?, opts?)`. opts: `signal` (AbortSignal), `noAuthRedirect` (a 401 is
 * just an error, e.g. the sign-in itself or a Thing API call), `headers`.
 * Resolves with the parsed JSON answer (or the text for non-JSON answers); rejects with an
 * ApiError (status 0 for a network failure) or an AbortError.
 */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json', ...(opts.headers || {}) };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store', signal: opts.signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && session.current && session.current.csrf) {
    headers['X-CSRF-Token'] = session.current.csrf;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (isAbort(e)) throw e;
    throw new ApiError(0, 'network', 'The server could not be reached. Check the connection and try again.');
  }
  const text = await res.text();
  let data = text;
  if (text && (res.headers.get('Content-Type') || '').includes('json')) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok || (data && typeof data === 'object' && data.status === 'error')) {
    const err = new ApiError(res.status, data && data.code, describe(res.status, data, res), data);
    err.retryAfter = res.headers.get('Retry-After');
    if (res.status === 401 && !opts.noAuthRedirect) {
      session.current = null;
      for (const fn of listeners.unauthorized) fn(err);
    }
    throw err;
  }
  return data;
}

export const get = (path, opts) => api('GET', path, undefined, opts);

/** Builds `path?k=v&…`, skipping null/undefined/'' values. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export const enc = encodeURIComponent;

// ---- session ------------------------------------------------------------------------------------

export async function loadSession() {
  try {
    const s = await api('GET', '/v2/panel/session', undefined, { noAuthRedirect: true });
    session.current = { email: s.email, csrf: s.csrf, expiresAt: s.expiresAt };
  } catch (e) {
    session.current = null;
    if (e.status !== 401) throw e;
  }
  return session.current;
}

export async function signIn(email, password) {
  const s = await api('POST', '/v2/panel/session', { email, password }, { noAuthRedirect: true });
  session.current = { email: s.email || email, csrf: s.csrf, expiresAt: s.expiresAt };
  return session.current;
}

export async function signOut() {
  try {
    await api('DELETE', '/v2/panel/session', undefined, { noAuthRedirect: true });
  } finally {
    session.current = null;
  }
}
