#!/usr/bin/env node
// Realtime (Socket.IO) benchmark of Thingline, issue #5: commit→delivery latency with 1,000
// subscribers at 20 writes/s, fan-out deliveries/s, resident memory per idle connection.
// The same clients and writer drive a reference: a minimal Node socket.io 4 server over HTTPS with
// the same certificate, which broadcasts each POST to the room of the thing (no store, no auth).
//
// Roles (argv[2]):
//   main  --url https://127.0.0.1:PORT --ca CERT --key KEY --pid PID [--server-log FILE]
//         [--phases latency,fanout | memory] [--workers 4] [--json FILE] [...]  (see parseArgs)
//   worker   (forked by main) holds a share of the Socket.IO clients, records receipt times
//   refserver --cert CERT --key KEY  prints "listening port=N" on stdout
// Everything talks to 127.0.0.1 only; every wait has a deadline; the process exits by itself.
'use strict';
const fs = require('fs');
const path = require('path');
const https = require('https');
const { fork } = require('child_process');

const now = () => Number(process.hrtime.bigint()) / 1e6; // CLOCK_MONOTONIC ms, same in every process
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms); }),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Histogram: 10 µs buckets up to 2 s, plus overflow. Mergeable across workers.
const BUCKET_MS = 0.01;
const NBUCKETS = 200000;
class Hist {
  constructor() { this.b = new Uint32Array(NBUCKETS + 1); this.n = 0; this.max = 0; this.sum = 0; }
  add(ms) {
    if (ms < 0) ms = 0;
    const i = Math.min(NBUCKETS, Math.floor(ms / BUCKET_MS));
    this.b[i]++; this.n++; this.sum += ms; if (ms > this.max) this.max = ms;
  }
  toJSON() {
    const sparse = [];
    for (let i = 0; i <= NBUCKETS; i++) if (this.b[i]) sparse.push(i, this.b[i]);
    return { sparse, n: this.n, max: this.max, sum: this.sum };
  }
  merge(j) {
    for (let k = 0; k < j.sparse.length; k += 2) this.b[j.sparse[k]] += j.sparse[k + 1];
    this.n += j.n; this.sum += j.sum; if (j.max > this.max) this.max = j.max;
  }
  pct(p) {
    if (!this.n) return NaN;
    const want = Math.ceil(this.n * p);
    let acc = 0;
    for (let i = 0; i <= NBUCKETS; i++) { acc += this.b[i]; if (acc >= want) return i === NBUCKETS ? this.max : (i + 1) * BUCKET_MS; }
    return this.max;
  }
  summary() {
    return { n: this.n, p50: r2(this.pct(0.5)), p90: r2(this.pct(0.9)), p99: r2(this.pct(0.99)), p999: r2(this.pct(0.999)), max: r2(this.max), mean: r2(this.sum / (this.n || 1)) };
  }
}
const r2 = (x) => Math.round(x * 100) / 100;

function cpuOfPid(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime+stime, seconds (USER_HZ=100)
  } catch (e) { return NaN; }
}
function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

