import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp, { type Sharp } from 'sharp';
import { ImageReadError, readImage, type DecodedImage } from '../src/data/image.ts';
import { preprocess } from '../src/data/preprocess.ts';
import { PREPROCESS_MODES } from '../src/index.ts';
import { writeClassImage } from './fixtures/images.ts';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-preprocess-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function assertClose(actual: ArrayLike<number>, expected: number[], tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length);
  expected.forEach((e, i) => assert.ok(Math.abs(actual[i] - e) <= tolerance, `[${i}] ${actual[i]} ≠ ${e}`));
}

function pixel(img: DecodedImage, row: number, col: number): number[] {
  const i = (row * img.width + col) * 3;
  return [img.rgb[i], img.rgb[i + 1], img.rgb[i + 2]];
}

const isRed = ([r, g, b]: number[]) => r > 180 && g < 80 && b < 80;
const isBlue = ([r, g, b]: number[]) => b > 180 && r < 80 && g < 80;
const isGreen = ([r, g, b]: number[]) => g > 180 && r < 80 && b < 80;

/** Raw RGB(A) pixels whose colour is `colourAt(x, y)`, written as `file` by sharp. */
async function writeImage(file: string, width: number, height: number, channels: 3 | 4, colourAt: (x: number, y: number) => number[], edit?: (s: Sharp) => Sharp) {
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(colourAt(x, y), (y * width + x) * channels);
  let img = sharp(data, { raw: { width, height, channels } });
  img = file.endsWith('.png') ? img.png() : img.jpeg({ quality: 95 });
  await (edit ? edit(img) : img).toFile(file);
  return file;
}

