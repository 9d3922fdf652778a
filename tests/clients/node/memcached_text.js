// memcached (the npm package "memcached": text protocol), driven by
// tests/test_clients.py.
//
// usage: node memcached_text.js HOST PORT checks|write|reread
'use strict';
const Memcached = require('memcached');
const { promisify } = require('util');
const { PAST, expect, run } = require('./common');

const [host, port, phase] = process.argv.slice(2);
const mc = new Memcached(`${host}:${port}`, { timeout: 2000, retries: 0, failures: 0, idle: 0 });
const op = {};
for (const name of ['set', 'get', 'getMulti', 'del', 'incr', 'decr', 'gets', 'cas', 'touch', 'flush']) {
  op[name] = promisify(mc[name].bind(mc));
}
const value = async (k) => { const v = await op.get(k); return v === undefined ? null : v; };

const checks = [
  ['set_get', async () => {
    expect(await op.set('nd:k', 'hello', 0), true);
    expect(await value('nd:k'), 'hello');
    expect(await value('nd:missing'), null);
  }],
  ['get_multi', async () => {
    await op.set('nd:a', '1', 0);
    await op.set('nd:b', '2', 0);
    expect(await op.getMulti(['nd:a', 'nd:b', 'nd:nope']), { 'nd:a': '1', 'nd:b': '2' });
  }],
  ['delete', async () => {
    expect(await op.del('nd:a'), true);
    expect(await value('nd:a'), null);
    expect(await op.del('nd:a'), false);
  }],
  ['incr_decr', async () => {
    await op.set('nd:n', '10', 0);
    expect(await op.incr('nd:n', 5), 15);
    expect(await op.decr('nd:n', 20), 0); // decr stops at 0
    expect(await op.incr('nd:nothere', 1), false);
  }],
  ['cas', async () => {
    await op.set('nd:c', 'v1', 0);
    const item = await op.gets('nd:c');
    expect(item['nd:c'], 'v1');
    expect(await op.cas('nd:c', 'v2', item.cas, 0), true);
    expect(await op.cas('nd:c', 'v3', item.cas, 0), false); // the token is stale now
    expect(await value('nd:c'), 'v2');
  }],
  ['touch', async () => {
    await op.set('nd:t', 'x', 0);
    expect(await op.touch('nd:t', 3600), true);
    expect(await value('nd:t'), 'x');
    expect(await op.touch('nd:t', PAST), true);
    expect(await value('nd:t'), null);
    expect(await op.touch('nd:t', 3600), false);
  }],
  ['expiry', async () => {
    await op.set('nd:e', 'x', PAST);
    expect(await value('nd:e'), null);
    await op.set('nd:e2', 'y', 3600);
    expect(await value('nd:e2'), 'y');
  }],
  ['flush', async () => {
    await op.set('nd:f', 'x', 0);
    expect(await op.flush(), [true]);
    expect(await value('nd:f'), null);
  }],
];
const write = [['persist_written', async () => {
  expect(await op.set('nd:reread', 'kept', 0), true);
}]];
const reread = [['restart_keeps_data', async () => expect(await value('nd:reread'), 'kept')]];

run({ checks, write, reread }[phase], () => mc.end());
