import * as tf from '../tf.ts';
import type { WeightsFile } from './types.ts';

/**
 * MobileNetV2 exactly as keras.applications.mobilenet_v2 defines it: Conv1, bn_Conv1,
 * Conv1_relu, expanded_conv_depthwise …, block_N_expand / _expand_BN / _expand_relu / _pad /
 * _depthwise / _depthwise_BN / _depthwise_relu / _project / _project_BN / _add, Conv_1,
 * Conv_1_bn, out_relu; so Keras's weight files load by name. Preprocessing: tf (x/127.5 − 1).
 *
 * Keras publishes these files without a hash (`get_file(..., file_hash=None)` in
 * mobilenet_v2.py), so `md5` is undefined.
 */
export const MOBILENET_V2_BASE_WEIGHT_PATH = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/';

export const MOBILENET_V2_ALPHAS = [0.35, 0.5, 0.75, 1.0, 1.3, 1.4] as const;
export type MobileNetV2Alpha = (typeof MOBILENET_V2_ALPHAS)[number];

/** alpha 1.0 at 224², the sizes Keras's download log prints. */
export const MOBILENET_V2_WEIGHTS = {
  notop: {
    file: 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5',
    url: `${MOBILENET_V2_BASE_WEIGHT_PATH}mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`,
    md5: undefined,
    bytes: 9_406_464,
  },
  full: {
    file: 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5',
    url: `${MOBILENET_V2_BASE_WEIGHT_PATH}mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5`,
    md5: undefined,
    bytes: 14_536_120,
  },
} as const satisfies { notop: WeightsFile; full: WeightsFile };

/** Keras's file names for other widths and input sizes (96–224; 1.3 and 1.4 only at 224). */
export function mobilenetV2WeightsFile(alpha: MobileNetV2Alpha, rows: number, includeTop: boolean): { file: string; url: string } {
  // Python's f"{float(alpha)}" spelling: 1.0, 0.35, 0.5.
  const text = Number.isInteger(alpha) ? alpha.toFixed(1) : String(alpha);
  const file = `mobilenet_v2_weights_tf_dim_ordering_tf_kernels_${text}_${rows}${includeTop ? '' : '_no_top'}.h5`;
  return { file, url: MOBILENET_V2_BASE_WEIGHT_PATH + file };
}

export const MOBILENET_V2_TOP_LAYERS = ['global_average_pooling2d', 'predictions'] as const;

export interface MobileNetV2Options {
  alpha?: MobileNetV2Alpha;
  includeTop?: boolean;
  inputSize?: readonly [number, number];
  classes?: number;
}

/** Keras's `_make_divisible`: round to a multiple of 8, never more than 10% down. */
export function makeDivisible(v: number, divisor = 8): number {
  let rounded = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (rounded < 0.9 * v) rounded += divisor;
  return rounded;
}

// Weights are overwritten by the weight file; zeros skip the cost of random initialisation.
const ZERO_KERNEL = { kernelInitializer: 'zeros', useBias: false } as const;

function apply(layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]): tf.SymbolicTensor {
  return layer.apply(x) as tf.SymbolicTensor;
}

/** mobilenet_v2.py sets epsilon 1e-3 and momentum 0.999 on every BatchNormalization. */
function bn(name: string): tf.layers.Layer {
  return tf.layers.batchNormalization({ axis: -1, epsilon: 1e-3, momentum: 0.999, name });
}

function relu6(name: string): tf.layers.Layer {
  return tf.layers.reLU({ maxValue: 6, name });
}

/**
 * imagenet_utils.correct_pad: the padding a stride-2 3×3 'valid' convolution needs to match
 * TensorFlow's 'same' — one more row/column at the bottom/right only when the size is even.
 */
function correctPad(x: tf.SymbolicTensor): [[number, number], [number, number]] {
  const [, h, w] = x.shape;
  const adjust = (size: number | null): number => (size == null ? 1 : 1 - (size % 2));
  return [
    [1 - adjust(h), 1],
    [1 - adjust(w), 1],
  ];
}

