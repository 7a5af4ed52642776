import type { FeatureSpec } from './cache.ts';
import type { FeatureStore } from './extract.ts';
import { featureCacheDir } from '../paths.ts';

export interface CacheOptions {
  /** Folder of the feature cache; false turns caching off. Default $FINETUNE_CACHE or ~/.cache/finetune/features. */
  cacheDir?: string | false;
}

export interface OpenStore {
  store?: FeatureStore & { stats: { hits: number; misses: number; corrupt: number } };
  close(): Promise<void>;
}

/** Opens the cache namespace for one feature spec, or nothing when caching is off. */
export async function openFeatureStore(spec: FeatureSpec, dim: number, opts: CacheOptions): Promise<OpenStore> {
  if (opts.cacheDir === false) return { close: async () => {} };
  const { FeatureCache } = await import('./cache.ts');
  const cache = await FeatureCache.open(opts.cacheDir ?? featureCacheDir());
  // Pooled vectors are small: float32 keeps a cached run bit-identical to a fresh one.
  // Flattened maps (VGG16: 25,088 floats) are large: float16 halves the disk.
  const store = await cache.namespace(spec, dim, { precision: dim > 4096 ? 'float16' : 'float32' });
  return { store, close: () => cache.close() };
}
