import * as tf from '../tf.ts';
import type { WeightsFile } from './types.ts';

/**
 * MobileNet (v1) exactly as keras.applications.mobilenet defines it: the same layer names
 * (conv1, conv1_bn, conv1_relu, conv_dw_N / conv_dw_N_bn / conv_dw_N_relu, conv_pw_N …,
 * conv_pad_N before each strided depthwise convolution) and shapes, so Keras's weight files —
 * and whole models saved by Keras — load by name. Preprocessing: tf (x/127.5 − 1).
 *
 * Keras publishes these files without a hash (`get_file(..., file_hash=None)` in
 * mobilenet.py), so `md5` is undefined: a download cannot be checked against a published
 * value, only recorded by its own checksum.
 */
export const MOBILENET_BASE_WEIGHT_PATH = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/';

export const MOBILENET_ALPHAS = [0.25, 0.5, 0.75, 1.0] as const;
export type MobileNetAlpha = (typeof MOBILENET_ALPHAS)[number];
/** Input sizes Keras has ImageNet weights for (square). */
export const MOBILENET_ROWS = [128, 160, 192, 224] as const;
export type MobileNetRows = (typeof MOBILENET_ROWS)[number];

/**
 * Download sizes at 224². Only alpha 1.0's are known (Keras's download log prints 17,225,924
 * bytes for both of its files, so the no-top file apparently still holds conv_preds). The
 * others are estimates, found nowhere published: 4 bytes per parameter of the with-top network
 * plus the 210,468 bytes of HDF5 overhead of alpha 1.0's file, for both files alike. Only
 * messages and listings show them; downloads are not checked against them.
 */
const BYTES_224: Readonly<Record<MobileNetAlpha, { notop: number; full: number }>> = {
  0.25: { notop: 2_112_644, full: 2_112_644 },
  0.5: { notop: 5_580_612, full: 5_580_612 },
  0.75: { notop: 10_618_372, full: 10_618_372 },
  1.0: { notop: 17_225_924, full: 17_225_924 },
};

/** Keras's file-name spelling of alpha: 0.25 → 2_5, 1.0 → 1_0. */
const ALPHA_TEXT: Readonly<Record<MobileNetAlpha, string>> = { 0.25: '2_5', 0.5: '5_0', 0.75: '7_5', 1.0: '1_0' };

/** Parameters at any input size (a fully convolutional network; the top is a 1×1 convolution). */
export const MOBILENET_PARAMETERS: Readonly<Record<MobileNetAlpha, { notop: number; full: number }>> = {
  0.25: { notop: 218_544, full: 475_544 },
  0.5: { notop: 829_536, full: 1_342_536 },
  0.75: { notop: 1_832_976, full: 2_601_976 },
  1.0: { notop: 3_228_864, full: 4_253_864 },
};

/** The weight files Keras's `MobileNet(alpha, input_shape=(rows, rows, 3))` downloads. */
export function mobilenetWeights(alpha: MobileNetAlpha, rows: MobileNetRows = 224): { notop: WeightsFile; full: WeightsFile } {
  const file = (suffix: string): string => `mobilenet_${ALPHA_TEXT[alpha]}_${rows}_tf${suffix}.h5`;
  const entry = (name: string, bytes: number): WeightsFile => ({ file: name, url: MOBILENET_BASE_WEIGHT_PATH + name, md5: undefined, bytes });
  // Weight shapes do not depend on the input size, so the 224 sizes stand for the others.
  const bytes = BYTES_224[alpha];
  return { notop: entry(file('_no_top'), bytes.notop), full: entry(file(''), bytes.full) };
}

export const MOBILENET_TOP_LAYERS = ['global_average_pooling2d', 'reshape_1', 'dropout', 'conv_preds', 'reshape_2', 'predictions'] as const;

export interface MobileNetOptions {
  alpha?: MobileNetAlpha;
  includeTop?: boolean;
  inputSize?: readonly [number, number];
  classes?: number;
  /** Dropout rate before conv_preds (Keras default 1e-3); only with the top. */
  dropout?: number;
}