function invertedResBlock(inputs: tf.SymbolicTensor, expansion: number, stride: 1 | 2, alpha: number, filters: number, id: number): tf.SymbolicTensor {
  const inChannels = inputs.shape[3] as number;
  const pointwiseFilters = makeDivisible(Math.floor(filters * alpha), 8);
  let x = inputs;
  let prefix = `block_${id}_`;
  if (id > 0) {
    x = apply(tf.layers.conv2d({ filters: expansion * inChannels, kernelSize: 1, padding: 'same', ...ZERO_KERNEL, name: `${prefix}expand` }), x);
    x = apply(bn(`${prefix}expand_BN`), x);
    x = apply(relu6(`${prefix}expand_relu`), x);
  } else {
    prefix = 'expanded_conv_';
  }
  if (stride === 2) x = apply(tf.layers.zeroPadding2d({ padding: correctPad(x), name: `${prefix}pad` }), x);
  x = apply(
    tf.layers.depthwiseConv2d({ kernelSize: 3, strides: stride, padding: stride === 1 ? 'same' : 'valid', useBias: false, depthwiseInitializer: 'zeros', name: `${prefix}depthwise` }),
    x,
  );
  x = apply(bn(`${prefix}depthwise_BN`), x);
  x = apply(relu6(`${prefix}depthwise_relu`), x);
  x = apply(tf.layers.conv2d({ filters: pointwiseFilters, kernelSize: 1, padding: 'same', ...ZERO_KERNEL, name: `${prefix}project` }), x);
  x = apply(bn(`${prefix}project_BN`), x);
  if (inChannels === pointwiseFilters && stride === 1) return apply(tf.layers.add({ name: `${prefix}add` }), [inputs, x]);
  return x;
}

/** (filters, stride, expansion) of blocks 0–16. */
const BLOCKS: ReadonlyArray<readonly [number, 1 | 2, number]> = [
  [16, 1, 1],
  [24, 2, 6],
  [24, 1, 6],
  [32, 2, 6],
  [32, 1, 6],
  [32, 1, 6],
  [64, 2, 6],
  [64, 1, 6],
  [64, 1, 6],
  [64, 1, 6],
  [96, 1, 6],
  [96, 1, 6],
  [96, 1, 6],
  [160, 2, 6],
  [160, 1, 6],
  [160, 1, 6],
  [320, 1, 6],
];

export function mobilenetV2(opts: MobileNetV2Options = {}): tf.LayersModel {
  const alpha = opts.alpha ?? 1.0;
  if (!(MOBILENET_V2_ALPHAS as readonly number[]).includes(alpha)) throw new RangeError(`MobileNetV2 alpha ${alpha}: Keras publishes weights for ${MOBILENET_V2_ALPHAS.join(', ')}`);
  const includeTop = opts.includeTop ?? false;
  const [h, w] = opts.inputSize ?? [224, 224];
  const input = tf.input({ shape: [h, w, 3], name: 'input_1' });
  let x = apply(tf.layers.conv2d({ filters: makeDivisible(32 * alpha, 8), kernelSize: 3, strides: 2, padding: 'same', ...ZERO_KERNEL, name: 'Conv1' }), input);
  x = apply(bn('bn_Conv1'), x);
  x = apply(relu6('Conv1_relu'), x);
  BLOCKS.forEach(([filters, stride, expansion], id) => {
    x = invertedResBlock(x, expansion, stride, alpha, filters, id);
  });
  // Width multipliers below 1 are not applied to the last convolution (as in the paper).
  const lastFilters = alpha > 1.0 ? makeDivisible(1280 * alpha, 8) : 1280;
  x = apply(tf.layers.conv2d({ filters: lastFilters, kernelSize: 1, ...ZERO_KERNEL, name: 'Conv_1' }), x);
  x = apply(bn('Conv_1_bn'), x);
  x = apply(relu6('out_relu'), x);
  if (includeTop) {
    x = apply(tf.layers.globalAveragePooling2d({ name: 'global_average_pooling2d' }), x);
    x = apply(tf.layers.dense({ units: opts.classes ?? 1000, activation: 'softmax', kernelInitializer: 'zeros', biasInitializer: 'zeros', name: 'predictions' }), x);
  }
  return tf.model({ inputs: input, outputs: x, name: `mobilenetv2_${alpha.toFixed(2)}_${h}` });
}
