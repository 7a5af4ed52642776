/**
 * The decoded-image cache (memory up to a budget, then a spill file) and the on-the-fly pixel
 * augmentations of the fine-tuning loop, checked pixel by pixel on tiny images.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { augmentBatch, augmentImage, drawAugment, orient, randomResizedCropBox, resizedCrop, CROP_RATIO, CROP_SCALE } from '../src/data/augment-pixels.ts';
import { buildImageCache } from '../src/data/image-cache.ts';
import { readImage } from '../src/data/image.ts';
import { createRng } from '../src/data/random.ts';
import { InterruptedError } from '../src/errors.ts';

/** A 3-channel image whose pixel (y, x) is [10y + x, 100 + c…] so every pixel is told apart. */
function numbered(height: number, width: number): Uint8Array {
  const out = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) out[(y * width + x) * 3 + c] = 10 * y + x + 100 * c;
  return out;
}

/** Channel 0 as rows, for readable assertions. */
function plane(img: Uint8Array, height: number, width: number, c = 0): number[][] {
  return Array.from({ length: height }, (_, y) => Array.from({ length: width }, (_, x) => img[(y * width + x) * 3 + c]));
}

const img = numbered(2, 3);

test('flip mirrors left-right, vflip top-bottom, each channel with it', () => {
  assert.deepEqual(plane(img, 2, 3), [[0, 1, 2], [10, 11, 12]]);
  assert.deepEqual(plane(orient(img, 2, 3, { flip: true, vflip: false, turns: 0 }), 2, 3), [[2, 1, 0], [12, 11, 10]]);
  assert.deepEqual(plane(orient(img, 2, 3, { flip: false, vflip: true, turns: 0 }), 2, 3, 2), [[210, 211, 212], [200, 201, 202]]);
  assert.deepEqual(plane(orient(img, 2, 3, { flip: true, vflip: true, turns: 0 }), 2, 3), [[12, 11, 10], [2, 1, 0]]);
});

test('rot90 turns a square image clockwise by quarter turns; a non-square one only by half turns', () => {
  const sq = numbered(3, 3);
  assert.deepEqual(plane(orient(sq, 3, 3, { flip: false, vflip: false, turns: 1 }), 3, 3), [[20, 10, 0], [21, 11, 1], [22, 12, 2]]);
  assert.deepEqual(plane(orient(sq, 3, 3, { flip: false, vflip: false, turns: 2 }), 3, 3), [[22, 21, 20], [12, 11, 10], [2, 1, 0]]);
  assert.deepEqual(plane(orient(sq, 3, 3, { flip: false, vflip: false, turns: 3 }), 3, 3), [[2, 12, 22], [1, 11, 21], [0, 10, 20]]);
  // Mirror first, then turn.
  assert.deepEqual(plane(orient(sq, 3, 3, { flip: true, vflip: false, turns: 1 }), 3, 3), [[22, 12, 2], [21, 11, 1], [20, 10, 0]]);
  assert.deepEqual(plane(orient(img, 2, 3, { flip: false, vflip: false, turns: 2 }), 2, 3), [[12, 11, 10], [2, 1, 0]]);
  assert.throws(() => orient(img, 2, 3, { flip: false, vflip: false, turns: 1 }), RangeError);
  for (let i = 0; i < 50; i++) assert.ok([0, 2].includes(drawAugment(['rot90'], [2, 3], 1, 1, i).turns));
  const turns = new Set(Array.from({ length: 50 }, (_, i) => drawAugment(['rot90'], [3, 3], 1, 1, i).turns));
  assert.deepEqual([...turns].sort(), [0, 1, 2, 3]);
});

test('resizedCrop: the whole image is the identity; a 2×2 box doubled is bilinear with aligned centres', () => {
  const sq = numbered(4, 4);
  assert.deepEqual(resizedCrop(sq, 4, 4, { left: 0, top: 0, width: 4, height: 4 }), sq);
  // Box rows 1–2, columns 1–2 of channel 0: [[11, 12], [21, 22]] → 4×4. Source x = (x + 0.5)/2 − 0.5
  // clamped: 0, 0.25, 0.75, 1 → columns 11, 11.25, 11.75, 12 (and +10 per row, the same weights).
  const out = plane(resizedCrop(sq, 4, 4, { left: 1, top: 1, width: 2, height: 2 }), 4, 4);
  const expected = [0, 0.25, 0.75, 1].map((fy) => [0, 0.25, 0.75, 1].map((fx) => Math.round(11 + fx + 10 * fy)));
  assert.deepEqual(out, expected);
  assert.deepEqual(out, [[11, 11, 12, 12], [14, 14, 14, 15], [19, 19, 19, 20], [21, 21, 22, 22]]);
});

test('random resized crops stay inside the image within fastai\'s scale and ratio', () => {
  const rng = createRng(5);
  for (let i = 0; i < 200; i++) {
    const box = randomResizedCropBox(40, 60, rng);
    assert.ok(box.left >= 0 && box.top >= 0 && box.left + box.width <= 60 && box.top + box.height <= 40, JSON.stringify(box));
    const scale = (box.width * box.height) / 2400;
    const ratio = box.width / box.height;
    const fallback = box.width === 40 && box.height === 40;
    // Rounding to whole pixels moves scale and ratio a little past their bounds.
    assert.ok(fallback || (scale > CROP_SCALE[0] - 0.03 && scale <= CROP_SCALE[1] + 0.03 && ratio > CROP_RATIO[0] - 0.05 && ratio < CROP_RATIO[1] + 0.05), JSON.stringify({ box, scale, ratio }));
  }
});

