// The official thethings.iO CoAP SDK's requests, made the way it makes them with the library it
// uses (npm `coap` 0.8.0, its global agent: one UDP endpoint per process), driven by the Rust CoAP
// tests (tests/coap_clients.rs). What the SDK does, as captured from its packets:
//   - every request confirmable, with no Content-Format and no Accept option, JSON payloads;
//   - the query string inside the last Uri-Path segment (coap 0.8 splits `pathname` at `/` only):
//     activate POST /v2/things, write POST /v2/things/{token}? (a trailing `?`), read
//     GET /v2/things/{token}/resources/{key}?limit=…&startDate=…&endDate=…;
//   - subscribe: GET with Observe on /v2/things/{token}?keepAlive=ms, reading the stream's `data`.
// Environment: COAP_PORT (the server's UDP port on 127.0.0.1).
// Commands arrive as JSON lines on stdin:
//   {"op":"activate","id":N,"code":…}
//   {"op":"write","id":N,"token":…,"values":[…]}
//   {"op":"read","id":N,"token":…,"key":…,"query":"limit=3&…"?}
//       each answered by {"type":"response","id":N,"code":"2.01","payload":…}
//       or {"type":"error","id":N,"message":…}
//   {"op":"subscribe","id":N,"token":…,"keepAlive":ms}
//       answered by {"type":"response","id":N,"code":…,"payload":…,"observe":…} (the first
//       packet), then {"type":"data","id":N,"payload":…} for every chunk the stream emits (what
//       the SDK hands its callback), {"type":"end","id":N} when the stream ends
//   {"op":"close","id":M,"target":N}   closes subscription N (`res.close()`, as on the SDK's unsubscribe;
//       with no other request open, coap 0.8 closes its socket); answered by {"type":"closed","id":M}
//   {"op":"end"}            exits
'use strict';
const coap = require('coap');
const readline = require('readline');

const host = '127.0.0.1';
const port = Number(process.env.COAP_PORT);
const streams = {};

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function request(id, method, pathname, body) {
  const req = coap.request({ host, port, method, pathname });
  req.on('response', (res) => {
    out({ type: 'response', id, code: res.code, payload: res.payload.toString('utf8') });
  });
  req.on('error', (err) => out({ type: 'error', id, message: String(err && err.message) }));
  if (body !== undefined) req.write(JSON.stringify(body));
  req.end();
}

function subscribe(id, token, keepAlive) {
  const req = coap.request({
    host,
    port,
    method: 'GET',
    pathname: '/v2/things/' + token + '?keepAlive=' + keepAlive,
    observe: true,
  });
  req.on('response', (res) => {
    out({
      type: 'response',
      id,
      code: res.code,
      payload: res.payload.toString('utf8'),
      observe: res.headers.Observe === undefined ? null : res.headers.Observe,
    });
    streams[id] = res;
    res.on('data', (chunk) => out({ type: 'data', id, payload: chunk.toString('utf8') }));
    res.on('end', () => out({ type: 'end', id }));
  });
  req.on('error', (err) => out({ type: 'error', id, message: String(err && err.message) }));
  req.end();
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = JSON.parse(line);
  switch (cmd.op) {
    case 'activate':
      request(cmd.id, 'POST', '/v2/things', { activationCode: cmd.code });
      break;
    case 'write':
      request(cmd.id, 'POST', '/v2/things/' + cmd.token + '?', { values: cmd.values });
      break;
    case 'read':
      request(cmd.id, 'GET', '/v2/things/' + cmd.token + '/resources/' + cmd.key + (cmd.query ? '?' + cmd.query : ''));
      break;
    case 'subscribe':
      subscribe(cmd.id, cmd.token, cmd.keepAlive);
      break;
    case 'close':
      streams[cmd.target].close();
      delete streams[cmd.target];
      out({ type: 'closed', id: cmd.id });
      break;
    case 'end':
      process.exit(0);
      break;
    default:
      out({ type: 'error', id: cmd.id, message: 'unknown op ' + cmd.op });
  }
});
rl.on('close', () => process.exit(0));