// Weights are overwritten by the weight file; zeros skip the cost of random initialisation.
const ZERO_KERNEL = { kernelInitializer: 'zeros', useBias: false } as const;

function apply(layer: tf.layers.Layer, x: tf.SymbolicTensor): tf.SymbolicTensor {
  return layer.apply(x) as tf.SymbolicTensor;
}

/** Keras BatchNormalization defaults (epsilon 1e-3, momentum 0.99), which mobilenet.py keeps. */
function bnRelu6(x: tf.SymbolicTensor, name: string): tf.SymbolicTensor {
  x = apply(tf.layers.batchNormalization({ axis: -1, epsilon: 1e-3, momentum: 0.99, name: `${name}_bn` }), x);
  return apply(tf.layers.reLU({ maxValue: 6, name: `${name}_relu` }), x);
}

function depthwiseBlock(x: tf.SymbolicTensor, pointwiseFilters: number, alpha: number, strides: 1 | 2, id: number): tf.SymbolicTensor {
  if (strides === 2) x = apply(tf.layers.zeroPadding2d({ padding: [[0, 1], [0, 1]], name: `conv_pad_${id}` }), x);
  x = apply(
    tf.layers.depthwiseConv2d({ kernelSize: 3, strides, padding: strides === 1 ? 'same' : 'valid', depthMultiplier: 1, useBias: false, depthwiseInitializer: 'zeros', name: `conv_dw_${id}` }),
    x,
  );
  x = bnRelu6(x, `conv_dw_${id}`);
  x = apply(tf.layers.conv2d({ filters: Math.floor(pointwiseFilters * alpha), kernelSize: 1, padding: 'same', ...ZERO_KERNEL, name: `conv_pw_${id}` }), x);
  return bnRelu6(x, `conv_pw_${id}`);
}

/** (pointwise filters, stride) of blocks 1–13, as in the paper's Table 1. */
const BLOCKS: ReadonlyArray<readonly [number, 1 | 2]> = [
  [64, 1],
  [128, 2],
  [128, 1],
  [256, 2],
  [256, 1],
  [512, 2],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [1024, 2],
  [1024, 1],
];

export function mobilenet(opts: MobileNetOptions = {}): tf.LayersModel {
  const alpha = opts.alpha ?? 1.0;
  if (!(MOBILENET_ALPHAS as readonly number[]).includes(alpha)) throw new RangeError(`MobileNet alpha ${alpha}: Keras publishes weights for ${MOBILENET_ALPHAS.join(', ')}`);
  const includeTop = opts.includeTop ?? false;
  const [h, w] = opts.inputSize ?? [224, 224];
  const input = tf.input({ shape: [h, w, 3], name: 'input_1' });
  let x = apply(tf.layers.conv2d({ filters: Math.floor(32 * alpha), kernelSize: 3, strides: 2, padding: 'same', ...ZERO_KERNEL, name: 'conv1' }), input);
  x = bnRelu6(x, 'conv1');
  BLOCKS.forEach(([filters, strides], i) => {
    x = depthwiseBlock(x, filters, alpha, strides, i + 1);
  });
  if (includeTop) {
    const classes = opts.classes ?? 1000;
    const channels = Math.floor(1024 * alpha);
    // tfjs-layers has no keepdims on global pooling; the reshape back to 1×1 is what older Keras did.
    x = apply(tf.layers.globalAveragePooling2d({ name: 'global_average_pooling2d' }), x);
    x = apply(tf.layers.reshape({ targetShape: [1, 1, channels], name: 'reshape_1' }), x);
    x = apply(tf.layers.dropout({ rate: opts.dropout ?? 1e-3, name: 'dropout' }), x);
    x = apply(tf.layers.conv2d({ filters: classes, kernelSize: 1, padding: 'same', kernelInitializer: 'zeros', biasInitializer: 'zeros', name: 'conv_preds' }), x);
    x = apply(tf.layers.reshape({ targetShape: [classes], name: 'reshape_2' }), x);
    x = apply(tf.layers.activation({ activation: 'softmax', name: 'predictions' }), x);
  }
  return tf.model({ inputs: input, outputs: x, name: `mobilenet_${alpha.toFixed(2)}_${h}` });
}
