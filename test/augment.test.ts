/** Augmented variants: random crops are deterministic per file content, taken before resizing, cached per variant. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { cropBox, variantKey } from '../src/data/augment.ts';
import { readImage } from '../src/data/image.ts';
import { FeatureCache } from '../src/features/cache.ts';
import { train } from '../src/pipeline/train.ts';
import { makeImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-augment-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

test('a crop box is inside the image, 75–100% of each side, and the same for the same content, copy and seed', () => {
  const hash = 'ab'.repeat(32);
  const box = cropBox(hash, { copy: 1, seed: 42 });
  assert.deepEqual(cropBox(hash, { copy: 1, seed: 42 }), box);
  assert.notDeepEqual(cropBox(hash, { copy: 2, seed: 42 }), box);
  assert.notDeepEqual(cropBox('cd'.repeat(32), { copy: 1, seed: 42 }), box);
  for (let copy = 1; copy <= 50; copy++) {
    const b = cropBox(hash, { copy, seed: 7 });
    assert.ok(b.width >= 0.75 && b.width <= 1 && b.height >= 0.75 && b.height <= 1);
    assert.ok(b.left >= 0 && b.top >= 0 && b.left + b.width <= 1 + 1e-9 && b.top + b.height <= 1 + 1e-9);
  }
  assert.equal(variantKey(), 'none');
  assert.equal(variantKey({ crop: { copy: 2, seed: 42 } }), 'crop2-seed42');
});

test('the crop is taken from the oriented image before resizing', async () => {
  // Left half red, right half blue; the crop keeps the left 40%: only red remains.
  const file = path.join(tmp, 'halves.png');
  const left = await sharp({ create: { width: 50, height: 40, channels: 3, background: '#ff0000' } }).png().toBuffer();
  await sharp({ create: { width: 100, height: 40, channels: 3, background: '#0000ff' } }).composite([{ input: left, left: 0, top: 0 }]).png().toFile(file);
  const image = await readImage(file, { size: [8, 8], crop: { left: 0, top: 0, width: 0.4, height: 1 } });
  for (let i = 0; i < image.rgb.length; i += 3) assert.ok(image.rgb[i] > 200 && image.rgb[i + 2] < 50, `pixel ${i / 3} is ${image.rgb.slice(i, i + 3)}`);
});

test('train --augment flip,crop with 2 copies: 4× the rows, each variant cached under its own key', async () => {
  const data = (await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 2, perClass: 8, validPerClass: 4 })).root;
  const { folder } = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 3 });
  const cacheDir = path.join(tmp, 'cache');
  const messages: string[] = [];
  const result = await train(data, { backbone: folder, layer: 'block2_pool', engine: 'tfjs', epochs: 2, cacheDir, augment: ['flip', 'crop'], augmentCopies: 2, onProgress: (e) => e.status === 'initiate' && messages.push(e.message) });
  result.head.dispose();
  assert.equal(result.counts.train, 16, 'images counted once');
  // The head trains on each image, its mirror image and two crops: 4 × 16 rows (what the CLI prints).
  const training = messages.find((m) => m.startsWith('training '));
  assert.match(training ?? '', / on 64 images$/, messages.join('\n'));
  assert.equal(result.manifest.training.augmentCopies, 2);
  const cache = await FeatureCache.open(cacheDir);
  const info = await cache.info();
  await cache.close();
  assert.deepEqual(info.specs.map((s) => s.spec.augment).sort(), ['crop1-seed42', 'crop2-seed42', 'flip', 'none']);
  assert.deepEqual(info.specs.map((s) => s.entries).sort((a, b) => a - b), [16, 16, 16, 24]);
});
