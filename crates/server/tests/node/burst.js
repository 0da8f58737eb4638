// Many socket.io-client 4 connections at once, each emitting `authenticate` (with an ack) the
// moment its namespace connect arrives: an event sent right after connecting must be handled.
// Environment: SIO_URL, SIO_CA, SIO_TOKEN, SIO_COUNT, SIO_TRANSPORTS (default "websocket").
// Prints one JSON line {"ok":N,"failed":[reasons...]} and exits; gives up after 30 s.
'use strict';
const fs = require('fs');
const io = require('sio4');

const url = process.env.SIO_URL;
const ca = fs.readFileSync(process.env.SIO_CA);
const count = Number(process.env.SIO_COUNT || '100');
const transports = (process.env.SIO_TRANSPORTS || 'websocket').split(',');
const sockets = [];
const failed = [];
let ok = 0;

function finish() {
  process.stdout.write(JSON.stringify({ ok, failed }) + '\n');
  for (const s of sockets) s.close();
  process.exit(0);
}
function settled() {
  if (ok + failed.length === count) finish();
}
const deadline = setTimeout(() => {
  failed.push(`${count - ok - failed.length} sockets without an authenticate ack after 30 s`);
  finish();
}, 30000);
deadline.unref();

for (let i = 0; i < count; i++) {
  const s = io(url, { transports, ca, reconnection: false, forceNew: true });
  sockets.push(s);
  s.on('connect', () => {
    s.emit('authenticate', { sessionToken: process.env.SIO_TOKEN }, (answer) => {
      if (answer && answer.status === 'success') ok++;
      else failed.push(JSON.stringify(answer));
      settled();
    });
  });
  s.on('connect_error', (e) => {
    failed.push(`connect_error: ${e && e.message}`);
    settled();
  });
}
