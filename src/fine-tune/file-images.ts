import { readImage, type ResizeMode } from '../data/image.ts';
import { preprocessInto, type Preprocess } from '../data/preprocess.ts';
import { createRng } from '../data/random.ts';
import type { ImageSource } from './loop.ts';

export interface FileImagesOptions {
  size: readonly [number, number];
  resize?: ResizeMode;
  preprocess: Preprocess;
  /** Mirror left-right at random (seeded by epoch and image) while training. */
  flip?: boolean;
  seed?: number;
}

/**
 * Images decoded from their files once, kept as uint8 RGB at the input size (3 bytes a pixel,
 * a quarter of the floats), and preprocessed per batch. The stand-in for the bounded decoded-
 * image cache: anything with `batch(indices, epoch)` can replace it.
 */
export async function fileImages(paths: string[], labels: ArrayLike<number>, opts: FileImagesOptions): Promise<ImageSource> {
  const [h, w] = opts.size;
  const pixels = h * w * 3;
  const decoded: Uint8Array[] = [];
  for (const p of paths) decoded.push((await readImage(p, { size: opts.size, resize: opts.resize })).rgb);
  const seed = opts.seed ?? 0;
  return {
    count: paths.length,
    labels,
    async batch(indices, epoch) {
      const out = new Float32Array(indices.length * pixels);
      indices.forEach((index, row) => {
        let rgb = decoded[index];
        if (opts.flip && epoch >= 0 && createRng(seed * 1_000_003 + epoch * 7919 + index)() < 0.5) rgb = mirrored(rgb, h, w);
        preprocessInto(rgb, opts.preprocess, out, row * pixels);
      });
      return out;
    },
  };
}

function mirrored(rgb: Uint8Array, h: number, w: number): Uint8Array {
  const out = new Uint8Array(rgb.length);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const from = (y * w + x) * 3;
      const to = (y * w + (w - 1 - x)) * 3;
      out[to] = rgb[from];
      out[to + 1] = rgb[from + 1];
      out[to + 2] = rgb[from + 2];
    }
  return out;
}
