import { createRng, type Rng } from './random.ts';

/**
 * On-the-fly augmentations of decoded uint8 RGB images (HWC; batches NHWC), drawn afresh each
 * epoch and deterministic for (seed, epoch, index). Vertical flips and 90° turns suit satellite
 * and microscope images, not photos: the user chooses.
 */
export const PIXEL_AUGMENTS = ['flip', 'vflip', 'rot90', 'crop'] as const;
export type PixelAugment = (typeof PIXEL_AUGMENTS)[number];

/** fastai's RandomResizedCrop: 35–100% of the area, aspect ratio 3/4–4/3. */
export const CROP_SCALE = Object.freeze([0.35, 1] as const);
export const CROP_RATIO = Object.freeze([3 / 4, 4 / 3] as const);

/** A pixel rectangle of the source image. */
export interface PixelBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** What one image gets in one epoch. */
export interface AugmentDraw {
  crop?: PixelBox;
  flip: boolean;
  vflip: boolean;
  /** Quarter turns clockwise (0–3); only 0 or 2 for a non-square image, whose shape must stay. */
  turns: number;
}

// One stream per augmentation, so adding one to the list leaves the others' draws unchanged.
const STREAM = { crop: 1, flip: 2, vflip: 3, rot90: 4 } as const;

function rngFor(seed: number, epoch: number, index: number, stream: number): Rng {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b);
  for (const v of [epoch, index, stream]) h = Math.imul((h ^ v) + 0x7f4a7c15, 0xc2b2ae35) ^ (h >>> 15);
  return createRng(h >>> 0);
}

/** The random choices for image `index` in `epoch`: the same every time for the same seed. */
export function drawAugment(augments: readonly PixelAugment[], size: readonly [number, number], seed: number, epoch: number, index: number): AugmentDraw {
  const [height, width] = size;
  const on = (a: PixelAugment) => augments.includes(a);
  const draw: AugmentDraw = { flip: false, vflip: false, turns: 0 };
  if (on('crop')) draw.crop = randomResizedCropBox(height, width, rngFor(seed, epoch, index, STREAM.crop));
  if (on('flip')) draw.flip = rngFor(seed, epoch, index, STREAM.flip)() < 0.5;
  if (on('vflip')) draw.vflip = rngFor(seed, epoch, index, STREAM.vflip)() < 0.5;
  if (on('rot90')) {
    const r = rngFor(seed, epoch, index, STREAM.rot90)();
    draw.turns = height === width ? Math.floor(r * 4) : r < 0.5 ? 0 : 2;
  }
  return draw;
}

/** fastai's RandomResizedCrop box: 10 tries at a random area and ratio, else the centre crop. */
export function randomResizedCropBox(height: number, width: number, rng: Rng): PixelBox {
  const area = height * width;
  const [logLow, logHigh] = [Math.log(CROP_RATIO[0]), Math.log(CROP_RATIO[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * rng());
    const ratio = Math.exp(logLow + (logHigh - logLow) * rng());
    const w = Math.round(Math.sqrt(target * ratio));
    const h = Math.round(Math.sqrt(target / ratio));
    if (w >= 1 && h >= 1 && w <= width && h <= height) {
      return { left: Math.floor(rng() * (width - w + 1)), top: Math.floor(rng() * (height - h + 1)), width: w, height: h };
    }
  }
  const side = Math.min(height, width);
  return { left: Math.floor((width - side) / 2), top: Math.floor((height - side) / 2), width: side, height: side };
}

/**
 * `box` of `src` (height × width × 3) resampled to height × width with bilinear interpolation,
 * pixel centres aligned (align_corners = false, as PIL, torchvision and tf.image.resize do).
 */
export function resizedCrop(src: Uint8Array, height: number, width: number, box: PixelBox, out: Uint8Array = new Uint8Array(height * width * 3)): Uint8Array {
  const sy = box.height / height;
  const sx = box.width / width;
  const x0 = new Int32Array(width);
  const x1 = new Int32Array(width);
  const fx = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const pos = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), box.width - 1);
    const base = Math.floor(pos);
    x0[x] = (box.left + base) * 3;
    x1[x] = (box.left + Math.min(base + 1, box.width - 1)) * 3;
    fx[x] = pos - base;
  }
  for (let y = 0; y < height; y++) {
    const pos = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), box.height - 1);
    const base = Math.floor(pos);
    const row0 = (box.top + base) * width * 3;
    const row1 = (box.top + Math.min(base + 1, box.height - 1)) * width * 3;
    const fy = pos - base;
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) {
        const top = src[row0 + x0[x] + c] * (1 - fx[x]) + src[row0 + x1[x] + c] * fx[x];
        const bottom = src[row1 + x0[x] + c] * (1 - fx[x]) + src[row1 + x1[x] + c] * fx[x];
        out[o + c] = Math.round(top * (1 - fy) + bottom * fy);
      }
    }
  }
  return out;
}

/**
 * Flips and quarter turns of one image (height × width × 3) into `out`: a left-right mirror,
 * then a top-bottom mirror, then `turns` quarter turns clockwise. Square images for odd turns.
 */
export function orient(src: Uint8Array, height: number, width: number, draw: Pick<AugmentDraw, 'flip' | 'vflip' | 'turns'>, out: Uint8Array = new Uint8Array(height * width * 3)): Uint8Array {
  const turns = ((draw.turns % 4) + 4) % 4;
  if (turns % 2 === 1 && height !== width) throw new RangeError(`a quarter turn of a ${height}×${width} image changes its shape`);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      // Where output pixel (y, x) comes from: undo the turns, then the mirrors.
      // A clockwise quarter turn puts source (n−1−x, y) at (y, x); a half turn (h−1−y, w−1−x).
      let sy = y;
      let sx = x;
      if (turns === 2) [sy, sx] = [height - 1 - y, width - 1 - x];
      else for (let t = 0; t < turns; t++) [sy, sx] = [height - 1 - sx, sy];
      if (draw.vflip) sy = height - 1 - sy;
      if (draw.flip) sx = width - 1 - sx;
      const o = (y * width + x) * 3;
      const s = (sy * width + sx) * 3;
      out[o] = src[s];
      out[o + 1] = src[s + 1];
      out[o + 2] = src[s + 2];
    }
  }
  return out;
}

/** One image's augmentation for (seed, epoch, index): crop, then mirrors and turns. */
export function augmentImage(src: Uint8Array, size: readonly [number, number], augments: readonly PixelAugment[], key: { seed: number; epoch: number; index: number }, out?: Uint8Array): Uint8Array {
  const [height, width] = size;
  const draw = drawAugment(augments, size, key.seed, key.epoch, key.index);
  const cropped = draw.crop ? resizedCrop(src, height, width, draw.crop) : src;
  return orient(cropped, height, width, draw, out);
}

/** A batch NHWC of images whose dataset indices are `indices`, augmented in place. */
export function augmentBatch(batch: Uint8Array, size: readonly [number, number], augments: readonly PixelAugment[], key: { seed: number; epoch: number; indices: ArrayLike<number> }): Uint8Array {
  if (augments.length === 0) return batch;
  const per = size[0] * size[1] * 3;
  for (let b = 0; b < key.indices.length; b++) {
    const image = batch.subarray(b * per, (b + 1) * per);
    image.set(augmentImage(image.slice(), size, augments, { seed: key.seed, epoch: key.epoch, index: key.indices[b] }));
  }
  return batch;
}
