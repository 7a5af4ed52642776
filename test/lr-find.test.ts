/** The learning-rate range test: `finetune lr-find` and `train --lr auto`. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { suggestLearningRate, type LrPoint } from '../src/head/lr-suggest.ts';
import { findLearningRate, train } from '../src/pipeline/train.ts';
import { makeImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let tmp: string;
let data: string;
let backbone: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-lr-'));
  data = (await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 2, perClass: 16, validPerClass: 6 })).root;
  backbone = (await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 4 })).folder;
});
after(() => rm(tmp, { recursive: true, force: true }));

/** 100 rates from 1e-6 to 1, log-spaced as the range test sweeps them, with loss f(log10 lr). */
const curve = (f: (x: number) => number): LrPoint[] =>
  Array.from({ length: 100 }, (_, i) => {
    const x = -6 + (6 * i) / 99;
    return { lr: 10 ** x, loss: f(x) };
  });
const near = (rate: number, log10: number, decades: number) => Math.abs(Math.log10(rate) - log10) <= decades;

test('the suggestion is where the loss falls fastest against log(lr)', () => {
  // 2 − tanh(x + 3) falls fastest at x = −3; the quadratic from x = −1 on is the blow-up, so the
  // lowest loss is at lr ≈ 1e-1 and the answer is lr 1e-3, two decades below it (not minimum/10).
  const { suggested, minimum } = suggestLearningRate(curve((x) => 2 - Math.tanh(x + 3) + 5 * Math.max(0, x + 1) ** 2));
  assert.ok(near(minimum, -1, 0.07), `minimum ${minimum}`);
  assert.ok(near(suggested, -3, 0.07), `suggested ${suggested}, expected about 1e-3`);
});

test('a steeper fall after the lowest loss does not count', () => {
  // Steepest before the minimum at x = −4 (slope −1); the minimum at x = −2; then a rise and a
  // fall eight times as steep that stays above the minimum (a diverging run's loss coming back down).
  const { suggested, minimum } = suggestLearningRate(
    curve((x) => (x <= -2 ? 3 - Math.tanh(x + 4) : x <= -1 ? 3 - Math.tanh(2) + 10 * (x + 2) : 13 - Math.tanh(2) - 8 * (x + 1))),
  );
  assert.ok(near(minimum, -2, 0.07), `minimum ${minimum}`);
  assert.ok(near(suggested, -4, 0.07), `suggested ${suggested}, expected about 1e-4`);
});

test('a curve that never falls suggests a decade below its lowest loss', () => {
  const { suggested, minimum } = suggestLearningRate(curve((x) => 1 + (x + 6) ** 2));
  assert.equal(minimum, 1e-6);
  assert.ok(near(suggested, -7, 1e-9), `suggested ${suggested}`);
});

test('findLearningRate sweeps rates upward and suggests one inside the sweep, below the lowest-loss rate', async () => {
  const result = await findLearningRate(data, { backbone, layer: 'block2_pool', engine: 'tfjs', cacheDir: false });
  assert.ok(result.points.length >= 20, `${result.points.length} points`);
  for (let i = 1; i < result.points.length; i++) assert.ok(result.points[i].lr > result.points[i - 1].lr);
  assert.ok(result.suggested >= 1e-6 && result.suggested <= 1);
  assert.ok(result.suggested <= result.minimum);
});

test('train --lr auto trains with the suggested rate and records it', async () => {
  const result = await train(data, { backbone, layer: 'block2_pool', engine: 'tfjs', cacheDir: false, lr: 'auto', epochs: 3 });
  const training = result.manifest.training as { lr: number; lrFind: { suggested: number } };
  assert.equal(training.lr, training.lrFind.suggested);
  result.head.dispose();
});

test('finetune lr-find prints a plot and a suggestion; --json gives the points', () => {
  const env = { ...process.env, FINETUNE_HOME: tmp, CI: '1' };
  const args = [path.join(ROOT, 'bin', 'finetune.js'), 'lr-find', data, '--backbone', backbone, '--layer', 'block2_pool', '--engine', 'tfjs', '--no-cache', '-q'];
  const text = spawnSync(process.execPath, args, { encoding: 'utf8', env });
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /log10\(learning rate\)/);
  assert.match(text.stdout, /suggested --lr \d/);
  const json = spawnSync(process.execPath, [...args, '--json'], { encoding: 'utf8', env });
  assert.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { suggested: number; points: unknown[] };
  assert.ok(parsed.points.length > 0 && parsed.suggested > 0);
});
