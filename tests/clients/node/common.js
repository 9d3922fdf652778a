// The shared harness of the node client scripts: checks run in order, each
// prints "ok <name>"; the first failure prints "FAIL <name>: why" and exits 1.
'use strict';
const assert = require('assert');

// an absolute exptime in the past: expired at once, no waiting
const PAST = Math.floor(Date.now() / 1000) - 3600;

function expect(got, want) {
  assert.deepStrictEqual(got, want);
}

async function run(checks, done) {
  for (const [name, fn] of checks) {
    try {
      await fn();
    } catch (e) {
      console.log(`FAIL ${name}: ${String(e && e.message ? e.message : e).split('\n').join(' ')}`);
      process.exit(1);
    }
    console.log(`ok ${name}`);
  }
  done();
}

module.exports = { PAST, expect, run };
