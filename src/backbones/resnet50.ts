import * as tf from '../tf.ts';

/**
 * ResNet50 (v1) exactly as keras.applications.resnet defines it: conv1_pad, conv1_conv,
 * conv1_bn, conv1_relu, pool1_pad, pool1_pool, then convS_blockB_{0,1,2,3}_{conv,bn},
 * _{1,2}_relu, _add, _out for stages 2–5; so Keras's weight files load by name. Conv base:
 * 23,587,712 parameters; with the ImageNet top (avg_pool, predictions): 25,636,712.
 * Preprocessing: caffe.
 */
export const RESNET50_WEIGHTS = {
  notop: {
    file: 'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5',
    md5: '4d473c1dd8becc155b73f8504c6f6626',
    bytes: 94_765_736,
  },
  full: {
    file: 'resnet50_weights_tf_dim_ordering_tf_kernels.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5',
    md5: '2cb95161c43110f7111970584f804107',
    bytes: 102_967_424,
  },
} as const;

export const RESNET50_TOP_LAYERS = ['avg_pool', 'predictions'] as const;

export interface ResNet50Options {
  includeTop?: boolean;
  inputSize?: readonly [number, number];
  classes?: number;
}

// Weights are overwritten by the weight file; zeros skip the cost of random initialisation.
const ZEROS = { kernelInitializer: 'zeros', biasInitializer: 'zeros' } as const;

function apply(layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]): tf.SymbolicTensor {
  return layer.apply(x) as tf.SymbolicTensor;
}

/** resnet.py's BatchNormalization: epsilon 1.001e-5 (Keras's default momentum 0.99). */
function bn(name: string): tf.layers.Layer {
  return tf.layers.batchNormalization({ axis: 3, epsilon: 1.001e-5, name });
}

/** residual_block_v1: 1×1 (carries the stride) → 3×3 → 1×1 ×4, plus a projection shortcut in a stage's first block. */
function block(x: tf.SymbolicTensor, filters: number, stride: number, convShortcut: boolean, name: string): tf.SymbolicTensor {
  let shortcut = x;
  if (convShortcut) {
    shortcut = apply(tf.layers.conv2d({ filters: 4 * filters, kernelSize: 1, strides: stride, ...ZEROS, name: `${name}_0_conv` }), x);
    shortcut = apply(bn(`${name}_0_bn`), shortcut);
  }
  let y = apply(tf.layers.conv2d({ filters, kernelSize: 1, strides: stride, ...ZEROS, name: `${name}_1_conv` }), x);
  y = apply(bn(`${name}_1_bn`), y);
  y = apply(tf.layers.activation({ activation: 'relu', name: `${name}_1_relu` }), y);
  y = apply(tf.layers.conv2d({ filters, kernelSize: 3, padding: 'same', ...ZEROS, name: `${name}_2_conv` }), y);
  y = apply(bn(`${name}_2_bn`), y);
  y = apply(tf.layers.activation({ activation: 'relu', name: `${name}_2_relu` }), y);
  y = apply(tf.layers.conv2d({ filters: 4 * filters, kernelSize: 1, ...ZEROS, name: `${name}_3_conv` }), y);
  y = apply(bn(`${name}_3_bn`), y);
  y = apply(tf.layers.add({ name: `${name}_add` }), [shortcut, y]);
  return apply(tf.layers.activation({ activation: 'relu', name: `${name}_out` }), y);
}

/** (stage name, bottleneck filters, blocks, first stride) — ResNet50's 3, 4, 6, 3. */
const STAGES: ReadonlyArray<readonly [string, number, number, number]> = [
  ['conv2', 64, 3, 1],
  ['conv3', 128, 4, 2],
  ['conv4', 256, 6, 2],
  ['conv5', 512, 3, 2],
];

export function resnet50(opts: ResNet50Options = {}): tf.LayersModel {
  const includeTop = opts.includeTop ?? false;
  const [h, w] = opts.inputSize ?? [224, 224];
  const input = tf.input({ shape: [h, w, 3], name: 'input_1' });
  let x = apply(tf.layers.zeroPadding2d({ padding: [[3, 3], [3, 3]], name: 'conv1_pad' }), input);
  x = apply(tf.layers.conv2d({ filters: 64, kernelSize: 7, strides: 2, ...ZEROS, name: 'conv1_conv' }), x);
  x = apply(bn('conv1_bn'), x);
  x = apply(tf.layers.activation({ activation: 'relu', name: 'conv1_relu' }), x);
  x = apply(tf.layers.zeroPadding2d({ padding: [[1, 1], [1, 1]], name: 'pool1_pad' }), x);
  x = apply(tf.layers.maxPooling2d({ poolSize: 3, strides: 2, name: 'pool1_pool' }), x);
  for (const [stage, filters, blocks, stride] of STAGES) {
    x = block(x, filters, stride, true, `${stage}_block1`);
    for (let b = 2; b <= blocks; b++) x = block(x, filters, 1, false, `${stage}_block${b}`);
  }
  if (includeTop) {
    x = apply(tf.layers.globalAveragePooling2d({ name: 'avg_pool' }), x);
    x = apply(tf.layers.dense({ units: opts.classes ?? 1000, activation: 'softmax', ...ZEROS, name: 'predictions' }), x);
  }
  return tf.model({ inputs: input, outputs: x, name: 'resnet50' });
}
