import type * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendChoice } from './backend.ts';
import { FinetuneError } from '../errors.ts';
import { createTfjsExtractor } from './tfjs.ts';
import { UnsupportedLayerError, type Device, type FeatureExtractor, type Pooling } from './types.ts';

export { ENGINES, type EngineChoice } from './types.ts';
import type { EngineChoice } from './types.ts';

export interface EngineOptions {
  engine?: EngineChoice;
  backend?: BackendChoice;
  layer: string;
  pooling: Pooling;
  threads?: number;
  device?: Device;
  /** Told why the preferred engine was not used (one line). */
  onFallback?: (message: string) => void;
}

/**
 * auto: tfjs when tfjs-node-gpu runs on a GPU (the backbone then runs on the GPU), else
 * onnxruntime (≈ 10× tfjs-wasm on CPU), else tfjs for a layer the ONNX exporter lacks.
 */
export async function createExtractor(model: tf.LayersModel, opts: EngineOptions): Promise<FeatureExtractor> {
  const backend = await initBackend(opts.backend ?? 'auto');
  const engine = opts.engine ?? 'auto';
  const base = { layer: opts.layer, pooling: opts.pooling, threads: opts.threads, device: opts.device };
  if (engine === 'tfjs' || (engine === 'auto' && backend === 'node-gpu')) return createTfjsExtractor(model, base);
  try {
    const { createOnnxExtractor } = await import('./onnx.ts');
    return await createOnnxExtractor(model, base);
  } catch (err) {
    if (!(err instanceof UnsupportedLayerError)) throw err;
    const reason = `onnx engine cannot run ${err.message}; using the tfjs engine (${backend})`;
    if (engine === 'onnx') throw new FinetuneError(`--engine onnx: cannot export ${err.message}; use --engine tfjs`);
    opts.onFallback?.(reason);
    return createTfjsExtractor(model, base);
  }
}
