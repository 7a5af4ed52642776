import type * as tf from '@tensorflow/tfjs';
import { UnsupportedLayerError } from './types.ts';
import type { GraphBuilder } from './onnx-graph.ts';

export type Layer = tf.LayersModel['layers'][number];
export type Shape = (number | null)[];

/**
 * One tensor of the exported graph. `shape` is the Keras (NHWC) shape with the batch first;
 * 4-D values are stored NCHW in the graph, so Conv and pooling run in ONNX's native layout and
 * the data is transposed only where Keras semantics depend on the channel-last order.
 */
export interface Value {
  name: string;
  shape: Shape;
}

export interface BatchNormAffine {
  scale: Float64Array;
  shift: Float64Array;
}

/** What a layer translator sees: its layer, its inputs, and a few graph-level services. */
export interface LayerContext {
  g: GraphBuilder;
  layer: Layer;
  config: Record<string, unknown>;
  inputs: Value[];
  outShape: Shape;
  fail(reason: string): never;
  /**
   * The BatchNormalization that alone consumes this layer's output, as a per-channel affine
   * map; calling it means the translator folds that BN in, and the BN layer is skipped.
   */
  takeFollowingBatchNorm(): BatchNormAffine | null;
  /** Name of a 4-D value in NHWC order (a cached Transpose); other ranks are returned as is. */
  kerasOrder(v: Value): string;
  /** Wraps a value computed in Keras order, moving 4-D results to NCHW. */
  fromKerasOrder(name: string, shape: Shape): Value;
}

export const NHWC_TO_NCHW = [0, 3, 1, 2];
export const NCHW_TO_NHWC = [0, 2, 3, 1];

/** Keras axis of a `rank`-D value → the axis of the stored (NCHW for 4-D) tensor. */
export function storedAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  // NCHW axis i holds NHWC axis NHWC_TO_NCHW[i].
  return rank === 4 ? NHWC_TO_NCHW.indexOf(a) : a;
}

export function unsupported(layer: Layer, reason: string): never {
  throw new UnsupportedLayerError(layer.name, layer.getClassName(), reason);
}

export interface Weight {
  data: Float32Array;
  shape: number[];
}

/**
 * A layer's weight by its Keras short name (`kernel`, `bias`, `gamma`, …). The values are read
 * without disposing anything: `read()` returns the variable itself, which the model still owns.
 */
export function weight(layer: Layer, shortName: string): Weight | null {
  const variable = layer.weights.find((w) => shortNameOf(w.originalName ?? w.name) === shortName);
  if (!variable) return null;
  const tensor = variable.read();
  return { data: Float32Array.from(tensor.dataSync() as Float32Array), shape: tensor.shape.slice() };
}

export function requireWeight(layer: Layer, shortName: string): Weight {
  return weight(layer, shortName) ?? unsupported(layer, `weight "${shortName}" not found`);
}

function shortNameOf(name: string): string {
  // `conv1/kernel`, `conv1/kernel:0` and `conv1/kernel_1` (a uniquified duplicate) all mean `kernel`.
  return name.split('/').pop()!.replace(/:\d+$/, '').replace(/_\d+$/, '');
}

export function batchNormAffine(layer: Layer): BatchNormAffine {
  const config = layer.getConfig();
  const eps = Number(config.epsilon ?? 1e-3);
  const mean = requireWeight(layer, 'moving_mean').data;
  const variance = requireWeight(layer, 'moving_variance').data;
  const gamma = config.scale === false ? null : requireWeight(layer, 'gamma').data;
  const beta = config.center === false ? null : requireWeight(layer, 'beta').data;
  const scale = new Float64Array(mean.length);
  const shift = new Float64Array(mean.length);
  for (let c = 0; c < mean.length; c++) {
    scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(variance[c] + eps);
    shift[c] = (beta ? beta[c] : 0) - mean[c] * scale[c];
  }
  return { scale, shift };
}

export function pair(value: unknown, name: string, layer: Layer): [number, number] {
  if (typeof value === 'number') return [value, value];
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'number')) return [value[0], value[1]];
  return unsupported(layer, `${name} must be a number or a pair, got ${JSON.stringify(value)}`);
}

/** Static [height, width] of a 4-D value; the exporter needs them to turn 'same' into pads. */
export function spatial(v: Value, layer: Layer): [number, number] {
  const [, h, w] = v.shape;
  if (v.shape.length !== 4 || h == null || w == null) unsupported(layer, `needs a 4-D input with a known height and width, got ${JSON.stringify(v.shape)}`);
  return [h, w];
}

/**
 * ONNX pads [top, left, bottom, right] equal to TensorFlow's padding: 'same' puts the odd
 * pixel at the bottom/right, as TF does (ONNX's SAME_UPPER would too, but explicit pads keep
 * the graph independent of how each runtime reads auto_pad).
 */
export function pads2d(padding: unknown, input: [number, number], kernel: [number, number], strides: [number, number], dilation: [number, number], layer: Layer): number[] {
  if (padding === 'valid') return [0, 0, 0, 0];
  if (padding !== 'same') unsupported(layer, `padding "${String(padding)}" is not translated`);
  const before: number[] = [];
  const after: number[] = [];
  for (let i = 0; i < 2; i++) {
    const out = Math.ceil(input[i] / strides[i]);
    const total = Math.max((out - 1) * strides[i] + (kernel[i] - 1) * dilation[i] + 1 - input[i], 0);
    before.push(Math.floor(total / 2));
    after.push(total - Math.floor(total / 2));
  }
  return [...before, ...after];
}

export function requireChannelsLast(cx: LayerContext): void {
  const format = cx.config.dataFormat;
  if (format != null && format !== 'channelsLast') cx.fail(`data format ${String(format)} is not translated (only channelsLast)`);
}