test('augmentations are the same for a seed, epoch and index, and change with each', () => {
  const sq = numbered(8, 8);
  const all = ['flip', 'vflip', 'rot90', 'crop'] as const;
  const a = augmentImage(sq, [8, 8], all, { seed: 1, epoch: 2, index: 3 });
  assert.deepEqual(augmentImage(sq, [8, 8], all, { seed: 1, epoch: 2, index: 3 }), a);
  const keys = [{ seed: 2, epoch: 2, index: 3 }, { seed: 1, epoch: 3, index: 3 }, { seed: 1, epoch: 2, index: 4 }];
  for (const key of keys) {
    const differs = [0, 1, 2, 3, 4, 5].some((d) => !Buffer.from(augmentImage(sq, [8, 8], all, { ...key, index: key.index + 10 * d })).equals(Buffer.from(a)));
    assert.ok(differs, `changing ${JSON.stringify(key)} changes the draw`);
  }
  // Adding an augmentation leaves the others' draws as they were.
  for (let i = 0; i < 20; i++) assert.equal(drawAugment(['flip'], [8, 8], 1, 1, i).flip, drawAugment(['flip', 'crop', 'vflip'], [8, 8], 1, 1, i).flip);
  // A batch is its images one by one, by dataset index.
  const batch = new Uint8Array(2 * sq.length);
  batch.set(sq, 0);
  batch.set(sq, sq.length);
  augmentBatch(batch, [8, 8], all, { seed: 1, epoch: 2, indices: [7, 3] });
  assert.deepEqual(batch.subarray(sq.length), a);
  assert.deepEqual(batch.subarray(0, sq.length), augmentImage(sq, [8, 8], all, { seed: 1, epoch: 2, index: 7 }));
  // About half of the images are mirrored.
  const flips = Array.from({ length: 400 }, (_, i) => drawAugment(['flip'], [8, 8], 9, 1, i).flip).filter(Boolean).length;
  assert.ok(flips > 150 && flips < 250, `${flips} of 400 flipped`);
});

let tmp: string;
let files: string[];

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-image-cache-'));
  files = [];
  for (let i = 0; i < 10; i++) {
    const file = path.join(tmp, `img${i}.png`);
    const pixels = Buffer.from(Array.from({ length: 12 * 16 * 3 }, (_, j) => (j * 7 + i * 31) % 256));
    await sharp(pixels, { raw: { width: 16, height: 12, channels: 3 } }).png().toFile(file);
    files.push(file);
  }
  await writeFile(path.join(tmp, 'broken.jpg'), 'not a jpeg');
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('image cache in memory: the pixels readImage gives, each image decoded once', async () => {
  const events: string[] = [];
  const cache = await buildImageCache(files, { inputSize: [6, 8], onProgress: (e) => events.push(e.status) });
  try {
    assert.equal(cache.count, 10);
    assert.equal(cache.inMemory, 10);
    assert.equal(cache.spillFile, null);
    assert.equal(cache.memoryBytes, 10 * 6 * 8 * 3);
    for (let i = 0; i < files.length; i++) assert.deepEqual(await cache.get(i), (await readImage(files[i], { size: [6, 8] })).rgb);
    // get() hands out a copy: augmenting it in place leaves the cache as it was.
    const first = await cache.get(0);
    first.fill(0);
    assert.notDeepEqual(await cache.get(0), first);
    assert.equal(events.filter((s) => s === 'progress').length, 10);
  } finally {
    await cache.dispose();
  }
  await assert.rejects(cache.get(0), /disposed/);
});

test('image cache beyond its budget: the rest spills to one file, read back exactly, removed on dispose', async () => {
  const bytes = 6 * 8 * 3;
  const spillDir = path.join(tmp, 'spill');
  await import('node:fs/promises').then((fs) => fs.mkdir(spillDir));
  const cache = await buildImageCache([...files, path.join(tmp, 'broken.jpg')], { inputSize: [6, 8], budgetBytes: 3 * bytes + 10, dir: spillDir, concurrency: 3 });
  try {
    assert.equal(cache.inMemory, 3);
    assert.ok(cache.memoryBytes <= 3 * bytes + 10, `memory ${cache.memoryBytes} bytes`);
    assert.ok(cache.spillFile && existsSync(cache.spillFile) && cache.spillFile.startsWith(spillDir));
    assert.equal((await stat(cache.spillFile)).size, 7 * bytes, 'the 7 images past the budget, the broken one left out');
    for (let i = 0; i < files.length; i++) assert.deepEqual(await cache.get(i), (await readImage(files[i], { size: [6, 8] })).rgb, `image ${i}`);
    assert.deepEqual(cache.skipped.map((s) => path.basename(s.path)), ['broken.jpg']);
    assert.equal(cache.ok[10], 0);
    await assert.rejects(cache.get(10), /broken\.jpg: not in the image cache/);
    await assert.rejects(cache.get(11), /no image 11/);
  } finally {
    await cache.dispose();
  }
  assert.deepEqual(await readdir(spillDir), [], 'dispose removes the spill folder');
});

test('image cache: a stop request ends decoding with InterruptedError and leaves no spill file', async () => {
  const spillDir = path.join(tmp, 'spill-stop');
  await import('node:fs/promises').then((fs) => fs.mkdir(spillDir));
  const controller = new AbortController();
  const building = buildImageCache(files, {
    inputSize: [6, 8],
    budgetBytes: 0,
    dir: spillDir,
    concurrency: 1,
    signal: controller.signal,
    onProgress: (e) => e.status === 'progress' && e.current === 2 && controller.abort(),
  });
  await assert.rejects(building, InterruptedError);
  assert.deepEqual(await readdir(spillDir), []);
});
