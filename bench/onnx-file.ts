/**
 * Part 8: the same network as an .h5 (registry path, exported to ONNX in memory) and as an
 * ONNX file written by `finetune models export --format onnx` (the --backbone model.onnx
 * path): images/s of both, interleaved in one process so they share the machine's state.
 * MobileNetV2 1.0 with ../shared's converted weights when present, else random weights of
 * the same architecture written as an .h5 (speed does not depend on weight values).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { exportBackboneOnnx } from '../src/backbones/export-onnx.ts';
import { REGISTRY } from '../src/backbones/registry.ts';
import { initBackend } from '../src/engines/backend.ts';
import { openFeatureSource } from '../src/features/source.ts';
import { writeKerasH5 } from '../test/fixtures/keras-h5-writer.ts';
import { noise } from '../test/fixtures/onnx-graphs.ts';
import { SHARED } from './paths.ts';
import { bestOf, log, round } from './timing.ts';

export interface OnnxFileResult {
  network: string;
  batch: number;
  h5ImagesPerSecond: number;
  onnxImagesPerSecond: number;
  /** onnx file / .h5; 1 = the same speed. */
  ratio: number;
  runs: number;
}

export async function run(opts: { batch: number; rounds: number; runs: number }): Promise<OnnxFileResult> {
  await initBackend('auto');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-bench-onnx-file-'));
  try {
    const real = path.join(SHARED, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');
    let weights = real;
    if (!existsSync(real)) {
      weights = path.join(dir, 'mobilenet_v2_random.h5');
      const model = REGISTRY.mobilenet_v2.build({ includeTop: false });
      await writeKerasH5(model, weights, { style: 'slash' });
      model.dispose();
    }
    const file = path.join(dir, 'mobilenet_v2.onnx');
    await exportBackboneOnnx('mobilenet_v2', file, { weights });
    const h5 = await openFeatureSource('mobilenet_v2', { weights, pooling: 'avg' }, { cacheDir: false, engine: 'onnx' });
    const onnx = await openFeatureSource(file, { pooling: 'avg' }, { cacheDir: false });
    try {
      const images = noise(opts.batch * 224 * 224 * 3, 3);
      const best = { h5: Infinity, onnx: Infinity };
      // Interleaved rounds: a load spike on this shared machine hits both sides alike.
      for (let r = 0; r < opts.rounds; r++) {
        best.h5 = Math.min(best.h5, (await bestOf(() => h5.extractor.run(images, opts.batch), { runs: opts.runs })).best);
        best.onnx = Math.min(best.onnx, (await bestOf(() => onnx.extractor.run(images, opts.batch), { runs: opts.runs })).best);
        log(`round ${r + 1}: .h5 ${round(opts.batch / best.h5, 1)} images/s, .onnx ${round(opts.batch / best.onnx, 1)} images/s`);
      }
      return {
        network: `MobileNetV2 1.0 at 224², ${weights === real ? 'converted ImageNet weights' : 'random weights'}`,
        batch: opts.batch,
        h5ImagesPerSecond: round(opts.batch / best.h5, 2),
        onnxImagesPerSecond: round(opts.batch / best.onnx, 2),
        ratio: round(best.h5 / best.onnx, 3),
        runs: opts.rounds * opts.runs,
      };
    } finally {
      await h5.close();
      await onnx.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
