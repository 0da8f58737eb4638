#!/usr/bin/env node
// Writes docs/postman/thingline.postman_collection.json and thingline.postman_environment.json
// (Postman v2.1). This file is their source: change a request or a test here, run
// `node tools/api-check/build-collection.js`, commit both. `scripts/api-check` runs it with
// `--check` and fails when the committed JSON differs from what it writes.
//
// The collection walks the App Development guide top to bottom (register, login, link, read,
// write, subscribe, grant, settings, date, classes, logout), after the panel setup it needs and
// the Thing API (activate, write, read, keys, all_resources, description), then requests with bad
// input that must answer the error envelope. Every request has pm.test scripts on its status and
// body; values written are read back.
'use strict';

const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const OUT_DIR = path.join(ROOT, 'docs', 'postman');
const COLLECTION = path.join(OUT_DIR, 'thingline.postman_collection.json');
const ENVIRONMENT = path.join(OUT_DIR, 'thingline.postman_environment.json');

// ---------------------------------------------------------------------------------------------
// Script helpers, prepended to the test scripts that use them (Postman shares no functions
// between scripts).

const HELPERS = {
  envelope: `// The thethings.iO error envelope: {"status":"error","code":<HTTP status>,"message":"…"}.
function envelope(code, messagePart) {
  pm.test(code + ' with the error envelope', function () {
    pm.response.to.have.status(code);
    const b = pm.response.json();
    pm.expect(b).to.have.all.keys('status', 'code', 'message');
    pm.expect(b.status).to.eql('error');
    pm.expect(b.code).to.eql(code);
    pm.expect(b.message).to.be.a('string').and.not.empty;
    if (messagePart) pm.expect(b.message).to.include(messagePart);
  });
}`,
  jsonDocuments: `// A subscription answers one JSON document per chunk with no separator: split them.
function jsonDocuments(text) {
  const docs = [];
  let depth = 0, start = -1, inString = false, escaped = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\\\') escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === '{' || ch === '[') { if (depth++ === 0) start = i; }
    else if (ch === '}' || ch === ']') { if (--depth === 0) docs.push(JSON.parse(text.slice(start, i + 1))); }
  }
  pm.expect(depth, 'the stream ended between two documents').to.eql(0);
  return docs;
}`,
  // The shape every subscription stream here has: `subscribed` first (resource subscriptions;
  // collection subscriptions send none), data arrays and `{}` keepAlives, and the 401 envelope
  // when the session's expirationDate is reached.
  streamShape: `function checkStream(docs, greeting) {
  pm.expect(docs.length, 'documents in the stream').to.be.at.least(2);
  if (greeting) pm.expect(docs[0]).to.eql({ status: 'success', message: 'subscribed' });
  const last = docs[docs.length - 1];
  pm.expect(last).to.eql({ status: 'error', code: 401, message: 'Invalid session token' });
  docs.slice(greeting ? 1 : 0, -1).forEach(function (d) {
    pm.expect(Array.isArray(d) || (typeof d === 'object' && Object.keys(d).length === 0),
      'every document between is a data array or the {} keepAlive: ' + JSON.stringify(d)).to.be.true;
  });
}`,
};

// ---------------------------------------------------------------------------------------------
// Request builders.

