import { readFile } from 'node:fs/promises';
import { initBackend } from '../src/engines/backend.ts';
import { createOnnxExtractor } from '../src/engines/onnx.ts';
import type { FeatureExtractor } from '../src/engines/types.ts';
import { vgg16 } from '../src/backbones/vgg16.ts';
import { extractFeatures } from '../src/features/extract.ts';
import { convFlops } from './flops.ts';
import { bestOf, log, round } from './timing.ts';

export interface ThroughputRow {
  batch: number;
  imagesPerSecond: number;
  gflops: number;
  runs: number[];
}

export interface PipelineResult {
  images: number;
  source: string;
  batch: number;
  /** Files → features through extractFeatures (read, hash, decode, resize, preprocess, engine). */
  imagesPerSecond: number;
  /** Same extractor, same batch size, tensors already decoded: passes interleaved with the file runs. */
  tensorImagesPerSecond: number;
  /** The engine's own rate inside the pipeline (what decoding has to keep up with). */
  engineImagesPerSecond: number;
  runs: number[];
}

export interface VggOnnxResult {
  flopsPerImage: number;
  threads: number;
  throughput: ThroughputRow[];
  pipeline?: PipelineResult;
}

/** Preprocessed-looking input (caffe range), so no part of the graph sees degenerate values. */
function randomImages(count: number, size: number): Float32Array {
  return Float32Array.from({ length: count * size * size * 3 }, () => Math.random() * 255 - 120);
}

async function throughput(extractor: FeatureExtractor, batch: number, runs: number, flops: number): Promise<ThroughputRow> {
  const input = randomImages(batch, 224);
  // A single image runs for ~0.1 s: more runs keep the best of them honest.
  const timed = await bestOf(() => extractor.run(input, batch), { warmup: 1, runs: batch === 1 ? runs * 2 : runs });
  const imagesPerSecond = batch / timed.best;
  const row = { batch, imagesPerSecond: round(imagesPerSecond), gflops: round((imagesPerSecond * flops) / 1e9, 1), runs: timed.runs.map((s) => round(s)) };
  log(`VGG16 onnx batch ${batch}: ${row.imagesPerSecond} images/s, ${row.gflops} GFLOP/s`);
  return row;
}

async function pipeline(extractor: FeatureExtractor, opts: { paths: string[]; source: string; batch: number; runs: number }): Promise<PipelineResult> {
  const { paths, batch } = opts;
  // The files are read once so that every timed run finds them in the page cache alike.
  await Promise.all(paths.map((p) => readFile(p)));
  const warm = await extractFeatures(paths.slice(0, batch * 2), { extractor, preprocess: 'caffe', batchSize: batch });
  if (warm.skipped.length) throw new Error(`pipeline: ${warm.skipped.length} bench images unreadable, e.g. ${warm.skipped[0].path}: ${warm.skipped[0].reason}`);
  // Tensor-fed passes interleaved with the file runs, so both see the same (shared, noisy) machine.
  const tensors = randomImages(batch, 224);
  const tensorRuns: number[] = [];
  const fileRuns: number[] = [];
  let engine = 0;
  for (let round = 0; round < opts.runs; round++) {
    for (let k = 0; k < 2; k++) {
      const t = performance.now();
      await extractor.run(tensors, batch);
      tensorRuns.push((performance.now() - t) / 1000);
    }
    const t = performance.now();
    const r = await extractFeatures(paths, { extractor, preprocess: 'caffe', batchSize: batch });
    fileRuns.push((performance.now() - t) / 1000);
    if (r.computed !== paths.length) throw new Error(`pipeline: ${r.computed} of ${paths.length} images computed`);
    engine = Math.max(engine, r.engineImagesPerSecond);
  }
  const result = {
    images: paths.length,
    source: opts.source,
    batch,
    imagesPerSecond: round(paths.length / Math.min(...fileRuns)),
    tensorImagesPerSecond: round(batch / Math.min(...tensorRuns)),
    engineImagesPerSecond: round(engine),
    runs: fileRuns.map((s) => round(s, 2)),
  };
  log(`pipeline ${paths.length} JPEGs batch ${batch}: ${result.imagesPerSecond} images/s (tensors: ${result.tensorImagesPerSecond}, engine inside the pipeline: ${result.engineImagesPerSecond})`);
  return result;
}

/** VGG16 conv base (random weights, avg pooling) on onnxruntime: throughput per batch size, then files → features. */
export async function run(opts: {
  batches: number[];
  runs: number;
  threads?: number;
  pipeline?: { paths: string[]; source: string; batch: number; runs: number };
}): Promise<VggOnnxResult> {
  await initBackend('wasm');
  const model = vgg16({ randomSeed: 1 });
  const flopsPerImage = convFlops(model);
  const extractor = await createOnnxExtractor(model, { layer: 'block5_pool', pooling: 'avg', threads: opts.threads });
  try {
    const rows: ThroughputRow[] = [];
    for (const batch of opts.batches) rows.push(await throughput(extractor, batch, opts.runs, flopsPerImage));
    const piped = opts.pipeline ? await pipeline(extractor, opts.pipeline) : undefined;
    return { flopsPerImage, threads: opts.threads ?? (await import('node:os')).availableParallelism(), throughput: rows, pipeline: piped };
  } finally {
    await extractor.dispose();
    model.dispose();
  }
}
