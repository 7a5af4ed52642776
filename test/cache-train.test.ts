/**
 * The feature cache seen from `train`: a second run computes nothing, ten new images cost
 * exactly ten forward passes, a renamed file is a hit and an edited one a miss.
 */
import assert from 'node:assert/strict';
import { rename, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { train, type TrainOptions } from '../src/pipeline/train.ts';
import { makeImageDataset, writeClassImage } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

let tmp: string;
let data: string;
let options: TrainOptions;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-cache-train-'));
  const made = await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 2, perClass: 12, validPerClass: 4 });
  data = made.root;
  const { folder } = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 2 });
  options = { backbone: folder, layer: 'block2_pool', engine: 'tfjs', epochs: 2, cacheDir: path.join(tmp, 'cache') };
});
after(() => rm(tmp, { recursive: true, force: true }));

async function run() {
  const result = await train(data, options);
  result.head.dispose();
  return result.cache;
}

test('first run computes all 32 images; the second computes none', async () => {
  assert.deepEqual(await run(), { hits: 0, misses: 32 });
  assert.deepEqual(await run(), { hits: 32, misses: 0 });
});

test('ten new images cost exactly ten forward passes', async () => {
  for (let i = 0; i < 10; i++) await writeClassImage(path.join(data, 'train', i % 2 ? 'circle' : 'stripes', `new-${i}.jpg`), i % 2, { seed: 900 + i });
  assert.deepEqual(await run(), { hits: 32, misses: 10 });
});

test('a renamed file is a hit, an edited file a miss', async () => {
  const dir = path.join(data, 'train', 'stripes');
  await rename(path.join(dir, 'new-0.jpg'), path.join(dir, 'renamed.jpg'));
  const edited = path.join(dir, 'new-2.jpg');
  await writeFile(edited, Buffer.concat([await readFile(edited), Buffer.from([0])]));
  assert.deepEqual(await run(), { hits: 41, misses: 1 });
});
