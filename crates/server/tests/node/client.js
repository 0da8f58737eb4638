// A real socket.io client (socket.io-client 4.x or 2.x from npm) driven by the Rust realtime
// tests. Environment: SIO_VERSION=4|2, SIO_URL (https://127.0.0.1:PORT/v2), SIO_CA (PEM file of
// the server certificate), SIO_TRANSPORTS (comma list, default "polling,websocket").
// Commands arrive as JSON lines on stdin:
//   {"op":"emit","event":"subscribe","data":{...}}   emit an event
//   {"op":"emit_ack","event":"subscribe","data":{...}} emit with an ack callback
//   {"op":"pause"}                                     stop reading the TCP socket (slow consumer)
//   {"op":"close"}                                     disconnect and exit
// Everything observed is printed as JSON lines on stdout:
//   {"type":"connect","transport":...} | {"type":"event","event":...,"args":[...]}
//   {"type":"ack","event":...,"args":[...]} | {"type":"disconnect","reason":...}
//   {"type":"connect_error","message":...} | {"type":"upgrade","transport":...}
'use strict';
const fs = require('fs');
const readline = require('readline');

const version = process.env.SIO_VERSION || '4';
const url = process.env.SIO_URL;
const ca = process.env.SIO_CA ? fs.readFileSync(process.env.SIO_CA) : undefined;
const transports = (process.env.SIO_TRANSPORTS || 'polling,websocket').split(',');
const io = require(version === '2' ? 'sio2' : 'sio4');

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const opts = { transports, ca, reconnection: false, forceNew: true };
if (version === '2') {
  // engine.io-client 3.x passes these to the https/ws agents.
  opts.agent = false;
}
const socket = io(url, opts);

if (version === '2') {
  const orig = socket.onevent;
  socket.onevent = function (packet) {
    const args = packet.data || [];
    out({ type: 'event', event: args[0], args: args.slice(1) });
    orig.call(this, packet);
  };
} else {
  socket.onAny((event, ...args) => out({ type: 'event', event, args }));
}
socket.on('connect', () => out({ type: 'connect', transport: socket.io.engine.transport.name }));
socket.on('disconnect', (reason) => out({ type: 'disconnect', reason: String(reason) }));
socket.on('connect_error', (e) => out({ type: 'connect_error', message: String(e && e.message || e) }));
socket.io.engine && socket.io.engine.on && socket.io.engine.on('upgrade', (t) => out({ type: 'upgrade', transport: t.name }));

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { return; }
  switch (cmd.op) {
    case 'emit':
      socket.emit(cmd.event, cmd.data);
      break;
    case 'emit_ack':
      socket.emit(cmd.event, cmd.data, (...args) => out({ type: 'ack', event: cmd.event, args }));
      break;
    case 'pause': {
      const t = socket.io.engine.transport;
      const raw = t.ws && (t.ws._socket || (t.ws.ws && t.ws.ws._socket));
      if (raw) { raw.pause(); out({ type: 'paused' }); } else { out({ type: 'pause_failed', transport: t.name }); }
      break;
    }
    case 'close':
      socket.close();
      setTimeout(() => process.exit(0), 50);
      break;
  }
});
rl.on('close', () => { socket.close(); setTimeout(() => process.exit(0), 50); });
