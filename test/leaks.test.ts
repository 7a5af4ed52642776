/**
 * Nothing grows with work done: tfjs tensors stay level across epochs of training and across
 * repeated predict calls, and the resident memory of extraction does not grow with the
 * number of images (the pipeline's queue is bounded).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { loadModel, predict, saveModel, train } from '../src/index.ts';
import { makeTwoClassImages, ROOT, writeConvBackbone } from './fixtures/interrupt-fixture.ts';

const run = promisify(execFile);

let tmp: string;
let data: string;
let files: string[];
let backbone: string;
let modelDir: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-leaks-'));
  data = path.join(tmp, 'data');
  files = await makeTwoClassImages(data, 20, 51);
  backbone = await writeConvBackbone(path.join(tmp, 'backbone'), { inputSize: 32, filters: 8 });
  modelDir = path.join(tmp, 'model');
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('train (tfjs engine): the tensor count is the same after every epoch, and back to the start once the head is disposed', { timeout: 60_000 }, async (t) => {
  // One head: with an ensemble, each finished head's weights are held until the merge.
  const common = { backbone, layer: 'block1_pool', engine: 'tfjs' as const, cacheDir: path.join(tmp, 'cache'), ensemble: 1 };
  // A first run sets up the backend and whatever tfjs keeps for good (kernels, the wasm module).
  const warm = await train(data, { ...common, epochs: 1 });
  warm.head.dispose();
  const start = tf.memory().numTensors;
  const atEpoch: number[] = [];
  const result = await train(data, {
    ...common,
    epochs: 5,
    patience: 5,
    onProgress: (e) => {
      if (e.task === 'train' && e.status === 'progress') atEpoch.push(tf.memory().numTensors);
    },
  });
  assert.equal(atEpoch.length, 5, 'one progress event per epoch');
  assert.ok(atEpoch.every((n) => n === atEpoch[0]), `tensors at each epoch: ${atEpoch.join(', ')}`);
  await saveModel(modelDir, result, { remember: false });
  result.head.dispose();
  assert.equal(tf.memory().numTensors, start, 'train leaves no tensor behind but the head it returns');
  t.diagnostic(`tensors at each epoch: ${atEpoch.join(', ')} (${start} before train)`);
});

test('predict (tfjs engine): the tensor count is the same after each of 20 batches', { timeout: 60_000 }, async (t) => {
  const model = await loadModel(modelDir);
  const loaded = tf.memory().numTensors;
  const batch = files.slice(0, 8);
  const opts = { engine: 'tfjs' as const, cacheDir: false as const };
  try {
    await predict(model, batch, opts);
    const counts: number[] = [];
    for (let i = 0; i < 20; i++) {
      const predictions = await predict(model, batch, opts);
      assert.equal(predictions.filter((p) => 'label' in p).length, batch.length);
      counts.push(tf.memory().numTensors);
    }
    assert.ok(counts.every((n) => n === loaded), `tensors after each batch: ${counts.join(', ')}; ${loaded} with the model loaded`);
    t.diagnostic(`tensors after each of 20 predict batches: ${counts[0]}`);
  } finally {
    model.head.dispose();
  }
});

test('extraction of 2,000 images peaks within +25% of the memory of 500', { timeout: 90_000 }, async (t) => {
  const child = path.join(ROOT, 'test', 'fixtures', 'interrupt-extract-child.ts');
  const measure = async (count: number) => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', child, backbone, 'block1_pool', 'tfjs', String(count), ...files], { cwd: ROOT, maxBuffer: 1 << 20 });
    const line = stdout.split('\n').find((l) => l.startsWith('{'));
    assert.ok(line, `child printed its result\n${stdout}`);
    return JSON.parse(line) as { computed: number; seconds: number; maxRssKiB: number };
  };
  // Side by side: the figures are each process's own peak, and this halves the wall time.
  const [small, large] = await Promise.all([measure(500), measure(2000)]);
  assert.equal(small.computed, 500);
  assert.equal(large.computed, 2000);
  const growth = large.maxRssKiB / small.maxRssKiB - 1;
  t.diagnostic(`max RSS: 500 images ${(small.maxRssKiB / 1024).toFixed(0)} MiB (${small.seconds.toFixed(1)} s), 2,000 images ${(large.maxRssKiB / 1024).toFixed(0)} MiB (${large.seconds.toFixed(1)} s): ${(growth * 100).toFixed(1)}%`);
  assert.ok(growth <= 0.25, `2,000 images took ${(growth * 100).toFixed(1)}% more memory than 500`);
});
