import * as tf from '../tf.ts';
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
      // The CPU backends compute synchronously: small slices with a turn of the event loop
      // between them keep Ctrl-C answered within a slice, not a whole batch.
      const slice = backend === 'node-gpu' || backend === 'node' ? count : 2;
      const pixels = h * w * 3;
      const out = new Float32Array(count * featureSize);
      for (let start = 0; start < count; start += slice) {
        const n = Math.min(slice, count - start);
        const features = tf.tidy(() => pool(sub.predict(tf.tensor4d(images.subarray(start * pixels, (start + n) * pixels), [n, h, w, 3])) as tf.Tensor, opts.pooling));
        try {
          out.set((await features.data()) as Float32Array, start * featureSize);
        } finally {
          features.dispose();
        }
        if (start + n < count) await new Promise((r) => setImmediate(r));
      }
      return out;
    },
    async dispose() {
      // `sub` shares its layers (and weights) with `model`, which the caller owns.
    },
  };
}
