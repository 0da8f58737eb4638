// The panel's live stream: an EventSource on /v2/panel/live?things=…, reconnected with
// exponential backoff (1 s … 30 s, with jitter) when it errors, and closed when the page is left.
//
// Events: `ready` (the stream is set up: after a reconnect the page refetches what it may have
// missed), `values` ({thingId, values:[{key, value, datetime[, geo]}]}), `end` (an error
// envelope: 401 the session ended, 404 a thing was deleted, 503 the client was too slow).

import { api } from './api.js';

const MAX_IDS = 100;

/**
 * Opens the stream for `thingIds` (at most 100). Handlers: `onValues(msg)`, `onReady(reconnected)`,
 * `onEnd(envelope)` (404: a thing was deleted; the stream is then closed), `onState(state)` with
 * state 'connecting' | 'live' | 'reconnecting' | 'closed'. Returns `{close()}`.
 */
export function openLive(thingIds, handlers = {}) {
  const ids = [...new Set(thingIds)].slice(0, MAX_IDS);
  let es = null;
  let closed = false;
  let attempt = 0;
  let timer = 0;
  let everReady = false;
  const state = (s) => handlers.onState && handlers.onState(s);

  if (ids.length === 0) return { close() {} };

  const url = `/v2/panel/live?things=${ids.map(encodeURIComponent).join(',')}`;

  function connect() {
    if (closed) return;
    state(everReady ? 'reconnecting' : 'connecting');
    es = new EventSource(url, { withCredentials: true });
    es.addEventListener('ready', () => {
      attempt = 0;
      state('live');
      if (handlers.onReady) handlers.onReady(everReady);
      everReady = true;
    });
    es.addEventListener('values', (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && handlers.onValues) handlers.onValues(msg);
    });
    es.addEventListener('end', (ev) => {
      let env = {};
      try {
        env = JSON.parse(ev.data) || {};
      } catch {
        env = {};
      }
      const code = Number(env.code);
      drop();
      if (code === 401) {
        // The session ended: let the API client notice it (and send the user to sign in).
        probeSession();
        closed = true;
        state('closed');
      } else if (code === 404) {
        if (handlers.onEnd) handlers.onEnd(env);
        closed = true;
        state('closed');
      } else {
        if (handlers.onEnd) handlers.onEnd(env);
        retry();
      }
    });
    es.addEventListener('error', () => {
      // EventSource retries by itself only after a clean end; a refused connection (401, 404…)
      // closes it. Either way: our own backoff, and a session check (a 401 is not visible here).
      drop();
      retry();
      if (attempt >= 2) probeSession();
    });
  }

  function drop() {
    if (es) {
      es.close();
      es = null;
    }
  }

  function retry() {
    if (closed) return;
    clearTimeout(timer);
    const base = Math.min(30000, 1000 * 2 ** attempt);
    attempt += 1;
    const delay = base / 2 + Math.random() * (base / 2);
    state('reconnecting');
    timer = setTimeout(connect, delay);
  }

  function probeSession() {
    // A GET that answers 401 triggers the API client's sign-in redirect.
    api('GET', '/v2/panel/session').catch(() => {});
  }

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      drop();
      state('closed');
    },
  };
}

/** A small indicator element whose text follows the stream's state. */
export function liveIndicator() {
  const el = document.createElement('span');
  el.className = 'live-state';
  el.dataset.testid = 'live-state';
  el.setAttribute('role', 'status');
  el.dataset.state = 'closed';
  el.textContent = '';
  const labels = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', closed: 'Not live' };
  return {
    el,
    set(s) {
      el.dataset.state = s;
      el.textContent = labels[s] || s;
    },
  };
}
