import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { FinetuneError } from '../errors.ts';
import { INPUT_NAME, OUTPUT_NAME, exportToOnnx } from './onnx-export.ts';
import type { ExtractorOptions, FeatureExtractor } from './types.ts';

export { exportToOnnx } from './onnx-export.ts';

/**
 * A FeatureExtractor running `model` up to `opts.layer` (then pooling) in onnxruntime-node.
 * Throws UnsupportedLayerError when a layer on that path has no ONNX translation, so the
 * caller can fall back to the tfjs engine.
 */
export async function createOnnxExtractor(model: tf.LayersModel, opts: ExtractorOptions): Promise<FeatureExtractor> {
  const useCuda = opts.device === 'gpu';
  if (useCuda && !cudaAvailable()) {
    throw new FinetuneError(
      'onnxruntime-node here has no CUDA provider; use --device cpu, or reinstall onnxruntime-node with its install script allowed and ONNXRUNTIME_NODE_INSTALL=cuda12 (needs CUDA 12 + cuDNN 9)',
    );
  }
  const { bytes, featureSize, inputSize } = exportToOnnx(model, opts);
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [useCuda ? 'cuda' : 'cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: opts.threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
  });
  const [h, w] = inputSize;
  const meta = session.inputMetadata.find((m) => m.name === INPUT_NAME);
  const channels = meta?.isTensor && typeof meta.shape[3] === 'number' ? meta.shape[3] : 3;
  const perImage = h * w * channels;
  let disposed = false;
  return {
    engine: 'onnx',
    device: useCuda ? 'cuda' : 'cpu',
    featureSize,
    inputSize,
    async run(images, count) {
      if (disposed) throw new FinetuneError('the onnx feature extractor was disposed; create a new one');
      if (!Number.isInteger(count) || count < 0 || images.length !== count * perImage) {
        throw new FinetuneError(`onnx extractor: expected ${count} images of ${h}×${w}×${channels} floats (${count * perImage}), got ${images.length}`);
      }
      if (count === 0) return new Float32Array(0);
      const input = new ort.Tensor('float32', images, [count, h, w, channels]);
      const results = await session.run({ [INPUT_NAME]: input });
      const output = results[OUTPUT_NAME];
      // A copy: ORT may hand out views of buffers it reuses.
      const features = Float32Array.from(output.data as Float32Array);
      output.dispose();
      return features;
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await session.release();
    },
  };
}

/**
 * The Linux onnxruntime-node build lists `cuda` even when its provider library was never
 * installed (npm download step skipped), so the library file beside the binding decides.
 */
function cudaAvailable(): boolean {
  const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
  if (!cuda) return false;
  if (cuda.bundled) return true;
  const require = createRequire(import.meta.url);
  const packageDir = path.dirname(require.resolve('onnxruntime-node/package.json'));
  const binDir = path.join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  const library = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  return existsSync(path.join(binDir, library));
}
