import * as tf from '../tf.ts';

/**
 * VGG16 exactly as keras.applications.vgg16 defines it: same layer names and shapes, so the
 * official Keras weight files load by name. Conv base: 14,714,688 parameters; with the
 * ImageNet top (flatten, fc1, fc2, predictions): 138,357,544.
 */
export const VGG16_WEIGHTS = {
  notop: {
    file: 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    md5: '6d6bbae143d832006294945121d1f1fc',
    bytes: 58_889_256,
  },
  full: {
    file: 'vgg16_weights_tf_dim_ordering_tf_kernels.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5',
    md5: '64373286793e3c8b2b4e3219cbf3544b',
    bytes: 553_467_096,
  },
} as const;

export const VGG16_TOP_LAYERS = ['flatten', 'fc1', 'fc2', 'predictions'] as const;

const BLOCKS: ReadonlyArray<{ filters: number; convs: number }> = [
  { filters: 64, convs: 2 },
  { filters: 128, convs: 2 },
  { filters: 256, convs: 3 },
  { filters: 512, convs: 3 },
  { filters: 512, convs: 3 },
];

export interface Vgg16Options {
  includeTop?: boolean;
  inputSize?: readonly [number, number];
  classes?: number;
  /** Random (Glorot) weights from this seed instead of zeros: for speed measurements without the real file. */
  randomSeed?: number;
}

export function vgg16(opts: Vgg16Options = {}): tf.LayersModel {
  const includeTop = opts.includeTop ?? false;
  const [h, w] = opts.inputSize ?? [224, 224];
  // Weights are overwritten by the weight file; zeros skip the cost of random initialisation.
  const init =
    opts.randomSeed === undefined
      ? ({ kernelInitializer: 'zeros', biasInitializer: 'zeros' } as const)
      : { kernelInitializer: tf.initializers.glorotUniform({ seed: opts.randomSeed }), biasInitializer: 'zeros' as const };
  const input = tf.input({ shape: [h, w, 3], name: 'input_1' });
  let x: tf.SymbolicTensor = input;
  BLOCKS.forEach(({ filters, convs }, b) => {
    for (let c = 1; c <= convs; c++) {
      x = tf.layers.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu', name: `block${b + 1}_conv${c}`, ...init }).apply(x) as tf.SymbolicTensor;
    }
    x = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: `block${b + 1}_pool` }).apply(x) as tf.SymbolicTensor;
  });
  if (includeTop) {
    x = tf.layers.flatten({ name: 'flatten' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 4096, activation: 'relu', name: 'fc1', ...init }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 4096, activation: 'relu', name: 'fc2', ...init }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: opts.classes ?? 1000, activation: 'softmax', name: 'predictions', ...init }).apply(x) as tf.SymbolicTensor;
  }
  return tf.model({ inputs: input, outputs: x, name: 'vgg16' });
}
