/** The learning-rate range test: `finetune lr-find` and `train --lr auto`. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
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
