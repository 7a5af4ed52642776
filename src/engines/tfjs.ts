import * as tf from '@tensorflow/tfjs';
import { initBackend } from './backend.ts';
import { pool, pooledSize } from './pooling.ts';
import type { ExtractorOptions, FeatureExtractor } from './types.ts';

/** The frozen backbone on tfjs: the fallback engine, and the GPU path through tfjs-node-gpu. */
export async function createTfjsExtractor(model: tf.LayersModel, opts: ExtractorOptions): Promise<FeatureExtractor> {
  const backend = await initBackend();
  const output = model.getLayer(opts.layer).output;
  const sub = tf.model({ inputs: model.inputs, outputs: Array.isArray(output) ? output[0] : output });
  const [, h, w] = model.inputs[0].shape as number[];
  const featureSize = pooledSize(sub.outputs[0].shape, opts.pooling);
  return {
    engine: 'tfjs',
    device: `tfjs-${backend}`,
    featureSize,
    inputSize: [h, w],
    async run(images: Float32Array, count: number): Promise<Float32Array> {
      const features = tf.tidy(() => pool(sub.predict(tf.tensor4d(images, [count, h, w, 3])) as tf.Tensor, opts.pooling));
      try {
        return (await features.data()) as Float32Array;
      } finally {
        features.dispose();
      }
    },
    async dispose() {
      // `sub` shares its layers (and weights) with `model`, which the caller owns.
    },
  };
}
