import * as tf from '../tf.ts';
import type { Pooling } from './types.ts';

/** Global pooling over H and W of an NHWC tensor; flatten keeps Keras's NHWC order. Rank-2 passes through. */
export function pool(x: tf.Tensor, pooling: Pooling): tf.Tensor2D {
  if (x.rank === 2) return x as tf.Tensor2D;
  if (pooling === 'avg') return tf.mean(x, [1, 2]) as tf.Tensor2D;
  if (pooling === 'max') return tf.max(x, [1, 2]) as tf.Tensor2D;
  if (pooling === 'avgmax') return tf.concat([tf.mean(x, [1, 2]), tf.max(x, [1, 2])], 1) as tf.Tensor2D;
  return tf.reshape(x, [x.shape[0], -1]);
}

export function pooledSize(shape: readonly (number | null)[], pooling: Pooling): number {
  const dims = shape.slice(1) as number[];
  if (dims.length === 1) return dims[0];
  if (pooling === 'flatten') return dims.reduce((a, b) => a * b, 1);
  return dims[dims.length - 1] * (pooling === 'avgmax' ? 2 : 1);
}
