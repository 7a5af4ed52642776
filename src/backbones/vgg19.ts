import * as tf from '../tf.ts';

/**
 * VGG19 exactly as keras.applications.vgg19 defines it: VGG16 with a fourth convolution in
 * blocks 3–5, same layer names scheme, so the official Keras weight files load by name.
 * Conv base: 20,024,384 parameters; with the ImageNet top (flatten, fc1, fc2, predictions):
 * 143,667,240. Preprocessing: caffe.
 */
export const VGG19_WEIGHTS = {
  notop: {
    file: 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    md5: '253f8cb515780f3b799900260a226db6',
    bytes: 80_134_624,
  },
  full: {
    file: 'vgg19_weights_tf_dim_ordering_tf_kernels.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5',
    md5: 'cbe5617147190e668d6c5d5026f83318',
    bytes: 574_710_816,
  },
} as const;

export const VGG19_TOP_LAYERS = ['flatten', 'fc1', 'fc2', 'predictions'] as const;

const BLOCKS: ReadonlyArray<{ filters: number; convs: number }> = [
  { filters: 64, convs: 2 },
  { filters: 128, convs: 2 },
  { filters: 256, convs: 4 },
  { filters: 512, convs: 4 },
  { filters: 512, convs: 4 },
];

export interface Vgg19Options {
  includeTop?: boolean;
  inputSize?: readonly [number, number];
  classes?: number;
}

export function vgg19(opts: Vgg19Options = {}): tf.LayersModel {
  const includeTop = opts.includeTop ?? false;
  const [h, w] = opts.inputSize ?? [224, 224];
  // Weights are overwritten by the weight file; zeros skip the cost of random initialisation.
  const init = { kernelInitializer: 'zeros', biasInitializer: 'zeros' } as const;
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
  return tf.model({ inputs: input, outputs: x, name: 'vgg19' });
}
