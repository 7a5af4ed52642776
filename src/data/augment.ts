import { createRng } from './random.ts';

/**
 * Augmented variants of an image. Each is deterministic for a given file content, copy number
 * and seed, so its features can be cached under the variant's own key and the second run is as
 * fast as the first is slow.
 */
export interface Variant {
  /** Mirror left-right. */
  flip?: boolean;
  /** Random crop: copy number (1…K) and the training seed. */
  crop?: { copy: number; seed: number };
}

/** A region of the (EXIF-oriented) image as fractions of its width and height. */
export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Side fraction of a random crop: 75–100%, as the classic "random resized crop" at small scale. */
const MIN_SIDE = 0.75;

/** The crop a variant takes of the image with this content hash. */
export function cropBox(hash: string, crop: { copy: number; seed: number }): CropBox {
  const rng = createRng((parseInt(hash.slice(0, 8), 16) ^ Math.imul(crop.copy, 0x9e3779b1) ^ crop.seed) >>> 0);
  const width = MIN_SIDE + (1 - MIN_SIDE) * rng();
  const height = Math.min(1, Math.max(MIN_SIDE, width * (0.9 + 0.2 * rng())));
  return { left: (1 - width) * rng(), top: (1 - height) * rng(), width, height };
}

/** The cache key part that names a variant ('none' for the image itself). */
export function variantKey(variant: Variant = {}): string {
  const parts = [variant.flip ? 'flip' : '', variant.crop ? `crop${variant.crop.copy}-seed${variant.crop.seed}` : ''].filter(Boolean);
  return parts.length > 0 ? parts.join('+') : 'none';
}
