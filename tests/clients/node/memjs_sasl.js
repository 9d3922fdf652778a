// memjs (binary protocol only, SASL PLAIN), driven by tests/test_clients.py.
//
// usage: node memjs_sasl.js HOST PORT checks|write|reread USER PASSWORD
// memjs 1.3 has no multi-get and no cas: get_multi is several gets in flight
// at once on the one connection.
'use strict';
const memjs = require('memjs');
const { PAST, expect, run } = require('./common');

const [host, port, phase, user, password] = process.argv.slice(2);
const options = { username: user, password, timeout: 2, conntimeout: 2, retries: 0, logger: { log() {} } };
const mc = memjs.Client.create(`${host}:${port}`, options);
const str = (r) => (r.value === null ? null : r.value.toString());

const checks = [
  ['sasl_refuses_a_wrong_password', async () => {
    const wrong = memjs.Client.create(`${host}:${port}`, { ...options, password: password + 'x' });
    try {
      await wrong.set('js:k', 'nope', {});
    } catch (e) {
      return; // memjs reports a refused login as a failed request, with no message

    } finally {
      wrong.close();
    }
    throw new Error('a wrong password was let in');
  }],
  ['set_get', async () => {
    expect(await mc.set('js:k', 'hello', {}), true);
    expect(str(await mc.get('js:k')), 'hello');
    expect(str(await mc.get('js:missing')), null);
  }],
  ['get_multi', async () => {
    await mc.set('js:a', '1', {});
    await mc.set('js:b', '2', {});
    const got = await Promise.all(['js:a', 'js:b', 'js:nope'].map((k) => mc.get(k)));
    expect(got.map(str), ['1', '2', null]);
  }],
  ['delete', async () => {
    expect(await mc.delete('js:a'), true);
    expect(str(await mc.get('js:a')), null);
    expect(await mc.delete('js:a'), false);
  }],
  ['incr_decr', async () => {
    await mc.set('js:n', '10', {});
    expect((await mc.increment('js:n', 5, {})).value, 15);
    expect((await mc.decrement('js:n', 20, {})).value, 0); // decr stops at 0
    // memjs's increment creates a missing key with its initial value
    expect((await mc.increment('js:fresh', 1, { initial: 7 })).value, 7);
  }],
  ['touch', async () => {
    await mc.set('js:t', 'x', {});
    expect(await mc.touch('js:t', 3600), true);
    expect(str(await mc.get('js:t')), 'x');
    expect(await mc.touch('js:t', PAST), true);
    expect(str(await mc.get('js:t')), null);
    expect(await mc.touch('js:t', 3600), false);
  }],
  ['expiry', async () => {
    await mc.set('js:e', 'x', { expires: PAST });
    expect(str(await mc.get('js:e')), null);
    await mc.set('js:e2', 'y', { expires: 3600 });
    expect(str(await mc.get('js:e2')), 'y');
  }],
  ['flush', async () => {
    await mc.set('js:f', 'x', {});
    await mc.flush();
    expect(str(await mc.get('js:f')), null);
  }],
];
const write = [['persist_written', async () => {
  expect(await mc.set('js:reread', 'kept', {}), true);
}]];
const reread = [['restart_keeps_data', async () => expect(str(await mc.get('js:reread')), 'kept')]];

run({ checks, write, reread }[phase], () => mc.close());
