// A real MQTT client (npm `mqtt` 4.x, what the official thethings.iO mqtt-node examples use)
// driven by the Rust MQTT tests (tests/mqtt_npm.rs). Environment:
//   MQTT_URL        mqtt://127.0.0.1:PORT, mqtts://…, or wss://127.0.0.1:PORT/mqtt
//   MQTT_CA         PEM file of the server certificate (for mqtts:// and wss://)
//   MQTT_VERSION    4 (MQTT 3.1.1, the default) or 5
//   MQTT_CLIENT_ID  optional; mqtt.js draws `mqttjs_` + 8 hex digits when it is absent
//   MQTT_KEEPALIVE  seconds, default 60 (mqtt.js's default)
//   MQTT_CLEAN      "false" for a persistent session, default clean
//   MQTT_WILL       optional JSON {"topic":…,"payload":…,"qos":0|1}
// Commands arrive as JSON lines on stdin:
//   {"op":"subscribe","id":N,"topic":…,"qos":0|1}   answered by {"type":"suback","id":N,"granted":[{topic,qos}]}
//   {"op":"unsubscribe","id":N,"topic":…}           answered by {"type":"unsuback","id":N}
//   {"op":"publish","id":N,"topic":…,"payload":…,"qos":0|1}
//                                                    answered by {"type":"published","id":N,"error":…}
//                                                    (QoS 1: once the PUBACK has arrived)
//   {"op":"end"}                                     DISCONNECT, close and exit
// Everything observed is printed as JSON lines on stdout:
//   {"type":"connect","clientId":…,"sessionPresent":…,"returnCode":…,"reasonCode":…}
//   {"type":"message","topic":…,"payload":…,"qos":…,"retain":…,"dup":…}
//   {"type":"error","message":…,"code":…} | {"type":"disconnect","reasonCode":…} | {"type":"close"}
'use strict';
const fs = require('fs');
const readline = require('readline');
const mqtt = require('mqtt4');

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const opts = {
  protocolVersion: Number(process.env.MQTT_VERSION || '4'),
  keepalive: Number(process.env.MQTT_KEEPALIVE || '60'),
  clean: process.env.MQTT_CLEAN !== 'false',
  // The tests see every disconnection: no silent reconnect.
  reconnectPeriod: 0,
  connectTimeout: 10 * 1000,
};
if (process.env.MQTT_CLIENT_ID) opts.clientId = process.env.MQTT_CLIENT_ID;
if (process.env.MQTT_CA) opts.ca = fs.readFileSync(process.env.MQTT_CA);
if (process.env.MQTT_WILL) {
  const will = JSON.parse(process.env.MQTT_WILL);
  opts.will = { topic: will.topic, payload: will.payload, qos: will.qos || 0, retain: false };
}

const client = mqtt.connect(process.env.MQTT_URL, opts);

client.on('connect', (connack) => out({
  type: 'connect',
  clientId: client.options.clientId,
  sessionPresent: !!connack.sessionPresent,
  returnCode: connack.returnCode,
  reasonCode: connack.reasonCode,
}));
client.on('message', (topic, payload, packet) => out({
  type: 'message',
  topic,
  payload: payload.toString('utf8'),
  qos: packet.qos,
  retain: !!packet.retain,
  dup: !!packet.dup,
}));
client.on('error', (e) => out({ type: 'error', message: String(e && e.message || e), code: e && e.code }));
client.on('disconnect', (packet) => out({ type: 'disconnect', reasonCode: packet && packet.reasonCode }));
client.on('close', () => out({ type: 'close' }));

function finish() {
  client.end(false, {}, () => setTimeout(() => process.exit(0), 20));
  // A broker that never lets the DISCONNECT out must not keep the process alive.
  setTimeout(() => process.exit(0), 2000).unref();
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { return; }
  switch (cmd.op) {
    case 'subscribe':
      client.subscribe(cmd.topic, { qos: cmd.qos || 0 }, (err, granted) => out({
        type: 'suback',
        id: cmd.id,
        error: err ? String(err.message || err) : null,
        granted: (granted || []).map((g) => ({ topic: g.topic, qos: g.qos })),
      }));
      break;
    case 'unsubscribe':
      client.unsubscribe(cmd.topic, (err) => out({ type: 'unsuback', id: cmd.id, error: err ? String(err.message || err) : null }));
      break;
    case 'publish':
      client.publish(cmd.topic, cmd.payload, { qos: cmd.qos || 0 }, (err) => out({
        type: 'published',
        id: cmd.id,
        error: err ? String(err.message || err) : null,
      }));
      break;
    case 'end':
      finish();
      break;
  }
});
rl.on('close', finish);