function url(p, query) {
  const [pathPart] = p.split('?');
  const q = query || [];
  const raw = '{{baseUrl}}' + pathPart + (q.length ? '?' + q.map(([k, v]) => k + '=' + v).join('&') : '');
  const u = {
    raw,
    host: ['{{baseUrl}}'],
    path: pathPart.replace(/^\//, '').split('/'),
  };
  if (q.length) u.query = q.map(([key, value]) => ({ key, value }));
  return u;
}

function script(type, code, helpers) {
  const parts = (helpers || []).map((h) => HELPERS[h]);
  parts.push(code.replace(/^\n/, '').replace(/\n\s*$/, ''));
  const lines = parts.join('\n').split('\n');
  return { listen: type, script: { type: 'text/javascript', exec: lines } };
}

/**
 * One request. opts: auth ('session' | 'panel' | 'friend' | 'short' | a literal header value),
 * body (an object: sent as JSON; a string: sent raw as JSON), query ([[k, v]]),
 * description, pre (pre-request script), test (test script), helpers (names from HELPERS).
 */
function req(name, method, p, opts) {
  const o = opts || {};
  const header = [];
  const authVar = { session: '{{sessionToken}}', panel: '{{panelToken}}', friend: '{{friendToken}}', short: '{{shortSessionToken}}' };
  if (o.auth) header.push({ key: 'Authorization', value: authVar[o.auth] || o.auth });
  if (o.body !== undefined) header.push({ key: 'Content-Type', value: 'application/json' });
  const request = { method, header, url: url(p, o.query) };
  if (o.body !== undefined) {
    request.body = {
      mode: 'raw',
      raw: typeof o.body === 'string' ? o.body : JSON.stringify(o.body, null, 2),
      options: { raw: { language: 'json' } },
    };
  }
  if (o.description) request.description = o.description;
  const event = [];
  if (o.pre) event.push(script('prerequest', o.pre));
  if (o.test) event.push(script('test', o.test, o.helpers));
  return { name, event, request };
}

function folder(name, description, item) {
  return { name, description, item };
}

// ---------------------------------------------------------------------------------------------
// The collection.

const items = [];

items.push(folder('0. Server', 'The server is up; the guide\'s first "Curl Test".', [
  req('Health', 'GET', '/v2/health', {
    description: 'No authentication. 200 {"status":"ok"} once the store and every listener are ready.',
    test: `
pm.test('200 {"status":"ok"}', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ status: 'ok' });
});`,
  }),
  req('Curl test: GET /v2/ without a session token', 'GET', '/v2/', {
    description: 'The guide\'s "Curl Test": without a session token the answer is the 401 envelope.',
    helpers: ['envelope'],
    test: `envelope(401, 'Invalid session token');`,
  }),
]));

items.push(folder('1. Panel setup', 'What the guide does "from the Panel": sign in with the account of ' +
  'THINGLINE_PANEL_EMAIL/THINGLINE_PANEL_PASSWORD (environment: panelEmail, panelPassword), create a product ' +
  'whose resources the app may ask for, activation codes for its things, and the app (appId).', [
  req('Panel login', 'POST', '/v2/panel/login', {
    body: { email: '{{panelEmail}}', password: '{{panelPassword}}' },
    test: `
pm.test('200 with a panel token', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('success');
  pm.expect(b.token).to.be.a('string').and.have.length.above(20);
  pm.environment.set('panelToken', b.token);
});`,
  }),
  req('Create a product with resources', 'POST', '/v2/panel/products', {
    auth: 'panel',
    description: 'temperature, description, $geo and $settings are public (apps may ask for them); humidity stays private.',
    body: {
      name: 'Postman sensor',
      resources: [
        { key: 'temperature', public: true },
        { key: 'description', public: true },
        { key: '$geo', public: true },
        { key: '$settings', public: true },
        { key: 'humidity' },
      ],
    },
    test: `
pm.test('201 {"status":"created","productId"}', function () {
  pm.response.to.have.status(201);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('created');
  pm.expect(b.productId).to.be.a('string').and.not.empty;
  pm.environment.set('productId', b.productId);
});`,
  }),
  req('Read the product back', 'GET', '/v2/panel/products/{{productId}}', {
    auth: 'panel',
    test: `
pm.test('200 with the product as created', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('success');
  pm.expect(b.product.productId).to.eql(pm.environment.get('productId'));
  pm.expect(b.product.name).to.eql('Postman sensor');
  const keys = b.product.resources.map(function (r) { return r.key; });
  pm.expect(keys).to.include.members(['temperature', 'description', '$geo', '$settings', 'humidity']);
  const humidity = b.product.resources.find(function (r) { return r.key === 'humidity'; });
  pm.expect(humidity.public).to.eql(false);
});`,
  }),
  req('Generate activation codes', 'POST', '/v2/panel/products/{{productId}}/activation-codes', {
    auth: 'panel',
    body: { count: 2 },
    test: `
pm.test('201 with two codes', function () {
  pm.response.to.have.status(201);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('created');
  pm.expect(b.codes).to.be.an('array').with.lengthOf(2);
  b.codes.forEach(function (c) { pm.expect(c).to.be.a('string').and.not.empty; });
  pm.environment.set('activationCode', b.codes[0]);
  pm.environment.set('activationCode2', b.codes[1]);
});`,
  }),
  req('List the activation codes', 'GET', '/v2/panel/products/{{productId}}/activation-codes', {
    auth: 'panel',
    test: `
pm.test('200: both codes, unused', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('success');
  const code = b.codes.find(function (c) { return c.code === pm.environment.get('activationCode'); });
  pm.expect(code, 'the first code is listed').to.be.an('object');
  pm.expect(code.used).to.eql(false);
  pm.expect(b.codes).to.have.lengthOf(2);
});`,
  }),
  req('Create an app', 'POST', '/v2/panel/apps', {
    auth: 'panel',
    description: 'The app asks for public resources of the product; its shared collection Tracks may be filtered on genre.',
    body: { name: 'Postman app', resources: ['temperature', 'description', '$geo', '$settings'], indexes: { Tracks: ['genre'] } },
    test: `
pm.test('201 {"status":"created","appId"}', function () {
  pm.response.to.have.status(201);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('created');
  pm.expect(b.appId).to.be.a('string').and.not.empty;
  pm.environment.set('appId', b.appId);
});`,
  }),
  req('Read the app back', 'GET', '/v2/panel/apps/{{appId}}', {
    auth: 'panel',
    test: `
pm.test('200 with the app as created', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('success');
  pm.expect(b.app.appId).to.eql(pm.environment.get('appId'));
  pm.expect(b.app.resources).to.eql(['temperature', 'description', '$geo', '$settings']);
  pm.expect(b.app.indexes).to.eql({ Tracks: ['genre'] });
});`,
  }),
]));

items.push(folder('2. Thing API', 'The device side: activate a thing with an activation code, write, read, ' +
  'keys, all_resources, description, $settings and the server date. The thingToken in the path is the ' +
  'only credential.', [
  req('Activate a thing', 'POST', '/v2/things', {
    body: { activationCode: '{{activationCode}}', productId: '{{productId}}' },
    test: `
pm.test('201 with the thingToken and thingId', function () {
  pm.response.to.have.status(201);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('created');
  pm.expect(b.message).to.eql('thing activated');
  pm.expect(b.thingToken).to.match(/^[A-Za-z0-9_-]{43}$/);
  pm.expect(b.thingId).to.be.a('string').and.not.empty;
  pm.environment.set('thingToken', b.thingToken);
  pm.environment.set('thingId', b.thingId);
});`,
  }),
  req('Write values', 'POST', '/v2/things/{{thingToken}}', {
    description: 'A value with a datetime and a geo attribute (also recorded on $geo), and a private key.',
    body: {
      values: [
        { key: 'temperature', value: 23.5, datetime: '20150202T220035', geo: { lat: 41.39, long: 2.15 } },
        { key: 'temperature', value: 21.5 },
        { key: 'humidity', value: 40 },
      ],
    },
    test: `
pm.test('201 {"status":"created"}', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'created' });
});`,
  }),
  req('Read temperature', 'GET', '/v2/things/{{thingToken}}/resources/temperature', {
    query: [['limit', '10']],
    test: `
pm.test('200: both values, newest first, read back as written', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b).to.be.an('array').with.lengthOf(2);
  pm.expect(b[0].key).to.eql('temperature');
  pm.expect(b[0].value).to.eql(21.5);
  pm.expect(b[1].value).to.eql(23.5);
  pm.expect(b[1].datetime).to.eql('2015-02-02T22:00:35.000Z');
  pm.expect(Date.parse(b[0].datetime)).to.be.above(Date.parse(b[1].datetime));
});`,
  }),
  req('Read temperature in a date range', 'GET', '/v2/things/{{thingToken}}/resources/temperature', {
    description: 'startDate inclusive, endDate exclusive.',
    query: [['limit', '10'], ['startDate', '20150101000000'], ['endDate', '20160101000000']],
    test: `
pm.test('200: only the 2015 value', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b).to.have.lengthOf(1);
  pm.expect(b[0]).to.eql({ key: 'temperature', value: 23.5, datetime: '2015-02-02T22:00:35.000Z' });
});`,
  }),
  req('Read $geo (recorded from the geo attribute)', 'GET', '/v2/things/{{thingToken}}/resources/$geo', {
    test: `
pm.test('200: a GeoJSON Point [long, lat]', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b[0].key).to.eql('$geo');
  pm.expect(b[0].value).to.eql({ type: 'Point', coordinates: [2.15, 41.39] });
});`,
  }),
  req('Keys with values', 'GET', '/v2/things/{{thingToken}}/resources', {
    test: `
pm.test('200: the keys written, sorted', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ resources: ['$geo', 'humidity', 'temperature'] });
});`,
  }),
  req('Latest of all keys (all_resources)', 'GET', '/v2/things/{{thingToken}}/all_resources', {
    query: [['limit', '1']],
    test: `
pm.test('200: every key with its latest value', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.map(function (r) { return r.key; })).to.eql(['$geo', 'humidity', 'temperature']);
  b.forEach(function (r) {
    pm.expect(r.values).to.be.an('array').with.lengthOf(1);
    pm.expect(r.values[0].key).to.eql(r.key);
  });
  pm.expect(b[1].values[0].value).to.eql(40);
  pm.expect(b[2].values[0].value).to.eql(21.5);
});`,
  }),
  req('Description', 'PUT', '/v2/things/{{thingToken}}/resources/description', {
    body: { model: 'TL-1', firmware: '1.0.0' },
    test: `
pm.test('200 {"status":"success"}', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ status: 'success' });
});`,
  }),
  req('Read the description back', 'GET', '/v2/things/{{thingToken}}/resources/description', {
    test: `
pm.test('200: the description as sent', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b[0].key).to.eql('description');
  pm.expect(b[0].value).to.eql({ model: 'TL-1', firmware: '1.0.0' });
});`,
  }),
  req('Write $settings.name', 'POST', '/v2/things/{{thingToken}}', {
    body: { values: [{ key: '$settings.name', value: 'Kitchen sensor' }] },
    test: `
pm.test('201 {"status":"created"}', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'created' });
});`,
  }),
  req('Read $settings', 'GET', '/v2/things/{{thingToken}}/resources/$settings', {
    test: `
pm.test('200: the settings document', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql([{ key: '$settings', value: { name: 'Kitchen sensor' } }]);
});`,
  }),
  req('Server date (thingToken)', 'GET', '/v2/utils/date', {
    query: [['thingToken', '{{thingToken}}'], ['format', 'unix_timestamp']],
    test: `
pm.test('200: Unix time in seconds', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.date).to.be.a('number');
  pm.expect(Math.abs(b.date - Date.now() / 1000)).to.be.below(300);
  pm.expect(b.values).to.eql([{ value: b.date }]);
});`,
  }),
]));

const guide = [];
guide.push(
  req('Register', 'POST', '/v2/register', {
    description: 'Registers the app user and logs it in (a session token).',
    body: { email: '{{userEmail}}', password: '{{userPassword}}', app: '{{appId}}' },
    test: `
pm.test('201 "user created" with a session token', function () {
  pm.response.to.have.status(201);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('success');
  pm.expect(b.message).to.eql('user created');
  pm.expect(b.token).to.be.a('string').and.not.empty;
  pm.expect(b.expirationDate).to.eql(31536000);
  pm.expect(b.roles).to.eql({});
  pm.environment.set('sessionToken', b.token);
});`,
  }),
  req('Login', 'POST', '/v2/login', {
    body: { email: '{{userEmail}}', password: '{{userPassword}}', app: '{{appId}}' },
    test: `
pm.test('200 "logged in" with a new session token', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('success');
  pm.expect(b.message).to.eql('logged in');
  pm.expect(b.token).to.be.a('string').and.not.eql(pm.environment.get('sessionToken'));
  pm.expect(b.expirationDate).to.eql(31536000);
  pm.expect(b.roles).to.be.an('object');
  pm.environment.set('sessionToken', b.token);
});`,
  }),
  req('Curl test with the session token', 'GET', '/v2/', {
    auth: 'session',
    test: `
pm.test('200: the session names its app and user', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.status).to.eql('success');
  pm.expect(b.appId).to.eql(pm.environment.get('appId'));
  pm.expect(b.email).to.eql(pm.environment.get('userEmail'));
});`,
  }),
  req('Link the thing (thingToken)', 'POST', '/v2/me/things', {
    auth: 'session',
    body: { thingToken: '{{thingToken}}' },
    test: `
pm.test('201 "created" with the thingId', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'created', thingId: pm.environment.get('thingId') });
});`,
  }),
  req('Things of the user', 'GET', '/v2/me/things', {
    auth: 'session',
    test: `
pm.test('200: the linked thing with its visible keys', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b).to.have.lengthOf(1);
  pm.expect(b[0]._id).to.eql(pm.environment.get('thingId'));
  pm.expect(b[0].thingId).to.eql(pm.environment.get('thingId'));
  pm.expect(b[0].resources).to.have.members(['temperature', 'description', '$geo', '$settings']);
});`,
  }),
  req('Session details and roles', 'GET', '/v2/me', {
    auth: 'session',
    test: `
pm.test('200: roles in the guide\\'s shape, the private key absent', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.email).to.eql(pm.environment.get('userEmail'));
  const thingId = pm.environment.get('thingId');
  pm.expect(b.roles.RSRC_temperature[thingId]).to.eql({ get: true, post: true, grant: true, put: true, delete: true });
  pm.expect(b.roles).to.not.have.property('RSRC_humidity');
});`,
  }),
  req('Get user resources', 'GET', '/v2/me/resources', {
    auth: 'session',
    test: `
pm.test('200: the app\\'s keys on the linked thing', function () {
  pm.response.to.have.status(200);
  const thingId = pm.environment.get('thingId');
  const b = pm.response.json();
  pm.expect(b.map(function (r) { return r.name; })).to.eql(['temperature', 'description', '$geo', '$settings']);
  b.forEach(function (r) { pm.expect(r.things).to.eql([thingId]); });
});`,
  }),
  req('Get resource values (every thing)', 'GET', '/v2/me/resources/temperature', {
    auth: 'session',
    test: `
pm.test('200: {thingId: [values]} with what the thing wrote', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  const values = b[pm.environment.get('thingId')];
  pm.expect(values).to.be.an('array').with.lengthOf(1);
  pm.expect(values[0].value).to.eql(21.5);
  pm.expect(values[0].datetime).to.be.a('string');
});`,
  }),
  req('Post resource values', 'POST', '/v2/me/resources/temperature/{{thingId}}', {
    auth: 'session',
    body: { values: [{ value: 15 }] },
    test: `
pm.test('201 {"status":"Success","message":"Created"}', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'Success', message: 'Created' });
});`,
  }),
  req('Get resource values of one thing', 'GET', '/v2/me/resources/temperature/{{thingId}}', {
    auth: 'session',
    query: [['limit', '1000']],
    test: `
pm.test('200: the value written by the app, newest first', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.map(function (i) { return i.value; })).to.eql([15, 21.5, 23.5]);
  b.forEach(function (i) { pm.expect(i.key).to.eql('temperature'); });
  pm.environment.set('oldestDatetime', b[1].datetime);
});`,
  }),
  req('Page with endDate = the datetime of a value', 'GET', '/v2/me/resources/temperature/{{thingId}}', {
    auth: 'session',
    description: 'The guide\'s paging: endDate (exclusive) = the oldest datetime received so far.',
    query: [['limit', '1000'], ['endDate', '{{oldestDatetime}}']],
    test: `
pm.test('200: only the values before it', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().map(function (i) { return i.value; })).to.eql([23.5]);
});`,
  }),
  req('Login with a 3 s session (for the subscription)', 'POST', '/v2/login', {
    description: 'A subscription stays open; the one that follows uses a session that expires 3 s ' +
      'after this login, so the server ends it (401 envelope) by itself and the runner moves on.',
    body: { email: '{{userEmail}}', password: '{{userPassword}}', app: '{{appId}}', expirationDate: 3 },
    test: `
pm.test('200 with a session that lives 3 s', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.expirationDate).to.eql(3);
  pm.environment.set('shortSessionToken', b.token);
});`,
  }),
  req('Subscribe to resource values (ends at the session expiry)', 'GET', '/v2/me/resources/temperature/{{thingId}}', {
    auth: 'short',
    description: 'A stream of JSON documents: {"status":"success","message":"subscribed"}, then each write ' +
      'as an array, {} after each idle keepAlive, and here the 401 envelope when the 3 s session expires.',
    query: [['subscribe', 'true'], ['keepAlive', '1000']],
    helpers: ['jsonDocuments', 'streamShape'],
    test: `
pm.test('200: subscribed, keepAlives, then the end at the session expiry', function () {
  pm.response.to.have.status(200);
  const docs = jsonDocuments(pm.response.text());
  checkStream(docs, true);
  pm.expect(docs.slice(1, -1).filter(function (d) { return !Array.isArray(d); }).length,
    'at least one {} keepAlive').to.be.at.least(1);
});`,
  }),
  req('Subscribe and receive a write (every thing\'s temperature)', 'POST', '/v2/login', {
    description: 'Logs in a 5 s session, then (in the test script) subscribes with it to ' +
      'GET /v2/me/resources/temperature?subscribe=true and, 1 s later, writes 42.5 with the main ' +
      'session: the stream must deliver [{"key","value":42.5,"id":thingId,"datetime"}] before it ends.',
    body: { email: '{{userEmail}}', password: '{{userPassword}}', app: '{{appId}}', expirationDate: 5 },
    helpers: ['jsonDocuments', 'streamShape'],
    test: `
pm.test('200 with a 5 s session', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().expirationDate).to.eql(5);
});
const short = pm.response.json().token;
const thingId = pm.environment.get('thingId');
pm.sendRequest({
  url: pm.variables.replaceIn('{{baseUrl}}/v2/me/resources/temperature?subscribe=true&keepAlive=1000'),
  method: 'GET',
  header: { Authorization: short },
}, function (err, res) {
  pm.test('the stream delivered the write, then ended', function () {
    pm.expect(err).to.eql(null);
    pm.expect(res.code).to.eql(200);
    const docs = jsonDocuments(res.text());
    checkStream(docs, true);
    const data = docs.filter(Array.isArray);
    pm.expect(data, 'one data document').to.have.lengthOf(1);
    pm.expect(data[0]).to.have.lengthOf(1);
    pm.expect(data[0][0]).to.include({ key: 'temperature', value: 42.5, id: thingId });
    pm.expect(data[0][0].datetime).to.be.a('string');
  });
});
setTimeout(function () {
  pm.sendRequest({
    url: pm.variables.replaceIn('{{baseUrl}}/v2/me/resources/temperature/{{thingId}}'),
    method: 'POST',
    header: { Authorization: pm.environment.get('sessionToken'), 'Content-Type': 'application/json' },
    body: { mode: 'raw', raw: JSON.stringify({ values: [{ value: 42.5 }] }) },
  }, function (err, res) {
    pm.test('the write during the subscription answered 201', function () {
      pm.expect(err).to.eql(null);
      pm.expect(res.code).to.eql(201);
    });
  });
}, 1000);`,
  }),
  req('Post $geo', 'POST', '/v2/me/resources/$geo/{{thingId}}', {
    auth: 'session',
    body: { values: [{ value: { type: 'Point', coordinates: [2.154007, 41.390205] } }] },
    test: `
pm.test('201 {"status":"created"}', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'created' });
});`,
  }),
  req('Get $geo', 'GET', '/v2/me/resources/$geo/{{thingId}}', {
    auth: 'session',
    test: `
pm.test('200: the point written', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b[0].key).to.eql('$geo');
  pm.expect(b[0].value).to.eql({ type: 'Point', coordinates: [2.154007, 41.390205] });
});`,
  }),
  req('Post $settings', 'POST', '/v2/me/resources/$settings/{{thingId}}', {
    auth: 'session',
    body: { values: [{ value: { name: 'My Thing', foo: 'bar' } }] },
    test: `
pm.test('201 {"status":"created"}', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'created' });
});`,
  }),
  req('Get $settings', 'GET', '/v2/me/resources/$settings/{{thingId}}', {
    auth: 'session',
    test: `
pm.test('200: the whole settings document', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql([{ key: '$settings', value: { name: 'My Thing', foo: 'bar' } }]);
});`,
  }),
  req('Get $settings.name', 'GET', '/v2/me/resources/$settings.name/{{thingId}}', {
    auth: 'session',
    test: `
pm.test('200: one value by its dot path', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql([{ key: '$settings.name', value: 'My Thing' }]);
});`,
  }),
  req('Register a friend', 'POST', '/v2/register', {
    description: 'The user to grant to: it must exist in the same app.',
    body: { email: '{{friendEmail}}', password: '{{userPassword}}', app: '{{appId}}' },
    test: `
pm.test('201 "user created"', function () {
  pm.response.to.have.status(201);
  const b = pm.response.json();
  pm.expect(b.message).to.eql('user created');
  pm.environment.set('friendToken', b.token);
});`,
  }),
  req('Friend sees nothing yet', 'GET', '/v2/me/resources', {
    auth: 'friend',
    test: `
pm.test('200 []', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql([]);
});`,
  }),
  req('Grant', 'PUT', '/v2/me/grant', {
    auth: 'session',
    description: 'The friend may read (get) temperature of the thing, nothing else.',
    body: '{\n  "email": "{{friendEmail}}",\n  "permissions": {"temperature": {"{{thingId}}": {"get": true}}}\n}',
    test: `
pm.test('200 "granted"', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'granted' });
});`,
  }),
  req('Friend reads the granted resource', 'GET', '/v2/me/resources/temperature/{{thingId}}', {
    auth: 'friend',
    test: `
pm.test('200: the latest value', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b).to.have.lengthOf(1);
  pm.expect(b[0].value).to.eql(42.5);
});`,
  }),
  req('Friend may not write it (get only)', 'POST', '/v2/me/resources/temperature/{{thingId}}', {
    auth: 'friend',
    body: { values: [{ value: 99 }] },
    helpers: ['envelope'],
    test: `envelope(403);`,
  }),
  req('Friend may not read what was not granted', 'GET', '/v2/me/resources/$geo/{{thingId}}', {
    auth: 'friend',
    helpers: ['envelope'],
    test: `envelope(404, 'not found');`,
  }),
  req('Update settings', 'PUT', '/v2/me/settings', {
    auth: 'session',
    body: { 'hair-color': 'pink', phones: ['13246578', '99833212'] },
    test: `
pm.test('200 "updated"', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'updated' });
});`,
  }),
  req('Get settings', 'GET', '/v2/me/settings', {
    auth: 'session',
    test: `
pm.test('200: the settings written', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ 'hair-color': 'pink', phones: ['13246578', '99833212'] });
});`,
  }),
  req('Get server date (UTC)', 'GET', '/v2/utils/date', {
    auth: 'session',
    query: [['format', 'UTC']],
    test: `
pm.test('200: an ISO-8601 UTC date, also in values', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.date).to.match(/^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$/);
  pm.expect(Math.abs(Date.parse(b.date) - Date.now())).to.be.below(300000);
  pm.expect(b.values).to.eql([{ value: b.date }]);
});`,
  }),
);

const classes = [
  req('Store an object', 'POST', '/v2/classes/me/Playlists', {
    auth: 'session',
    body: { _id: '25', name: 'Dubstep' },
    test: `
pm.test('201 "created" with the id', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'created', id: '25' });
});`,
  }),
  req('Store an object with the _id in the path', 'POST', '/v2/classes/me/Playlists/20', {
    auth: 'session',
    body: { name: 'Classic', duration: 90 },
    test: `
pm.test('201 "created" with the id', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'created', id: '20' });
});`,
  }),
  req('Update an object', 'PUT', '/v2/classes/me/Playlists/25', {
    auth: 'session',
    body: { name: 'Dubstep Mix', duration: 180 },
    test: `
pm.test('200 "updated"', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'updated' });
});`,
  }),
  req('Get object', 'GET', '/v2/classes/me/Playlists/25', {
    auth: 'session',
    test: `
pm.test('200: the object after the merge, _id first', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b).to.eql({ results: [{ _id: '25', name: 'Dubstep Mix', duration: 180 }] });
  pm.expect(Object.keys(b.results[0])).to.eql(['_id', 'name', 'duration']);
});`,
  }),
  req('Get collection of objects', 'GET', '/v2/classes/me/Playlists', {
    auth: 'session',
    test: `
pm.test('200: by primary key descending', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ results: [
    { _id: '25', name: 'Dubstep Mix', duration: 180 },
    { _id: '20', name: 'Classic', duration: 90 },
  ] });
});`,
  }),
  req('Object relations: store a song of playlist 25', 'POST', '/v2/classes/me/Playlists/25/Songs/100/', {
    auth: 'session',
    body: { title: 'Intro' },
    test: `
pm.test('201 "created"', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'created', id: '100' });
});`,
  }),
  req('Object relations: the songs of playlist 25', 'GET', '/v2/classes/me/Playlists/25/Songs', {
    auth: 'session',
    test: `
pm.test('200: the song, and only it', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ results: [{ _id: '100', title: 'Intro' }] });
});`,
  }),
  req('Shared collection: store a track', 'POST', '/v2/classes/app/Tracks', {
    auth: 'session',
    body: { _id: 't1', title: 'So What', genre: 'jazz' },
    test: `
pm.test('201 "created"', function () {
  pm.response.to.have.status(201);
  pm.expect(pm.response.json().id).to.eql('t1');
});`,
  }),
  req('Shared collection: the friend filters on a declared field', 'GET', '/v2/classes/app/Tracks', {
    auth: 'friend',
    query: [['where', '{"genre":"jazz"}']],
    test: `
pm.test('200: another user of the app sees the track', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ results: [{ _id: 't1', title: 'So What', genre: 'jazz' }] });
});`,
  }),
  req('Subscribe to collection and receive a create', 'POST', '/v2/login', {
    description: 'Logs in a 5 s session, then (in the test script) subscribes with it to ' +
      'GET /v2/classes/me/Playlists?subscribe=true&keepAlive=1000 (a collection stream sends no "subscribed" first) and, 1 s later, stores playlist 30 ' +
      'with the main session (same user): the stream must deliver it before the session ends it.',
    body: { email: '{{userEmail}}', password: '{{userPassword}}', app: '{{appId}}', expirationDate: 5 },
    helpers: ['jsonDocuments', 'streamShape'],
    test: `
pm.test('200 with a 5 s session', function () {
  pm.response.to.have.status(200);
});
pm.sendRequest({
  url: pm.variables.replaceIn('{{baseUrl}}/v2/classes/me/Playlists?subscribe=true&keepAlive=1000'),
  method: 'GET',
  header: { Authorization: pm.response.json().token },
}, function (err, res) {
  pm.test('the stream delivered the new object, then ended', function () {
    pm.expect(err).to.eql(null);
    pm.expect(res.code).to.eql(200);
    const docs = jsonDocuments(res.text());
    checkStream(docs, false);
    pm.expect(docs.filter(Array.isArray)).to.eql([[{ _id: '30', name: 'Ambient', duration: 60 }]]);
  });
});
setTimeout(function () {
  pm.sendRequest({
    url: pm.variables.replaceIn('{{baseUrl}}/v2/classes/me/Playlists'),
    method: 'POST',
    header: { Authorization: pm.environment.get('sessionToken'), 'Content-Type': 'application/json' },
    body: { mode: 'raw', raw: JSON.stringify({ _id: '30', name: 'Ambient', duration: 60 }) },
  }, function (err, res) {
    pm.test('the create during the subscription answered 201', function () {
      pm.expect(err).to.eql(null);
      pm.expect(res.code).to.eql(201);
    });
  });
}, 1000);`,
  }),
  req('Delete an object', 'DELETE', '/v2/classes/me/Playlists/25', {
    auth: 'session',
    test: `
pm.test('200 "deleted"', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'deleted' });
});`,
  }),
  req('The deleted object is gone', 'GET', '/v2/classes/me/Playlists/25', {
    auth: 'session',
    helpers: ['envelope'],
    test: `envelope(404);`,
  }),
  req('The collection without it', 'GET', '/v2/classes/me/Playlists', {
    auth: 'session',
    test: `
pm.test('200: the objects left', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().results.map(function (o) { return o._id; })).to.eql(['30', '20']);
});`,
  }),
];

const logout = [
  req('Logout', 'DELETE', '/v2/me/session', {
    auth: 'session',
    test: `
pm.test('200 "logged out"', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'logged out' });
});`,
  }),
  req('The token no longer works', 'GET', '/v2/me', {
    auth: 'session',
    helpers: ['envelope'],
    test: `envelope(401, 'Invalid session token');`,
  }),
];

items.push(folder('3. App Development guide', 'The guide top to bottom: register, login, link, read, ' +
  'write, subscribe, magic resources, grant, settings, server date, classes, logout.', [
  folder('Session token', 'Register and log in.', guide.slice(0, 3)),
  folder('Link thing', 'Link by thingToken (proof of possession).', guide.slice(3, 5)),
  folder('Resources', 'Read, write, page, subscribe; magic resources $geo and $settings.', guide.slice(5, 19)),
  folder('Grant', 'Share a resource with another user of the app.', guide.slice(19, 25)),
  folder('Settings and date', 'The user\'s settings and the server date.', guide.slice(25)),
  folder('Objects (classes)', 'Create, read, update, delete, relations, shared collections, subscribe.', classes),
  folder('Logout', 'End the session.', logout),
]));

items.push(folder('4. Bad input', 'Requests that must be refused with the thethings.iO error envelope ' +
  '{"status":"error","code":<HTTP status>,"message":"…"}.', [
  req('Register in an unknown app', 'POST', '/v2/register', {
    body: { email: 'nobody@example.com', password: '{{userPassword}}', app: 'no-such-app' },
    helpers: ['envelope'],
    test: `envelope(404, 'use the appID given in the panel');`,
  }),
  req('Register the same email twice', 'POST', '/v2/register', {
    body: { email: '{{friendEmail}}', password: '{{userPassword}}', app: '{{appId}}' },
    helpers: ['envelope'],
    test: `envelope(409);`,
  }),
  req('Register with a malformed email', 'POST', '/v2/register', {
    body: { email: 'two@@example.com', password: '{{userPassword}}', app: '{{appId}}' },
    helpers: ['envelope'],
    test: `envelope(400, 'email is not a valid address');`,
  }),
  req('Login with a wrong password', 'POST', '/v2/login', {
    body: { email: '{{friendEmail}}', password: 'not the password', app: '{{appId}}' },
    helpers: ['envelope'],
    test: `envelope(401, 'Invalid email or password');`,
  }),
  req('Activate with a used code', 'POST', '/v2/things', {
    body: { activationCode: '{{activationCode}}' },
    helpers: ['envelope'],
    test: `envelope(409);`,
  }),
  req('Activate without a code', 'POST', '/v2/things', {
    body: {},
    helpers: ['envelope'],
    test: `envelope(400);`,
  }),
  req('Write malformed JSON', 'POST', '/v2/things/{{thingToken}}', {
    body: '{"values":[{"key":"temperature","value":21.5,}]}',
    helpers: ['envelope'],
    test: `envelope(400, 'line 1 column');`,
  }),
  req('Write without a value', 'POST', '/v2/things/{{thingToken}}', {
    body: { values: [{ key: 'temperature' }] },
    helpers: ['envelope'],
    test: `envelope(400);`,
  }),
  req('Read with limit=0', 'GET', '/v2/things/{{thingToken}}/resources/temperature', {
    query: [['limit', '0']],
    helpers: ['envelope'],
    test: `envelope(400, 'limit');`,
  }),
  req('Read with a date that does not exist', 'GET', '/v2/things/{{thingToken}}/resources/temperature', {
    query: [['startDate', '20150231000000']],
    helpers: ['envelope'],
    test: `envelope(400);`,
  }),
  req('Read a key never written', 'GET', '/v2/things/{{thingToken}}/resources/pressure', {
    helpers: ['envelope'],
    test: `envelope(404, 'Resource pressure not found');`,
  }),
  req('Read with an unknown thingToken', 'GET', '/v2/things/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/resources/temperature', {
    helpers: ['envelope'],
    test: `envelope(404, 'Thing not found');`,
  }),
  req('A method the path does not serve', 'DELETE', '/v2/things/{{thingToken}}', {
    helpers: ['envelope'],
    test: `envelope(405);
pm.test('Allow lists the methods served', function () {
  pm.expect(pm.response.headers.get('Allow')).to.include('POST');
});`,
  }),
  req('An unknown path', 'GET', '/v2/no-such-path', {
    helpers: ['envelope'],
    test: `envelope(404);`,
  }),
  req('A private key, as an app user', 'GET', '/v2/me/resources/humidity/{{thingId}}', {
    auth: 'friend',
    description: 'humidity is private in the product: it reads as if it did not exist.',
    helpers: ['envelope'],
    test: `envelope(404, 'Resource humidity not found');`,
  }),
  req('Grant to yourself', 'PUT', '/v2/me/grant', {
    auth: 'friend',
    body: '{"email": "{{friendEmail}}", "permissions": {"temperature": {"{{thingId}}": {"get": true}}}}',
    helpers: ['envelope'],
    test: `envelope(400);`,
  }),
  req('Grant more than you hold', 'PUT', '/v2/me/grant', {
    auth: 'friend',
    body: '{"email": "{{userEmail}}", "permissions": {"temperature": {"{{thingId}}": {"get": true}}}}',
    helpers: ['envelope'],
    test: `envelope(403, 'You can only grant permissions you hold');`,
  }),
  req('Store an object whose _id exists', 'POST', '/v2/classes/app/Tracks', {
    auth: 'friend',
    body: { _id: 't1', title: 'again' },
    helpers: ['envelope'],
    test: `envelope(409);`,
  }),
  req('Filter a shared collection on an undeclared field', 'GET', '/v2/classes/app/Tracks', {
    auth: 'friend',
    query: [['where', '{"mood":"calm"}']],
    helpers: ['envelope'],
    test: `envelope(400, 'is not declared for the shared collection');`,
  }),
  req('Panel call without a token', 'GET', '/v2/panel/products', {
    helpers: ['envelope'],
    test: `envelope(401, 'Invalid panel token');`,
  }),
  req('Product with an unknown field', 'POST', '/v2/panel/products', {
    auth: 'panel',
    body: { name: 'typo', resource: [] },
    helpers: ['envelope'],
    test: `envelope(400, 'unknown field');`,
  }),
  req('App asking for a private key', 'POST', '/v2/panel/apps', {
    auth: 'panel',
    body: { name: 'nosy', resources: ['humidity'] },
    helpers: ['envelope'],
    test: `envelope(400, 'humidity');`,
  }),
]));

items.push(folder('5. Panel wrap-up', 'What the panel shows after the walk, then sign out.', [
  req('App users', 'GET', '/v2/panel/apps/{{appId}}/users', {
    auth: 'panel',
    test: `
pm.test('200: both users, the link and the grant', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  const thingId = pm.environment.get('thingId');
  const user = b.users.find(function (u) { return u.email === pm.environment.get('userEmail'); });
  const friend = b.users.find(function (u) { return u.email === pm.environment.get('friendEmail'); });
  pm.expect(user.linkedThings).to.eql([thingId]);
  pm.expect(friend.linkedThings).to.eql([]);
  pm.expect(friend.roles.RSRC_temperature[thingId]).to.eql({ get: true, post: false, grant: false, put: false, delete: false });
});`,
  }),
  req('Outbox: the grant confirmation', 'GET', '/v2/panel/apps/{{appId}}/outbox', {
    auth: 'panel',
    description: 'Without THINGLINE_SMTP_URL the mail to the granter is kept in the app\'s outbox.',
    test: `
pm.test('200: one mail to the granter naming the friend', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.mails).to.have.lengthOf(1);
  pm.expect(b.mails[0].to).to.eql(pm.environment.get('userEmail'));
  pm.expect(b.mails[0].body).to.include(pm.environment.get('friendEmail'));
});`,
  }),
  req('Things of the product', 'GET', '/v2/panel/products/{{productId}}/things', {
    auth: 'panel',
    test: `
pm.test('200: the activated thing with its name and latest values', function () {
  pm.response.to.have.status(200);
  const b = pm.response.json();
  pm.expect(b.total).to.eql(1);
  pm.expect(b.pendingActivationCodes).to.eql(1);
  pm.expect(b.things[0].thingId).to.eql(pm.environment.get('thingId'));
  pm.expect(b.things[0].name).to.eql('My Thing');
  pm.expect(b.things[0].latest.temperature.value).to.eql(42.5);
});`,
  }),
  req('Panel logout', 'POST', '/v2/panel/logout', {
    auth: 'panel',
    test: `
pm.test('200 "logged out"', function () {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json()).to.eql({ status: 'success', message: 'logged out' });
});`,
  }),
  req('The panel token no longer works', 'GET', '/v2/panel/products', {
    auth: 'panel',
    helpers: ['envelope'],
    test: `envelope(401);`,
  }),
]));

const collection = {
  info: {
    _postman_id: '6f2b8a51-3f0e-4b7c-9d1a-7c1e2a9b0f15',
    name: 'Thingline API v2',
    description: 'The thethings.iO App Development guide walked top to bottom against a Thingline server, ' +
      'after the panel setup it needs and the Thing API; then bad input answered with the error envelope. ' +
      'Import it with docs/postman/thingline.postman_environment.json, set baseUrl, panelEmail and ' +
      'panelPassword (the account of THINGLINE_PANEL_EMAIL/THINGLINE_PANEL_PASSWORD), and run the whole ' +
      'collection in order: each request\'s tests store the tokens and ids the next ones use. ' +
      'See docs/api-reference.md. Generated by tools/api-check/build-collection.js.',
    schema: 'https://schema.getpostman.com/json/collection/v2.1.0/collection.json',
  },
  item: items,
};

const environment = {
  id: 'b7e0c2d4-5a61-4e3f-8c2b-1d9f0a6e4c37',
  name: 'Thingline (local)',
  values: [
    ['baseUrl', 'https://localhost:8443', 'default', 'The HTTPS listener (THINGLINE_HTTPS_ADDR).'],
    ['panelEmail', 'you@example.com', 'default', 'THINGLINE_PANEL_EMAIL of the server.'],
    ['panelPassword', 'choose-a-password', 'secret', 'THINGLINE_PANEL_PASSWORD of the server.'],
    ['userEmail', 'user@example.com', 'default', 'The app user the guide registers.'],
    ['userPassword', 'a hard to guess password', 'secret', 'Its password (8 to 1024 characters).'],
    ['friendEmail', 'friend@email.com', 'default', 'The user the grant shares with.'],
    ['panelToken', '', 'secret', 'Set by "Panel login".'],
    ['productId', '', 'default', 'Set by "Create a product with resources".'],
    ['activationCode', '', 'default', 'Set by "Generate activation codes".'],
    ['activationCode2', '', 'default', 'Set by "Generate activation codes" (left unused).'],
    ['appId', '', 'default', 'Set by "Create an app".'],
    ['thingToken', '', 'secret', 'Set by "Activate a thing".'],
    ['thingId', '', 'default', 'Set by "Activate a thing".'],
    ['sessionToken', '', 'secret', 'Set by "Register", then "Login".'],
    ['shortSessionToken', '', 'secret', 'Set by "Login with a 3 s session".'],
    ['friendToken', '', 'secret', 'Set by "Register a friend".'],
    ['oldestDatetime', '', 'default', 'Set by "Get resource values of one thing" (paging).'],
  ].map(([key, value, type, description]) => ({ key, value, type, enabled: true, description })),
  _postman_variable_scope: 'environment',
};

const render = (o) => JSON.stringify(o, null, 2) + '\n';
const outputs = [[COLLECTION, render(collection)], [ENVIRONMENT, render(environment)]];

if (process.argv.includes('--check')) {
  let stale = false;
  for (const [file, text] of outputs) {
    const have = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (have !== text) {
      console.error(`${path.relative(ROOT, file)} is not what tools/api-check/build-collection.js writes: ` +
        'change the generator and run it (node tools/api-check/build-collection.js), then commit both');
      stale = true;
    }
  }
  process.exit(stale ? 1 : 0);
}
fs.mkdirSync(OUT_DIR, { recursive: true });
for (const [file, text] of outputs) {
  fs.writeFileSync(file, text);
  console.log(`wrote ${path.relative(ROOT, file)}`);
}