describe('pixel preprocessing of RGB (255, 128, 0)', () => {
  const rgb = new Uint8Array([255, 128, 0]);

  test('the modes are caffe, tf, torch and unit', () => {
    assert.deepEqual([...PREPROCESS_MODES].sort(), ['caffe', 'tf', 'torch', 'unit']);
  });

  test('caffe (VGG16): BGR order minus the ImageNet BGR mean, no scaling', () => {
    assertClose(preprocess(rgb, 'caffe'), [0 - 103.939, 128 - 116.779, 255 - 123.68], 1e-4);
  });

  test('tf: scaled to [-1, 1]', () => {
    assertClose(preprocess(rgb, 'tf'), [1, 128 / 127.5 - 1, -1]);
    assert.ok(Math.abs(preprocess(rgb, 'tf')[1] - 0.0039216) < 1e-6);
  });

  test('torch: x/255, then ImageNet mean and std per RGB channel', () => {
    assertClose(preprocess(rgb, 'torch'), [(1 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225]);
  });

  test('unit: x/255', () => {
    assertClose(preprocess(rgb, 'unit'), [1, 128 / 255, 0]);
  });

  test('every pixel of an image gets the same treatment (HWC order kept)', () => {
    const two = new Uint8Array([255, 128, 0, 0, 128, 255]);
    assertClose(preprocess(two, 'caffe'), [0 - 103.939, 128 - 116.779, 255 - 123.68, 255 - 103.939, 128 - 116.779, 0 - 123.68], 1e-4);
  });
});

describe('image decoding', () => {
  test('EXIF orientation 6 rotates the picture before it is resized', async () => {
    // Stored 40 wide × 20 tall, left half red, right half blue; orientation 6 = turn 90° clockwise
    // to view, so the viewer sees 20 × 40 with red on top.
    const file = await writeImage(path.join(tmp, 'rotated.jpg'), 40, 20, 3, (x) => (x < 20 ? [255, 0, 0] : [0, 0, 255]), (s) => s.withMetadata({ orientation: 6 }));
    assert.equal((await sharp(file).metadata()).orientation, 6);
    const img = await readImage(file, { size: [40, 20] });
    assert.equal(img.width, 20);
    assert.equal(img.height, 40);
    assert.ok(isRed(pixel(img, 5, 10)), `top centre should be red, is ${pixel(img, 5, 10)}`);
    assert.ok(isBlue(pixel(img, 34, 10)), `bottom centre should be blue, is ${pixel(img, 34, 10)}`);
    assert.ok(isRed(pixel(img, 5, 2)) && isRed(pixel(img, 5, 17)), 'red spans the whole width');
  });

  test('alpha is dropped: transparent areas show as white, opaque ones keep their colour', async () => {
    const file = await writeImage(path.join(tmp, 'alpha.png'), 8, 8, 4, (x) => (x < 4 ? [255, 0, 0, 255] : [255, 0, 0, 0]));
    const img = await readImage(file, { size: [8, 8] });
    assert.equal(img.rgb.length, 8 * 8 * 3);
    assert.deepEqual(pixel(img, 4, 1), [255, 0, 0]);
    assert.deepEqual(pixel(img, 4, 6), [255, 255, 255]);
  });

  test('a greyscale image becomes three equal channels', async () => {
    const grey = Buffer.alloc(8 * 8);
    for (let i = 0; i < grey.length; i++) grey[i] = (i * 4) % 256;
    const file = path.join(tmp, 'grey.png');
    await sharp(grey, { raw: { width: 8, height: 8, channels: 1 } }).toColourspace('b-w').png().toFile(file);
    assert.equal((await sharp(file).metadata()).channels, 1);
    const img = await readImage(file, { size: [8, 8] });
    assert.equal(img.rgb.length, 8 * 8 * 3);
    for (let p = 0; p < 64; p++) {
      const [r, g, b] = pixel(img, Math.floor(p / 8), p % 8);
      assert.ok(r === g && g === b, `pixel ${p}: ${r},${g},${b}`);
    }
    assert.equal(pixel(img, 2, 3)[0], ((2 * 8 + 3) * 4) % 256);
  });

  test('squash and crop both give the requested size; crop keeps the centre, squash the whole picture', async () => {
    // 90 × 30: thirds red | green | blue.
    const file = await writeImage(path.join(tmp, 'wide.png'), 90, 30, 3, (x) => (x < 30 ? [255, 0, 0] : x < 60 ? [0, 255, 0] : [0, 0, 255]));
    const squash = await readImage(file, { size: [24, 20], resize: 'squash' });
    const crop = await readImage(file, { size: [24, 20], resize: 'crop' });
    for (const img of [squash, crop]) {
      assert.equal(img.width, 20);
      assert.equal(img.height, 24);
      assert.equal(img.rgb.length, 24 * 20 * 3);
    }
    assert.ok(isRed(pixel(squash, 12, 1)), 'squash: left edge red');
    assert.ok(isGreen(pixel(squash, 12, 10)), 'squash: middle green');
    assert.ok(isBlue(pixel(squash, 12, 18)), 'squash: right edge blue');
    // Cover-scaled to 72 × 24, the centre 20 columns are all green.
    assert.ok(isGreen(pixel(crop, 12, 1)) && isGreen(pixel(crop, 12, 18)), 'crop: only the green centre');
  });

  test('flip mirrors left-right', async () => {
    const file = await writeImage(path.join(tmp, 'halves.png'), 16, 8, 3, (x) => (x < 8 ? [255, 0, 0] : [0, 0, 255]));
    const img = await readImage(file, { size: [8, 16], flip: true });
    assert.ok(isBlue(pixel(img, 4, 1)) && isRed(pixel(img, 4, 14)));
  });

  test('truncated, empty and non-image files are ImageReadErrors naming the file', async () => {
    const good = await writeClassImage(path.join(tmp, 'good.jpg'), 0, { seed: 1, size: 64 });
    const bytes = await readFile(good);
    const truncated = path.join(tmp, 'truncated.jpg');
    await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const empty = path.join(tmp, 'empty.jpg');
    await writeFile(empty, '');
    const text = path.join(tmp, 'text.jpg');
    await writeFile(text, 'hello, I am not a JPEG\n');
    for (const [file, reason] of [
      [truncated, /corrupt|truncated/],
      [empty, /empty/],
      [text, /decode|format|corrupt/],
      [path.join(tmp, 'missing.jpg'), /not found/],
    ] as const) {
      await assert.rejects(readImage(file, { size: [16, 16] }), (err: unknown) => {
        assert.ok(err instanceof ImageReadError, String(err));
        assert.equal(err.path, file);
        assert.match(err.reason, reason);
        return true;
      });
    }
  });
});
