import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engines/backend.ts';
import { createTfjsExtractor } from '../src/engines/tfjs.ts';
import { vgg16 } from '../src/backbones/vgg16.ts';
import { convFlops } from './flops.ts';
import type { ThroughputRow } from './vgg-onnx.ts';
import { bestOf, log, round } from './timing.ts';

export interface VggWasmResult {
  backend: string;
  flopsPerImage: number;
  throughput: ThroughputRow[];
  tensorsLeaked: number;
}

/** The same VGG16 on tfjs-backend-wasm (one thread in Node): ≈ 1 image/s, so batches 1 and 8 only. */
export async function run(opts: { batches: number[]; runs: number }): Promise<VggWasmResult> {
  const backend = await initBackend('wasm');
  if (backend !== 'wasm') throw new Error(`tfjs-wasm unavailable: got backend ${backend}`);
  const model = vgg16({ randomSeed: 1 });
  const flopsPerImage = convFlops(model);
  const extractor = await createTfjsExtractor(model, { layer: 'block5_pool', pooling: 'avg' });
  const before = tf.memory().numTensors;
  const rows: ThroughputRow[] = [];
  try {
    for (const [i, batch] of opts.batches.entries()) {
      const input = Float32Array.from({ length: batch * 224 * 224 * 3 }, () => Math.random() * 255 - 120);
      // One warm-up for the process (at the first batch size): each pass costs seconds here.
      const timed = await bestOf(() => extractor.run(input, batch), { warmup: i === 0 ? 1 : 0, runs: opts.runs });
      const imagesPerSecond = batch / timed.best;
      rows.push({ batch, imagesPerSecond: round(imagesPerSecond), gflops: round((imagesPerSecond * flopsPerImage) / 1e9, 1), runs: timed.runs.map((s) => round(s)) });
      log(`VGG16 tfjs-wasm batch ${batch}: ${rows.at(-1)!.imagesPerSecond} images/s`);
    }
    return { backend: `tfjs-${backend}`, flopsPerImage, throughput: rows, tensorsLeaked: tf.memory().numTensors - before };
  } finally {
    await extractor.dispose();
    model.dispose();
  }
}
