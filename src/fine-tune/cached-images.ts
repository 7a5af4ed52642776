import { augmentImage, type PixelAugment } from '../data/augment-pixels.ts';
import type { ImageCache } from '../data/image-cache.ts';
import { preprocessInto, type Preprocess } from '../data/preprocess.ts';
import type { ImageSource } from './loop.ts';

export interface CachedImagesOptions {
  preprocess: Preprocess;
  /** Applied on the fly while training (epoch ≥ 0), seeded by seed, epoch and image. */
  augments?: readonly PixelAugment[];
  seed?: number;
}

/**
 * The decoded-image cache as the fine-tuning loop's ImageSource: `rows[i]` is the cache index
 * of the source's image i (the readable ones), labelled `labels[i]`.
 */
export function cachedImages(cache: ImageCache, rows: ArrayLike<number>, labels: ArrayLike<number>, opts: CachedImagesOptions): ImageSource {
  const pixels = cache.bytesPerImage;
  const augments = opts.augments ?? [];
  const seed = opts.seed ?? 0;
  return {
    count: rows.length,
    labels,
    async batch(indices, epoch) {
      const out = new Float32Array(indices.length * pixels);
      for (const [b, index] of indices.entries()) {
        let rgb = await cache.get(rows[index]);
        if (epoch >= 0 && augments.length > 0) rgb = augmentImage(rgb, cache.size, augments, { seed, epoch, index });
        preprocessInto(rgb, opts.preprocess, out, b * pixels);
      }
      return out;
    },
  };
}
