import type { FeatureSpec } from './cache.ts';
import type { FeatureStore } from './extract.ts';
import { featureCacheDir } from '../paths.ts';
import { reasonOf } from '../fs/reasons.ts';
import { FinetuneError } from '../errors.ts';

export interface CacheOptions {
  /** Folder of the feature cache; false turns caching off. Default $FINETUNE_CACHE or ~/.cache/finetune/features. */
  cacheDir?: string | false;
}

export interface OpenStore {
  store?: FeatureStore & { stats: { hits: number; misses: number; corrupt: number } };
  close(): Promise<void>;
}

/** A warning about the cache, shown once per run however many feature specs meet it. */
export type CacheWarning = (message: string, dir: string) => void;

/**
 * Opens the cache namespace for one feature spec, or nothing when caching is off. A cache that
 * cannot be written (read-only, full, no permission) never stops the run: what it holds is
 * still read, new features are not saved, and `warn` says so.
 */
export async function openFeatureStore(spec: FeatureSpec, dim: number, opts: CacheOptions, warn: CacheWarning = () => {}): Promise<OpenStore> {
  if (opts.cacheDir === false) return { close: async () => {} };
  const { FeatureCache } = await import('./cache.ts');
  const cache = await FeatureCache.open(opts.cacheDir ?? featureCacheDir(), { access: 'auto' });
  if (!cache.writable) warn(`feature cache ${cache.dir} cannot be written (${cache.readOnlyReason}): reading the features it holds, saving no new ones`, cache.dir);
  // Pooled vectors are small: float32 keeps a cached run bit-identical to a fresh one.
  // Flattened maps (VGG16: 25,088 floats) are large: float16 halves the disk.
  let ns: Awaited<ReturnType<typeof cache.namespace>>;
  try {
    ns = await cache.namespace(spec, dim, { precision: dim > 4096 ? 'float16' : 'float32' });
  } catch (err) {
    if (!(err instanceof FinetuneError)) throw err;
    // Not even readable (permissions): the run goes on as with --no-cache.
    warn(`${err.message.replace(/; choose .*$/, '')}: going on without the cache`, cache.dir);
    await cache.close();
    return { close: async () => {} };
  }
  let saving = cache.writable;
  const store: NonNullable<OpenStore['store']> = {
    stats: ns.stats,
    getMany: (hashes) => ns.getMany(hashes),
    async put(entries) {
      if (!saving) return;
      try {
        await ns.put(entries);
      } catch (err) {
        if (!(err instanceof FinetuneError)) throw err;
        saving = false;
        warn(`feature cache ${cache.dir}: cannot save new features (${reasonOf((err as Error).cause ?? err)}); going on without saving them`, cache.dir);
      }
    },
  };
  return { store, close: () => cache.close() };
}

/** One CacheWarning per run: the first message per cache folder reaches `emit`. */
export function cacheWarningOnce(emit: (message: string, dir: string) => void = () => {}): CacheWarning {
  const warned = new Set<string>();
  return (message, dir) => {
    if (warned.has(dir)) return;
    warned.add(dir);
    emit(message, dir);
  };
}
