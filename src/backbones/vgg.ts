import * as tf from '../tf.ts';

/** The VGG recipe (Simonyan & Zisserman), as keras.applications writes it, shared by VGG16 and VGG19. */
export interface VggOptions {
  includeTop?: boolean;
  inputSize?: readonly [number, number];
  classes?: number;
  /** Random (Glorot) weights from this seed instead of zeros: for speed measurements without the real file. */
  randomSeed?: number;
}

export const VGG_TOP_LAYERS = ['flatten', 'fc1', 'fc2', 'predictions'] as const;

/** Blocks of 3×3 'same' ReLU convolutions, each closed by a 2×2 max pool; names block<b>_conv<c>, block<b>_pool. */
export function vggNetwork(name: string, convsPerBlock: readonly number[], opts: VggOptions = {}): tf.LayersModel {
  const [h, w] = opts.inputSize ?? [224, 224];
  // Weights are overwritten by the weight file; zeros skip the cost of random initialisation.
  const init =
    opts.randomSeed === undefined
      ? ({ kernelInitializer: 'zeros', biasInitializer: 'zeros' } as const)
      : { kernelInitializer: tf.initializers.glorotUniform({ seed: opts.randomSeed }), biasInitializer: 'zeros' as const };
  const input = tf.input({ shape: [h, w, 3], name: 'input_1' });
  let x: tf.SymbolicTensor = input;
  convsPerBlock.forEach((convs, b) => {
    const filters = [64, 128, 256, 512, 512][b];
    for (let c = 1; c <= convs; c++) {
      x = tf.layers.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu', name: `block${b + 1}_conv${c}`, ...init }).apply(x) as tf.SymbolicTensor;
    }
    x = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: `block${b + 1}_pool` }).apply(x) as tf.SymbolicTensor;
  });
  if (opts.includeTop) {
    x = tf.layers.flatten({ name: 'flatten' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 4096, activation: 'relu', name: 'fc1', ...init }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 4096, activation: 'relu', name: 'fc2', ...init }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: opts.classes ?? 1000, activation: 'softmax', name: 'predictions', ...init }).apply(x) as tf.SymbolicTensor;
  }
  return tf.model({ inputs: input, outputs: x, name });
}
