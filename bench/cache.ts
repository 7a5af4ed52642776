import { createHash } from 'node:crypto';
import { FeatureCache, type FeatureSpec } from '../src/features/cache.ts';
import { bestOf, log, round } from './timing.ts';

export interface CacheResult {
  entries: number;
  dim: number;
  precision: 'float32';
  writeSeconds: number;
  /** Opening the cache and its namespace (reading the index) in a fresh FeatureCache. */
  openSeconds: number;
  /** namespace.getMany over every key. */
  getManySeconds: number;
  runs: { open: number; getMany: number }[];
}

const SPEC: FeatureSpec = {
  backbone: 'vgg16',
  weightsChecksum: 'bench',
  layer: 'block5_pool',
  pooling: 'avg',
  preprocess: 'caffe',
  inputSize: [224, 224],
  resize: 'squash',
  augment: 'none',
};

/** 25,000 pooled VGG16 vectors (512 floats, stored float32 as the pipeline stores them) read back at once. */
export async function run(opts: { dir: string; entries: number; dim: number; runs: number }): Promise<CacheResult> {
  const hashes = Array.from({ length: opts.entries }, (_, i) => createHash('sha256').update(`image ${i}`).digest('hex'));
  const t = performance.now();
  const writer = await FeatureCache.open(opts.dir);
  const ns = await writer.namespace(SPEC, opts.dim, { precision: 'float32' });
  const chunk = 1000;
  for (let start = 0; start < hashes.length; start += chunk) {
    const rows = hashes.slice(start, start + chunk).map((hash, i) => ({ hash, features: Float32Array.from({ length: opts.dim }, (_, j) => Math.sin(start + i + j)) }));
    await ns.put(rows);
  }
  await writer.close();
  const writeSeconds = (performance.now() - t) / 1000;

  const runs: { open: number; getMany: number }[] = [];
  await bestOf(
    async () => {
      const t0 = performance.now();
      const cache = await FeatureCache.open(opts.dir);
      const reader = await cache.namespace(SPEC, opts.dim, { precision: 'float32' });
      const t1 = performance.now();
      const vectors = await reader.getMany(hashes);
      const t2 = performance.now();
      await cache.close();
      const missing = vectors.filter((v) => !v || v.length !== opts.dim).length;
      if (missing) throw new Error(`cache: ${missing} of ${hashes.length} vectors not read back`);
      runs.push({ open: round((t1 - t0) / 1000), getMany: round((t2 - t1) / 1000) });
    },
    { warmup: 1, runs: opts.runs },
  );
  const timed = runs.slice(1);
  const result: CacheResult = {
    entries: opts.entries,
    dim: opts.dim,
    precision: 'float32',
    writeSeconds: round(writeSeconds, 2),
    openSeconds: Math.min(...timed.map((r) => r.open)),
    getManySeconds: Math.min(...timed.map((r) => r.getMany)),
    runs: timed,
  };
  log(`feature cache: ${opts.entries} × ${opts.dim} floats, open ${result.openSeconds} s, getMany ${result.getManySeconds} s`);
  return result;
}