// ---------------------------------------------------------------------------------------------
// Worker: a share of the Socket.IO clients.
function worker() {
  const io = require('socket.io-client');
  let clientKind = 'sio';
  let sockets = [];
  let rec = null; // { seqs: Float64Array, times: Float64Array, n }
  let recording = false;
  const stats = { received: 0, errors: 0, disconnects: 0, errorSamples: [] };

  function grow() {
    const cap = rec.seqs.length * 2;
    const s = new Float64Array(cap); s.set(rec.seqs); rec.seqs = s;
    const t = new Float64Array(cap); t.set(rec.times); rec.times = t;
  }
  function onData(items) {
    const t = now();
    if (!Array.isArray(items)) { // an error envelope on the topic event (503 slow consumer, 403, 401)
      stats.errors++; if (stats.errorSamples.length < 3) stats.errorSamples.push(items); return;
    }
    stats.received++;
    if (!recording) return;
    if (rec.n === rec.seqs.length) grow();
    rec.seqs[rec.n] = items[0].value; rec.times[rec.n] = t; rec.n++;
  }

  // A bare client speaking Engine.IO v4 / Socket.IO v5 over `ws` (no socket.io-client): pings
  // answered, acks matched, data frames parsed only for the value. Same wire as socket.io-client
  // with transports: ['websocket'], a fraction of its CPU.
  function onRawData(text) {
    // 42/v2,["/things/TOKEN",[{"key":"temperature","value":N,...}]]
    const t = now();
    const i = text.indexOf('",', 6);
    if (text.charCodeAt(i + 2) !== 91 /* [ */) { stats.errors++; if (stats.errorSamples.length < 3) stats.errorSamples.push(text.slice(0, 200)); return; }
    stats.received++;
    if (!recording) return;
    const v = text.indexOf('"value":', i);
    if (rec.n === rec.seqs.length) grow();
    rec.seqs[rec.n] = parseFloat(text.slice(v + 8, v + 30)); rec.times[rec.n] = t; rec.n++;
  }
  class RawSocket {
    constructor(url, ca) {
      const u = new URL(url);
      this.nsp = u.pathname; // "/v2"
      this.ws = new WebSocket(`wss://${u.host}/socket.io/?EIO=4&transport=websocket`, { ca, perMessageDeflate: false });
      this.connected = false; this.acks = new Map(); this.nextAck = 1; this.handlers = new Map(); this.closedByUs = false;
      this.ws.on('message', (data) => this.onFrame(data.toString()));
      this.ws.on('close', () => { const was = this.connected; this.connected = false; if (was && !this.closedByUs) stats.disconnects++; if (this.onclose) this.onclose(); });
      this.ws.on('error', (e) => { if (this.onerror) this.onerror(e); });
    }
    onFrame(text) {
      (this.frames = this.frames || []).push(text.slice(0, 60)); if (this.frames.length > 6) this.frames.shift();
      const c = text.charCodeAt(0);
      if (c === 50 /* 2 ping */) { this.ws.send('3'); return; }
      if (c === 48 /* 0 open */) { this.ws.send(`40${this.nsp},`); return; }
      if (c !== 52 /* 4 message */) return;
      const p = text.charCodeAt(1);
      const body = text.slice(text.indexOf(',') + 1);
      if (p === 48 /* 0 connect */) { this.connected = true; if (this.onconnect) this.onconnect(); return; }
      if (p === 50 /* 2 event */) {
        if (text.startsWith(this.dataPrefix || '\u0000')) return onRawData(text);
        return; // authenticate/subscribe echoes
      }
      if (p === 51 /* 3 ack */) {
        const m = /^(\d+)(.*)$/s.exec(body); if (!m) return;
        const cb = this.acks.get(Number(m[1])); this.acks.delete(Number(m[1]));
        if (cb) { let args; try { args = JSON.parse(m[2]); } catch (e) { args = [null]; } cb(args[0]); }
        return;
      }
      if (p === 52 /* 4 connect error */) { if (this.onerror) this.onerror(new Error(body)); }
    }
    emit(event, data, cb) {
      const id = this.nextAck++;
      this.acks.set(id, cb); this.lastEmit = event;
      this.ws.send(`42${this.nsp},${id}${JSON.stringify([event, data])}`);
    }
    on(event) { this.dataPrefix = `42${this.nsp},[${JSON.stringify(event)},`; }
    close() { this.closedByUs = true; try { this.ws.close(); } catch (e) { /* closed */ } }
  }
  let WebSocket = null;

  function openOneRaw(url, ca, spec, timeoutMs) {
    WebSocket = WebSocket || require('ws');
    return new Promise((resolve) => {
      const s = new RawSocket(url, ca);
      let done = false;
      const fin = (err) => { if (done) return; done = true; clearTimeout(t); resolve(err ? { err } : { s }); };
      const t = setTimeout(() => { fin(`timeout (ws ${s.ws.readyState}, nsp ${s.connected}, acks pending ${s.acks.size} ${s.lastEmit}, frames ${JSON.stringify(s.frames)})`); s.close(); }, timeoutMs);
      s.onerror = (e) => fin('error: ' + (e && e.message));
      s.onclose = () => fin('closed');
      s.onconnect = () => {
        if (spec.stage === 'connect') return fin();
        s.emit('authenticate', { sessionToken: spec.token }, (a) => {
          if (!a || a.status !== 'success') return fin('authenticate: ' + JSON.stringify(a));
          if (spec.stage === 'authenticate') return fin();
          s.on(spec.event);
          s.emit('subscribe', { resource: spec.resource }, (b) => {
            if (!b || b.status !== 'success') return fin('subscribe: ' + JSON.stringify(b));
            fin();
          });
        });
      };
    });
  }

  function openOne(url, ca, spec, timeoutMs) {
    if (clientKind === 'raw') return openOneRaw(url, ca, spec, timeoutMs);
    return new Promise((resolve) => {
      const s = io(url, { transports: ['websocket'], ca, reconnection: false, forceNew: true, timeout: timeoutMs });
      let done = false;
      const fin = (err) => { if (done) return; done = true; clearTimeout(t); resolve(err ? { err } : { s }); };
      const t = setTimeout(() => { fin('timeout'); s.close(); }, timeoutMs);
      s.on('connect_error', (e) => fin('connect_error: ' + (e && e.message)));
      s.on('disconnect', (reason) => { if (done) stats.disconnects++; });
      s.once('connect', () => {
        if (spec.stage === 'connect') return fin();
        s.emit('authenticate', { sessionToken: spec.token }, (a) => {
          if (!a || a.status !== 'success') return fin('authenticate: ' + JSON.stringify(a));
          if (spec.stage === 'authenticate') return fin();
          s.on(spec.event, onData);
          s.emit('subscribe', { resource: spec.resource }, (b) => {
            if (!b || b.status !== 'success') return fin('subscribe: ' + JSON.stringify(b));
            fin();
          });
        });
      });
    });
  }

  async function open(msg) {
    const ca = fs.readFileSync(msg.ca);
    clientKind = msg.client;
    const specs = msg.sockets;
    let next = 0, ok = 0;
    const errors = [], retried = [];
    async function lane() {
      while (next < specs.length) {
        const spec = specs[next++];
        let r = await openOne(msg.url, ca, spec, msg.timeoutMs);
        if (!r.s) { retried.push(r.err); r = await openOne(msg.url, ca, spec, msg.timeoutMs); } // once; reported
        if (r.s) { sockets.push(r.s); ok++; } else if (errors.length < 5) errors.push(r.err); else errors.push(null);
      }
    }
    await Promise.all(Array.from({ length: msg.concurrency }, lane));
    return { ok, failed: specs.length - ok, errors: errors.filter(Boolean), retried };
  }

  // Continue a stage on already open sockets (memory phase: connect → authenticate → subscribe).
  async function advance(msg) {
    let next = 0, ok = 0; const errors = [];
    const specs = msg.sockets;
    async function lane() {
      while (next < sockets.length) {
        const i = next++; const s = sockets[i]; const spec = specs[i];
        const r = await new Promise((resolve) => {
          const t = setTimeout(() => resolve('timeout'), msg.timeoutMs);
          if (msg.stage === 'authenticate') {
            s.emit('authenticate', { sessionToken: spec.token }, (a) => { clearTimeout(t); resolve(a && a.status === 'success' ? null : 'authenticate: ' + JSON.stringify(a)); });
          } else {
            if (clientKind === 'raw') s.on(spec.event); else s.on(spec.event, onData);
            s.emit('subscribe', { resource: spec.resource }, (b) => { clearTimeout(t); resolve(b && b.status === 'success' ? null : 'subscribe: ' + JSON.stringify(b)); });
          }
        });
        if (!r) ok++; else if (errors.length < 5) errors.push(r);
      }
    }
    await Promise.all(Array.from({ length: msg.concurrency }, lane));
    return { ok, failed: sockets.length - ok, errors };
  }

  function report(msg) {
    const send = msg.sendTimes, ack = msg.ackTimes, from = msg.fromSeq, to = msg.toSeq;
    const hSend = new Hist(), hAck = new Hist();
    let counted = 0, first = Infinity, last = -Infinity;
    for (let i = 0; i < rec.n; i++) {
      const seq = rec.seqs[i], t = rec.times[i];
      if (seq < from || seq > to) continue;
      counted++;
      if (t < first) first = t; if (t > last) last = t;
      const ts = send[seq]; if (ts !== undefined && ts !== null) hSend.add(t - ts);
      const ta = ack[seq]; if (ta !== undefined && ta !== null) hAck.add(t - ta);
    }
    return { counted, first, last, hSend: hSend.toJSON(), hAck: hAck.toJSON() };
  }

  process.on('message', async (msg) => {
    try {
      let out;
      switch (msg.cmd) {
        case 'open': out = await open(msg); break;
        case 'advance': out = await advance(msg); break;
        case 'record':
          rec = { seqs: new Float64Array(1 << 16), times: new Float64Array(1 << 16), n: 0 };
          recording = true; out = {}; break;
        case 'report': recording = false; out = report(msg); rec = null; break;
        case 'stats': {
          const c = process.cpuUsage();
          out = { ...stats, connected: sockets.filter((s) => s.connected).length, cpu: (c.user + c.system) / 1e6, rssKb: rssKb(process.pid) };
          break;
        }
        case 'close':
          for (const s of sockets) s.close();
          sockets = [];
          out = {};
          break;
        case 'exit': process.exit(0);
      }
      process.send({ id: msg.id, ok: true, out });
    } catch (e) {
      process.send({ id: msg.id, ok: false, error: String(e && e.stack || e) });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// Reference server: minimal socket.io 4 over HTTPS, same certificate, broadcasts each write.
function refserver(args) {
  const { Server } = require('socket.io');
  const server = https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) }, (req, res) => {
    const m = /^\/v2\/things\/([^/?]+)$/.exec(req.url);
    if (req.method !== 'POST' || !m) { res.writeHead(404); return res.end(); }
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      let values;
      try { values = JSON.parse(body).values; } catch (e) { res.writeHead(400); return res.end(); }
      const datetime = new Date().toISOString();
      const items = values.map((v) => ({ key: v.key, value: v.value, datetime }));
      const topic = '/things/' + m[1];
      nsp.to(topic).emit(topic, items);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end('{"status":"created"}');
    });
  });
  const io = new Server(server, { transports: ['websocket', 'polling'], pingInterval: 25000, pingTimeout: 20000 });
  const nsp = io.of('/v2');
  nsp.on('connection', (socket) => {
    socket.on('authenticate', (d, ack) => {
      const body = { status: 'success' };
      socket.emit('authenticate', body); if (typeof ack === 'function') ack(body);
    });
    socket.on('subscribe', (d, ack) => {
      let r = String(d && d.resource || ''); if (!r.startsWith('/')) r = '/' + r;
      socket.join(r);
      const body = { status: 'success', resource: r };
      socket.emit('subscribe', body); if (typeof ack === 'function') ack(body);
    });
  });
  server.listen(0, '127.0.0.1', () => { process.stdout.write(`listening port=${server.address().port}\n`); });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0)); // the bench stops its servers so and expects 0
  setTimeout(() => process.exit(0), args.maxSeconds * 1000).unref();
}

