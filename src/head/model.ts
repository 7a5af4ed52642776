import * as tf from '../tf.ts';

export interface HeadOptions {
  /** Units of the hidden layer; 0 = a linear (logistic-regression) head. */
  hidden: number;
  dropout: number;
  seed: number;
}

/** Dense(hidden, relu) → Dropout → Dense(classes, softmax), or Dense(classes, softmax) alone. */
export function buildHead(inputDim: number, classes: number, opts: HeadOptions): tf.Sequential {
  const model = tf.sequential({ name: 'finetune_head' });
  if (opts.hidden > 0) {
    model.add(tf.layers.dense({ inputShape: [inputDim], units: opts.hidden, activation: 'relu', name: 'hidden', kernelInitializer: tf.initializers.glorotUniform({ seed: opts.seed }) }));
    model.add(tf.layers.dropout({ rate: opts.dropout, name: 'dropout' }));
    model.add(tf.layers.dense({ units: classes, activation: 'softmax', name: 'output', kernelInitializer: tf.initializers.glorotUniform({ seed: opts.seed + 1 }) }));
  } else {
    model.add(tf.layers.dense({ inputShape: [inputDim], units: classes, activation: 'softmax', name: 'output', kernelInitializer: tf.initializers.glorotUniform({ seed: opts.seed }) }));
  }
  return model;
}

/** Makes a dropout mask (already scaled by 1/(1−rate)) for `rows` × `units` activations. */
export type DropoutMasks = (rows: number, units: number) => tf.Tensor2D;

/**
 * Forward pass with explicit dropout masks from a seeded generator, so training is
 * repeatable; without masks dropout is the identity, as at inference. Batch normalisation
 * runs in inference mode (layer.apply without `training`).
 */
export function forward(model: tf.Sequential, x: tf.Tensor2D, dropoutMasks?: DropoutMasks): tf.Tensor2D {
  let h: tf.Tensor = x;
  for (const layer of model.layers) {
    if (layer.getClassName() === 'Dropout') {
      if (dropoutMasks) h = tf.mul(h, dropoutMasks(h.shape[0], h.shape[1]!));
      continue;
    }
    h = layer.apply(h) as tf.Tensor;
  }
  return h as tf.Tensor2D;
}

/**
 * Training runs on standardised features; folding (x − μ)/σ into the first Dense layer
 * afterwards gives a head that takes raw features: W' = W/σ, b' = b − (μ/σ)·W.
 */
export function foldStandardization(model: tf.Sequential, mean: Float32Array, std: Float32Array): void {
  const first = model.layers[0];
  const [kernel, bias] = first.getWeights();
  const folded = tf.tidy(() => {
    const invStd = tf.reciprocal(tf.tensor1d(std));
    const w = tf.mul(kernel, tf.expandDims(invStd, 1));
    const shift = tf.squeeze(tf.matMul(tf.expandDims(tf.mul(tf.tensor1d(mean), invStd), 0), kernel), [0]);
    return [w, tf.sub(bias, shift)];
  });
  first.setWeights(folded);
  tf.dispose(folded);
}
