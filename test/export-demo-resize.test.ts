/**
 * The demo page's resize (export/demo-page.ts RESIZE_SCRIPT) against sharp, which predict uses:
 * the same bytes for the downsizing photos need (libvips's fixed-point lanczos3), run in Node on
 * raw pixels so the resize alone is compared (the Chromium test covers decoding and the model).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { RESIZE_SCRIPT } from '../src/export/demo-page.ts';

type Img = { rgb: Uint8ClampedArray | Uint8Array; w: number; h: number };
const resizeAxis = new Function(`${RESIZE_SCRIPT}; return resizeAxis;`)() as (img: Img, factor: number, out: number, vertical: boolean) => Img;

/** The page's toPixels without the canvas: fill stretches each axis, crop scales by the smaller factor and cuts the centre. */
function pageResize(src: Uint8Array, w: number, h: number, width: number, height: number, mode: 'fill' | 'cover'): Uint8Array {
  let factorW = w / width;
  let factorH = h / height;
  let targetW = width;
  let targetH = height;
  if (mode === 'cover') {
    const f = Math.min(w / width, h / height);
    targetW = Math.max(width, Math.round(w / f));
    targetH = Math.max(height, Math.round(h / f));
    factorW = w / targetW;
    factorH = h / targetH;
  }
  const img = resizeAxis(resizeAxis({ rgb: src, w, h }, factorH, targetH, true), factorW, targetW, false);
  const left = Math.floor((img.w - width + 1) / 2);
  const top = Math.floor((img.h - height + 1) / 2);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) out.set(img.rgb.subarray(((y + top) * img.w + left) * 3, ((y + top) * img.w + left + width) * 3), y * width * 3);
  return out;
}

/** A photo-like test card: smooth colour waves, sharp edges and noise, so every tap of the kernel matters. */
function testCard(w: number, h: number, seed: number): Uint8Array {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const px = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        const edge = (Math.floor(x / 17) + Math.floor(y / 23)) % 2 ? 40 : -40;
        px[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(128 + 70 * Math.sin(x / (5 + 3 * c) + y / 13) + edge + 50 * (rand() - 0.5))));
      }
    }
  }
  return px;
}

async function compare(w: number, h: number, width: number, height: number, mode: 'fill' | 'cover'): Promise<{ differ: number; max: number; total: number }> {
  const src = testCard(w, h, w * 31 + h);
  const expected = await sharp(Buffer.from(src), { raw: { width: w, height: h, channels: 3 } }).resize(width, height, { fit: mode, position: 'centre', kernel: 'lanczos3' }).raw().toBuffer();
  const got = pageResize(src, w, h, width, height, mode);
  let differ = 0;
  let max = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(expected[i] - got[i]);
    if (d) differ++;
    max = Math.max(max, d);
  }
  return { differ, max, total: expected.length };
}

test('squash resize, downsizing by less than 4 (dogs-vs-cats photos to 224², odd sizes, one axis only): the same bytes as sharp', async () => {
  const cases: [number, number, number, number, 'fill' | 'cover'][] = [
    [500, 375, 224, 224, 'fill'],
    [499, 332, 224, 224, 'fill'],
    [333, 250, 224, 224, 'fill'],
    [64, 64, 32, 32, 'fill'],
    [400, 100, 224, 60, 'fill'],
    [448, 448, 224, 224, 'fill'],
    [300, 224, 224, 224, 'fill'],
  ];
  for (const [w, h, width, height, mode] of cases) {
    const { differ, max, total } = await compare(w, h, width, height, mode);
    assert.equal(differ, 0, `${w}×${h} → ${width}×${height} ${mode}: ${differ} of ${total} bytes differ (by up to ${max})`);
  }
});

test('downsizing by 4 to 10 (box factors 2 and 4: 1000×750, 1792×1792, 1000×1000 → 224²): the same bytes as sharp', async () => {
  for (const [w, h] of [[1000, 750], [1792, 1792], [1000, 1000]]) {
    const { differ, max, total } = await compare(w, h, 224, 224, 'fill');
    assert.equal(differ, 0, `${w}×${h}: ${differ} of ${total} bytes differ (by up to ${max})`);
  }
});

test('odd box factors, upsizing and crop: not yet libvips’s bytes (recorded, not equal)', async (t) => {
  const cases: [number, number, 'fill' | 'cover'][] = [[1344, 1344, 'fill'], [2001, 1333, 'fill'], [1792, 1344, 'fill'], [100, 80, 'fill'], [500, 200, 'fill'], [500, 375, 'cover']];
  for (const [w, h, mode] of cases) {
    const { differ, max, total } = await compare(w, h, 224, 224, mode);
    t.diagnostic(`${w}×${h} → 224×224 ${mode}: ${differ} of ${total} bytes differ, by up to ${max}`);
    assert.ok(max < 128, `${w}×${h} ${mode}: up to ${max} levels apart`);
  }
});