// ---------------------------------------------------------------------------------------------
// Main: setup through the real API, the phases, the report.
function parseArgs(argv) {
  const a = {
    url: null, ca: null, key: null, pid: null, serverLog: null,
    phases: 'latency,fanout', workers: 4, json: null, client: 'sio',
    email: process.env.THINGLINE_PANEL_EMAIL || 'bench@example.com',
    password: process.env.THINGLINE_PANEL_PASSWORD || 'bench-password',
    latencySubs: 1000, latencyRate: 20, latencySeconds: 10, warmupSeconds: 2,
    fanout: '1000x100,1000x200', fanoutSeconds: 6,
    idle: 10000, settleSeconds: 4, connectConcurrency: 16,
    reference: true, statsWait: 70, maxSeconds: 900, cert: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(k in a)) throw new Error('unknown flag ' + argv[i]);
    const v = argv[++i];
    a[k] = typeof a[k] === 'number' ? Number(v) : (typeof a[k] === 'boolean' ? v !== 'false' : v);
  }
  return a;
}

class Api {
  constructor(base, ca) {
    this.base = new URL(base);
    this.agent = new https.Agent({ ca, keepAlive: true, maxSockets: 16 });
  }
  request(method, p, body, token) {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const headers = { 'content-type': 'application/json' };
      if (token) headers.authorization = token;
      if (data) headers['content-length'] = Buffer.byteLength(data);
      const req = https.request({ host: '127.0.0.1', port: this.base.port, path: p, method, headers, agent: this.agent, timeout: 30000 }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { text += c; });
        res.on('end', () => {
          let json = null; try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
          resolve({ status: res.statusCode, json, text });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${p}: timeout`)));
      req.on('error', reject);
      if (data) req.write(data);
      req.end();
    });
  }
  async expect(method, p, body, token, status) {
    const r = await this.request(method, p, body, token);
    if (r.status !== status) throw new Error(`${method} ${p} answered ${r.status} (expected ${status}): ${r.text.slice(0, 300)}`);
    return r.json;
  }
}

async function setup(api, args, users) {
  const { token } = await api.expect('POST', '/v2/panel/login', { email: args.email, password: args.password }, null, 200);
  const { productId } = await api.expect('POST', '/v2/panel/products', { name: 'realtime-bench', resources: [{ key: 'temperature', public: true }] }, token, 201);
  const { codes } = await api.expect('POST', `/v2/panel/products/${productId}/activation-codes`, { count: 1 }, token, 201);
  const thing = await api.expect('POST', '/v2/things', { activationCode: codes[0] }, null, 201);
  const { appId } = await api.expect('POST', '/v2/panel/apps', { name: 'realtime-bench', resources: ['temperature'] }, token, 201);
  const sessions = new Array(users);
  let next = 0;
  const t0 = now();
  async function lane() {
    while (next < users) {
      const i = next++;
      const r = await api.expect('POST', '/v2/register', { email: `rt-bench-${i}@example.com`, password: 'rt-bench-password', app: appId }, null, 201);
      sessions[i] = r.token;
    }
  }
  await Promise.all(Array.from({ length: 4 }, lane));
  log(`setup: product ${productId}, thing ${thing.thingId}, app ${appId}, ${users} users registered in ${((now() - t0) / 1000).toFixed(1)} s`);
  return { thingToken: thing.thingToken, sessions };
}

function log(s) { process.stderr.write(`[realtime-bench] ${s}\n`); }

class Workers {
  constructor(n) {
    this.ws = [];
    this.pending = new Map();
    this.nextId = 1;
    for (let i = 0; i < n; i++) {
      const w = fork(__filename, ['worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      w.on('message', (m) => { const p = this.pending.get(m.id); if (!p) return; this.pending.delete(m.id); m.ok ? p.resolve(m.out) : p.reject(new Error(m.error)); });
      w.on('exit', (code) => { for (const [, p] of this.pending) p.reject(new Error(`worker exited (${code})`)); this.pending.clear(); });
      this.ws.push(w);
    }
  }
  call(i, msg, timeoutMs = 120000) {
    const id = this.nextId++;
    const p = new Promise((resolve, reject) => { this.pending.set(id, { resolve, reject }); });
    this.ws[i].send({ ...msg, id });
    return withTimeout(p, timeoutMs, `worker ${i} ${msg.cmd}`);
  }
  all(msgFor, timeoutMs) { return Promise.all(this.ws.map((_, i) => this.call(i, msgFor(i), timeoutMs))); }
  pids() { return this.ws.map((w) => w.pid); }
  kill() { for (const w of this.ws) { try { w.kill('SIGKILL'); } catch (e) { /* gone */ } } }
}

// The socket specs (token, resource) for n subscribers, spread over workers; 50 per user.
function specs(n, sessions, thingToken, stage, perUser = 50) {
  if (Math.ceil(n / perUser) > sessions.length) throw new Error(`${n} connections need ${Math.ceil(n / perUser)} users, have ${sessions.length}`);
  const resource = `/things/${thingToken}`;
  return Array.from({ length: n }, (_, i) => ({ token: sessions[Math.floor(i / perUser)], resource, event: resource, stage }));
}
function split(list, k) { const out = Array.from({ length: k }, () => []); list.forEach((x, i) => out[i % k].push(x)); return out; }

async function openAll(workers, url, args, list) {
  const parts = split(list, workers.ws.length);
  const t0 = now();
  const rs = await workers.all((i) => ({ cmd: 'open', client: args.client, url, ca: args.ca, sockets: parts[i], concurrency: args.connectConcurrency, timeoutMs: 20000 }), 600000);
  const ok = rs.reduce((s, r) => s + r.ok, 0);
  const errs = rs.flatMap((r) => r.errors);
  const retried = rs.flatMap((r) => r.retried);
  if (retried.length) log(`RETRIED ${retried.length} socket opens: ${retried.slice(0, 3).join(' | ')}`);
  log(`opened ${ok}/${list.length} sockets in ${((now() - t0) / 1000).toFixed(1)} s${errs.length ? ' errors: ' + errs.slice(0, 3).join(' | ') : ''}`);
  if (ok !== list.length) throw new Error(`only ${ok}/${list.length} sockets opened: ${errs.slice(0, 3).join(' | ')}`);
  return parts;
}

// Paced writer: `rate` writes/s for `seconds`, value = sequence number; send and 201 times kept.
async function writeLoop(api, thingToken, rate, seconds, firstSeq) {
  const sendTimes = {}, ackTimes = {};
  const n = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const start = now();
  let errors = 0, inflight = 0, maxInflight = 0, late = 0;
  const rtt = new Hist();
  const done = [];
  for (let k = 0; k < n; k++) {
    const due = start + k * interval;
    const wait = due - now();
    if (wait > 1) await sleep(wait - 0.5);
    while (now() < due) { /* spin the last half ms */ }
    if (now() - due > interval) late++;
    const seq = firstSeq + k;
    const body = { values: [{ key: 'temperature', value: seq }] };
    inflight++; if (inflight > maxInflight) maxInflight = inflight;
    const t = now();
    sendTimes[seq] = t;
    done.push(api.request('POST', `/v2/things/${thingToken}`, body).then((r) => {
      const ta = now(); ackTimes[seq] = ta; rtt.add(ta - t); inflight--;
      if (r.status !== 201) errors++;
    }, () => { errors++; inflight--; }));
    if (inflight > 64) await done[done.length - 1].catch(() => {}); // bound the backlog
  }
  await withTimeout(Promise.all(done), 30000, 'writes');
  const elapsed = (now() - start) / 1000;
  return { sendTimes, ackTimes, n, errors, elapsed, achievedRate: n / elapsed, writeRtt: rtt.summary(), maxInflight, late, lastSeq: firstSeq + n - 1 };
}

async function measure(workers, api, thingToken, rate, seconds, warmupSeconds, seqBase, subs, serverPid) {
  await workers.all(() => ({ cmd: 'record' }));
  const cpu0 = cpuOfPid(serverPid);
  const before = await workers.all(() => ({ cmd: 'stats' }));
  const w = await writeLoop(api, thingToken, rate, seconds + warmupSeconds, seqBase);
  await sleep(1500); // let the last deliveries land
  const after = await workers.all(() => ({ cmd: 'stats' }));
  const cpu1 = cpuOfPid(serverPid);
  const fromSeq = seqBase + Math.round(rate * warmupSeconds);
  const rs = await workers.all(() => ({ cmd: 'report', sendTimes: w.sendTimes, ackTimes: w.ackTimes, fromSeq, toSeq: w.lastSeq }), 120000);
  const hSend = new Hist(), hAck = new Hist();
  let counted = 0, first = Infinity, last = -Infinity;
  for (const r of rs) { hSend.merge(r.hSend); hAck.merge(r.hAck); counted += r.counted; first = Math.min(first, r.first); last = Math.max(last, r.last); }
  const measuredWrites = w.lastSeq - fromSeq + 1;
  const expected = measuredWrites * subs;
  const firstSend = w.sendTimes[fromSeq];
  const span = (last - firstSend) / 1000;
  const clientCpu = after.reduce((s, x) => s + x.cpu, 0) - before.reduce((s, x) => s + x.cpu, 0);
  const sum = (arr, k) => arr.reduce((s, x) => s + x[k], 0);
  return {
    subs, rate, seconds, writes: w.n, writeErrors: w.errors, achievedWriteRate: r2(w.achievedRate), lateWrites: w.late, maxInflight: w.maxInflight,
    writeRtt: w.writeRtt,
    latencyFromSend: hSend.summary(), latencyFrom201: hAck.summary(),
    expectedDeliveries: expected, receivedDeliveries: counted, missing: expected - counted,
    deliveriesPerSec: Math.round(counted / span), offeredPerSec: subs * rate,
    topicErrors: sum(after, 'errors') - sum(before, 'errors'), disconnects: sum(after, 'disconnects') - sum(before, 'disconnects'),
    errorSamples: after.flatMap((x) => x.errorSamples).slice(0, 2),
    connected: sum(after, 'connected'),
    serverCpuSec: r2(cpu1 - cpu0), clientCpuSec: r2(clientCpu), wallSec: r2(span),
    nextSeq: w.lastSeq + 1,
  };
}

async function startRef(args, maxSeconds) {
  const child = fork(__filename, ['refserver', '--cert', args.ca, '--key', args.key, '--max-seconds', String(maxSeconds)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const port = await withTimeout(new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (c) => { buf += c; const m = /listening port=(\d+)/.exec(buf); if (m) resolve(Number(m[1])); });
    child.on('exit', (c) => reject(new Error('reference server exited ' + c)));
  }), 10000, 'reference server start');
  return { child, port, url: `https://127.0.0.1:${port}` };
}

async function runTraffic(args, target, sessions, thingToken, results) {
  // target: { name, url, pid }
  const api = new Api(target.url, fs.readFileSync(args.ca));
  let seq = 1;
  const out = {};
  // latency: 1,000 subscribers, 20 writes/s
  {
    const workers = new Workers(args.workers);
    try {
      await openAll(workers, `${target.url}/v2`, args, specs(args.latencySubs, sessions, thingToken, 'subscribe'));
      const r = await measure(workers, api, thingToken, args.latencyRate, args.latencySeconds, args.warmupSeconds, seq, args.latencySubs, target.pid);
      seq = r.nextSeq;
      out.latency = r;
      log(`${target.name} latency: ${JSON.stringify(r)}`);
      // fan-out steps on the same or larger subscriber sets
      out.fanout = [];
      let open = args.latencySubs;
      for (const step of args.fanout.split(',').filter(Boolean)) {
        const [subs, rate] = step.split('x').map(Number);
        if (subs !== open) {
          await workers.all(() => ({ cmd: 'close' }));
          await sleep(1000);
          await openAll(workers, `${target.url}/v2`, args, specs(subs, sessions, thingToken, 'subscribe'));
          open = subs;
        }
        const f = await measure(workers, api, thingToken, rate, args.fanoutSeconds, 1, seq, subs, target.pid);
        seq = f.nextSeq;
        out.fanout.push(f);
        log(`${target.name} fanout ${step}: ${JSON.stringify(f)}`);
      }
      await workers.all(() => ({ cmd: 'close' }));
    } finally {
      workers.kill();
    }
  }
  results[target.name] = out;
}

async function runMemory(args, target, sessions, thingToken, results) {
  const n = args.idle;
  const workers = new Workers(args.workers);
  const out = { n, stages: [] };
  try {
    await sleep(args.settleSeconds * 1000);
    const base = rssKb(target.pid);
    out.baselineKb = base;
    const list = specs(n, sessions, thingToken, 'connect');
    const parts = await openAll(workers, `${target.url}/v2`, args, list);
    for (const stage of ['connect', 'authenticate', 'subscribe']) {
      if (stage !== 'connect') {
        const t0 = now();
        const rs = await workers.all((i) => ({ cmd: 'advance', stage, sockets: parts[i], concurrency: args.connectConcurrency, timeoutMs: 20000 }), 600000);
        const ok = rs.reduce((s, r) => s + r.ok, 0);
        log(`${target.name}: ${stage} ${ok}/${n} in ${((now() - t0) / 1000).toFixed(1)} s ${rs.flatMap((r) => r.errors).slice(0, 2).join(' | ')}`);
        if (ok !== n) throw new Error(`${stage}: only ${ok}/${n}`);
      }
      await sleep(args.settleSeconds * 1000);
      const st = await workers.all(() => ({ cmd: 'stats' }));
      const rss = rssKb(target.pid);
      const connected = st.reduce((s, x) => s + x.connected, 0);
      const clientRss = st.reduce((s, x) => s + x.rssKb, 0);
      const row = { stage, rssKb: rss, deltaKb: rss - base, perConnKb: r2((rss - base) / n), connected, clientRssKb: clientRss, clientPerConnKb: r2(clientRss / n) };
      out.stages.push(row);
      log(`${target.name} memory ${JSON.stringify(row)}`);
    }
    await workers.all(() => ({ cmd: 'close' }));
    await sleep(args.settleSeconds * 1000);
    out.afterCloseKb = rssKb(target.pid);
  } finally {
    workers.kill();
  }
  results[target.name] = out;
}

// The server logs `realtime connections=… delivered=… dropped_slow=… dropped_lagged=…` every 60 s.
async function serverCounters(args, sinceLines, maxWaitS) {
  if (!args.serverLog) return null;
  const deadline = now() + maxWaitS * 1000;
  for (;;) {
    const lines = fs.readFileSync(args.serverLog, 'utf8').split('\n');
    const fresh = lines.slice(sinceLines).filter((l) => /realtime/.test(l) && /delivered=/.test(l));
    if (fresh.length || now() > deadline) {
      const l = fresh.length ? fresh[fresh.length - 1] : null;
      if (!l) return { line: null };
      const get = (k) => { const m = new RegExp(`\\b${k}=(\\d+)`).exec(l); return m ? Number(m[1]) : null; };
      return { delivered: get('delivered'), dropped_slow: get('dropped_slow'), dropped_lagged: get('dropped_lagged'), published: get('published') };
    }
    await sleep(1000);
  }
}
const logLines = (args) => (args.serverLog ? fs.readFileSync(args.serverLog, 'utf8').split('\n').length - 1 : 0);

async function main(args) {
  const hardStop = setTimeout(() => { log(`hard stop after ${args.maxSeconds} s`); process.exit(2); }, args.maxSeconds * 1000);
  hardStop.unref();
  const phases = args.phases.split(',');
  const api = new Api(args.url, fs.readFileSync(args.ca));
  const need = Math.max(phases.includes('memory') ? args.idle : 0,
    phases.includes('latency') ? Math.max(args.latencySubs, ...args.fanout.split(',').filter(Boolean).map((s) => Number(s.split('x')[0]))) : 0);
  const { thingToken, sessions } = await setup(api, args, Math.ceil(need / 50));
  const results = { machine: { cpus: require('os').cpus().length, node: process.version, workers: args.workers, client: args.client } };
  const thingline = { name: 'thingline', url: args.url, pid: Number(args.pid) };
  const kinds = args.client.split(',');
  if (phases.includes('latency')) {
    const l0 = logLines(args);
    let clientTotal = 0;
    for (const kind of kinds) {
      args.client = kind;
      const r = {};
      await runTraffic(args, thingline, sessions, thingToken, r);
      if (args.reference) {
        const ref = await startRef(args, args.maxSeconds);
        try { await runTraffic(args, { name: 'reference', url: ref.url, pid: ref.child.pid }, sessions, thingToken, r); } finally { ref.child.kill('SIGKILL'); }
      }
      results[kind] = r;
      clientTotal += r.thingline.latency.receivedDeliveries + r.thingline.fanout.reduce((s, f) => s + f.receivedDeliveries, 0);
    }
    log('waiting for the server\'s realtime counters line (logged every 60 s)');
    results.serverCounters = await serverCounters(args, l0, args.statsWait);
    if (results.serverCounters) results.serverCounters.clientCountedInMeasuredWindows = clientTotal;
  }
  if (phases.includes('memory')) {
    args.client = kinds[0];
    const r = {};
    await runMemory(args, thingline, sessions, thingToken, r);
    if (args.reference) {
      const ref = await startRef(args, args.maxSeconds);
      try { await runMemory(args, { name: 'reference', url: ref.url, pid: ref.child.pid }, sessions, thingToken, r); } finally { ref.child.kill('SIGKILL'); }
    }
    results.memory = r;
  }
  printReport(results, phases);
  if (args.json) fs.writeFileSync(args.json, JSON.stringify(results, null, 2));
  process.exit(0);
}

function printReport(res, phases) {
  const p = (s) => process.stdout.write(s + '\n');
  const ratio = (a, b) => (b ? (a / b).toFixed(2) : '-');
  for (const kind of ['raw', 'sio']) {
    if (!res[kind]) continue;
    const t = res[kind].thingline, ref = res[kind].reference;
    p(`== clients: ${kind === 'raw' ? 'bare Engine.IO v4/Socket.IO v5 over ws' : 'socket.io-client 4'} (${res.machine.workers} Node processes, same ${res.machine.cpus} cores as the server)`);
    const l = t.latency, rl = ref && ref.latency;
    p(`latency: ${l.subs} subscribers, ${l.rate} writes/s, ${l.latencyFromSend.n} deliveries measured (${l.missing} missing, ${l.topicErrors} error envelopes, ${l.disconnects} disconnects)`);
    p(`  thingline  send→receipt p50 ${l.latencyFromSend.p50} ms  p99 ${l.latencyFromSend.p99} ms  max ${l.latencyFromSend.max} ms | 201→receipt p99 ${l.latencyFrom201.p99} ms | write RTT p50 ${l.writeRtt.p50} p99 ${l.writeRtt.p99} ms | server CPU ${l.serverCpuSec} s, clients ${l.clientCpuSec} s over ${l.wallSec} s`);
    if (rl) p(`  reference  send→receipt p50 ${rl.latencyFromSend.p50} ms  p99 ${rl.latencyFromSend.p99} ms  max ${rl.latencyFromSend.max} ms | server CPU ${rl.serverCpuSec} s, clients ${rl.clientCpuSec} s | p99 ratio ${ratio(l.latencyFromSend.p99, rl.latencyFromSend.p99)}`);
    p(`  target p99 ≤ 10 ms: ${l.latencyFromSend.p99 <= 10 ? 'MET' : 'MISSED'}`);
    let best = 0;
    t.fanout.forEach((f, i) => {
      const rf = ref && ref.fanout[i];
      best = Math.max(best, f.missing === 0 && f.topicErrors === 0 ? f.deliveriesPerSec : 0);
      p(`fanout ${f.subs}x${f.rate}/s (offered ${f.offeredPerSec}/s): thingline ${f.deliveriesPerSec}/s (writes ${f.achievedWriteRate}/s, missing ${f.missing}, errors ${f.topicErrors}, disconnects ${f.disconnects}, p99 ${f.latencyFromSend.p99} ms, server CPU ${f.serverCpuSec} s, clients ${f.clientCpuSec} s / ${f.wallSec} s)` +
        (rf ? ` | reference ${rf.deliveriesPerSec}/s (missing ${rf.missing}, p99 ${rf.latencyFromSend.p99} ms, server CPU ${rf.serverCpuSec} s, clients ${rf.clientCpuSec} s) ratio ${ratio(f.deliveriesPerSec, rf.deliveriesPerSec)}` : ''));
    });
    p(`  best complete fan-out ${best}/s; target ≥ 100000/s: ${best >= 100000 ? 'MET' : 'MISSED'}`);
  }
  if (res.serverCounters) p(`server counters: ${JSON.stringify(res.serverCounters)}`);
  if (phases.includes('memory')) {
    const m = res.memory.thingline, rm = res.memory.reference;
    for (let i = 0; i < m.stages.length; i++) {
      const s = m.stages[i], r = rm && rm.stages[i];
      p(`memory ${m.n} idle sockets, after ${s.stage}: thingline +${s.deltaKb} kB = ${s.perConnKb} kB/conn (RSS ${m.baselineKb}→${s.rssKb} kB)` + (r ? ` | reference +${r.deltaKb} kB = ${r.perConnKb} kB/conn, ratio ${ratio(s.perConnKb, r.perConnKb)}` : '') + ` | clients ${s.clientPerConnKb} kB/conn`);
    }
    const last = m.stages[m.stages.length - 1];
    p(`  target ≤ 20 KB/conn (authenticated+subscribed): ${last.perConnKb <= 20 ? 'MET' : 'MISSED'}; after close RSS ${m.afterCloseKb} kB`);
  }
}

// ---------------------------------------------------------------------------------------------
const role = process.argv[2];
if (role === 'worker') worker();
else if (role === 'refserver') {
  const a = { cert: null, key: null, maxSeconds: 900 };
  const v = process.argv.slice(3);
  for (let i = 0; i < v.length; i += 2) a[v[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v[i + 1];
  a.maxSeconds = Number(a.maxSeconds);
  refserver(a);
} else if (role === 'main') {
  main(parseArgs(process.argv.slice(3))).catch((e) => { log(String(e && e.stack || e)); process.exit(1); });
} else {
  process.stderr.write('usage: realtime-bench.js main --url URL --ca CERT --key KEY --pid PID [flags]\n');
  process.exit(2);
}
