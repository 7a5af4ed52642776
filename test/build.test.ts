import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build } from 'esbuild';
// @ts-expect-error: a plain .mjs module without types
import { BUILD_OPTIONS } from '../scripts/build-options.mjs';

// `npm ci` builds dist/ and bin/finetune.js runs it: a name the bundler cannot resolve becomes
// `undefined` at run time ("(void 0) is not a function") while the tsx path works.
test('the dist/ bundle resolves every import (no esbuild warnings)', async () => {
  const result = await build({ ...BUILD_OPTIONS, write: false, logLevel: 'silent', outdir: 'dist-check' });
  const warnings = result.warnings.map((w) => `${w.location?.file}:${w.location?.line}: ${w.text}`);
  assert.deepEqual(warnings, []);
});
