import { FinetuneError } from '../errors.ts';
import type { GraphBuilder, GraphNode } from './onnx-graph.ts';
import { windowOut, type Dims } from './onnx-shapes.ts';

/**
 * Reverse-mode differentiation of an ONNX graph into more ONNX nodes of standard operators, so
 * onnxruntime's own kernels (MLAS on the CPU) run the backward pass. One builder per op type,
 * as onnxruntime's training gradient_builder does; every builder here is written for the
 * attributes the exporter (onnx-layers.ts) emits.
 */

interface GradContext {
  g: GraphBuilder;
  node: GraphNode;
  /** Gradient of the node's first output. */
  dy: string;
  shapes: Map<string, Dims>;
  /** want[i]: a gradient for input i is needed. */
  want: boolean[];
  zero: string;
}

type GradBuilder = (cx: GradContext) => (string | null)[];

export class GradientError extends FinetuneError {}

function shapeOf(cx: GradContext, name: string): Dims {
  const s = cx.shapes.get(name);
  if (!s) throw new GradientError(`gradient of ${cx.node.opType}: the shape of ${name} is unknown`);
  return s;
}

function list(v: unknown, fallback: number[]): number[] {
  return Array.isArray(v) ? (v as number[]) : fallback;
}

/** Sums `grad` (shaped like the broadcast result `from`) down to the input shape `to`. */
function reduceTo(g: GraphBuilder, grad: string, from: Dims, to: Dims): string {
  const lead = from.length - to.length;
  const axes: number[] = [];
  for (let i = 0; i < from.length; i++) {
    const t = i < lead ? null : to[i - lead];
    if (t === null || (t === 1 && from[i] !== 1)) axes.push(i);
  }
  if (axes.length === 0) return grad;
  const summed = g.op('ReduceSum', [grad, g.int64s('grad/axes', axes)], { keepdims: 1 }, 'grad/reduce');
  return lead === 0 ? summed : g.op('Reshape', [summed, g.int64s('grad/shape', to)], {}, 'grad/reshape');
}

function reshapeLike(g: GraphBuilder, grad: string, like: string): string {
  return g.op('Reshape', [grad, g.op('Shape', [like], {}, 'grad/shape')], {}, 'grad/reshape');
}

const passThrough: GradBuilder = (cx) => [cx.dy];

const masked = (cx: GradContext, mask: string, otherwise?: string): string => cx.g.op('Where', [mask, cx.dy, otherwise ?? cx.zero], {}, 'grad/where');

const BUILDERS: Record<string, GradBuilder> = {
  Identity: passThrough,
  Relu: (cx) => [masked(cx, cx.g.op('Greater', [cx.node.inputs[0], cx.zero], {}, 'grad/relu_mask'))],
  LeakyRelu: (cx) => {
    const alpha = (cx.node.attrs.alpha as { float: number } | undefined)?.float ?? 0.01;
    const slope = cx.g.op('Mul', [cx.dy, cx.g.scalar('grad/alpha', alpha)], {}, 'grad/leaky');
    return [masked(cx, cx.g.op('Greater', [cx.node.inputs[0], cx.zero], {}, 'grad/leaky_mask'), slope)];
  },
  Clip: (cx) => {
    const [x, lo, hi] = cx.node.inputs;
    const g = cx.g;
    const inside = g.op('And', [g.op('Greater', [x, lo], {}, 'grad/clip_lo'), g.op('Less', [x, hi], {}, 'grad/clip_hi')], {}, 'grad/clip_mask');
    return [masked(cx, inside), null, null];
  },
  Sigmoid: (cx) => {
    const g = cx.g;
    const y = cx.node.outputs[0];
    const slope = g.op('Mul', [y, g.op('Sub', [g.scalar('grad/one', 1), y], {}, 'grad/sigmoid')], {}, 'grad/sigmoid');
    return [g.op('Mul', [cx.dy, slope], {}, 'grad/sigmoid')];
  },
  Tanh: (cx) => {
    const g = cx.g;
    const y = cx.node.outputs[0];
    const slope = g.op('Sub', [g.scalar('grad/one', 1), g.op('Mul', [y, y], {}, 'grad/tanh')], {}, 'grad/tanh');
    return [g.op('Mul', [cx.dy, slope], {}, 'grad/tanh')];
  },
  Add: (cx) => broadcastSum(cx, [1, 1]),
  Sum: (cx) => broadcastSum(cx, cx.node.inputs.map(() => 1)),
  Sub: (cx) => broadcastSum(cx, [1, -1]),
  Mean: (cx) => broadcastSum(cx, cx.node.inputs.map(() => 1 / cx.node.inputs.length)),
  Mul: (cx) => {
    const g = cx.g;
    const [a, b] = cx.node.inputs;
    const y = shapeOf(cx, cx.node.outputs[0]);
    return [
      cx.want[0] ? reduceTo(g, g.op('Mul', [cx.dy, b], {}, 'grad/mul'), y, shapeOf(cx, a)) : null,
      cx.want[1] ? reduceTo(g, g.op('Mul', [cx.dy, a], {}, 'grad/mul'), y, shapeOf(cx, b)) : null,
    ];
  },
  Transpose: (cx) => {
    const perm = list(cx.node.attrs.perm, []);
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [cx.g.op('Transpose', [cx.dy], { perm: inverse }, 'grad/transpose')];
  },
  Flatten: (cx) => [reshapeLike(cx.g, cx.dy, cx.node.inputs[0])],
  Reshape: (cx) => [reshapeLike(cx.g, cx.dy, cx.node.inputs[0]), null],
  Concat: (cx) => {
    const axis = Number(cx.node.attrs.axis ?? 0);
    let offset = 0;
    return cx.node.inputs.map((input, i) => {
      const size = shapeOf(cx, input)[axis];
      const start = offset;
      offset += size;
      if (!cx.want[i]) return null;
      const g = cx.g;
      return g.op('Slice', [cx.dy, g.int64s('grad/starts', [start]), g.int64s('grad/ends', [start + size]), g.int64s('grad/axes', [axis])], {}, 'grad/concat');
    });
  },
  Pad: (cx) => {
    const g = cx.g;
    const [x, padsName] = cx.node.inputs;
    const dims = shapeOf(cx, x);
    const constant = g.constants.get(padsName);
    if (!constant || !(constant.data instanceof BigInt64Array)) throw new GradientError('gradient of Pad: the pads are not a constant');
    const pads = Array.from(constant.data, Number);
    const axes = dims.map((_, i) => i).filter((i) => pads[i] !== 0 || pads[i + dims.length] !== 0);
    if (axes.length === 0) return [cx.dy, null];
    const starts = axes.map((i) => pads[i]);
    const ends = axes.map((i) => pads[i] + dims[i]);
    return [g.op('Slice', [cx.dy, g.int64s('grad/starts', starts), g.int64s('grad/ends', ends), g.int64s('grad/axes', axes)], {}, 'grad/unpad'), null];
  },
  Slice: (cx) => {
    const g = cx.g;
    const [x, startsName, endsName, axesName] = cx.node.inputs;
    const dims = shapeOf(cx, x);
    const read = (name: string) => Array.from(g.constants.get(name)!.data as BigInt64Array, Number);
    const starts = read(startsName);
    const ends = read(endsName);
    const axes = axesName ? read(axesName) : starts.map((_, i) => i);
    const pads = new Array<number>(2 * dims.length).fill(0);
    axes.forEach((axis, i) => {
      const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + dims[axis] : v, 0), dims[axis]);
      pads[axis] = clamp(starts[i]);
      pads[axis + dims.length] = dims[axis] - clamp(ends[i]);
    });
    return [g.op('Pad', [cx.dy, g.int64s('grad/pads', pads)], {}, 'grad/unslice'), null, null, null];
  },
  Gemm: (cx) => {
    const g = cx.g;
    const a = cx.node.attrs;
    if ((a.transA ?? 0) !== 0 || (a.alpha as { float: number } | undefined)?.float !== undefined || (a.beta as { float: number } | undefined)?.float !== undefined) {
      throw new GradientError('gradient of Gemm: only alpha = beta = 1 and an untransposed A are differentiated');
    }
    const transB = Number(a.transB ?? 0);
    const [x, w] = cx.node.inputs;
    return [
      cx.want[0] ? g.op('Gemm', [cx.dy, w], { transB: transB ? 0 : 1 }, 'grad/gemm_dx') : null,
      cx.want[1] ? (transB ? g.op('Gemm', [cx.dy, x], { transA: 1 }, 'grad/gemm_dw') : g.op('Gemm', [x, cx.dy], { transA: 1 }, 'grad/gemm_dw')) : null,
      cx.want[2] ? g.op('ReduceSum', [cx.dy, g.int64s('grad/axes', [0])], { keepdims: 0 }, 'grad/gemm_db') : null,
    ];
  },
  MatMul: (cx) => {
    const g = cx.g;
    const [x, w] = cx.node.inputs;
    if (shapeOf(cx, x).length !== 2 || shapeOf(cx, w).length !== 2) throw new GradientError('gradient of MatMul: only 2-D operands are differentiated');
    return [
      cx.want[0] ? g.op('Gemm', [cx.dy, w], { transB: 1 }, 'grad/matmul_dx') : null,
      cx.want[1] ? g.op('Gemm', [x, cx.dy], { transA: 1 }, 'grad/matmul_dw') : null,
    ];
  },
  Conv: convGrad,
  MaxPool: maxPoolGrad,
  AveragePool: averagePoolGrad,
  GlobalAveragePool: (cx) => {
    const g = cx.g;
    const [, , h, w] = shapeOf(cx, cx.node.inputs[0]);
    const scaled = g.op('Mul', [cx.dy, g.scalar('grad/gap', 1 / (h * w))], {}, 'grad/gap');
    return [g.op('Expand', [scaled, g.op('Shape', [cx.node.inputs[0]], {}, 'grad/shape')], {}, 'grad/gap')];
  },
  GlobalMaxPool: (cx) => {
    const g = cx.g;
    const mask = g.op('Equal', [cx.node.inputs[0], cx.node.outputs[0]], {}, 'grad/gmp_mask');
    return [g.op('Where', [mask, cx.dy, cx.zero], {}, 'grad/gmp')];
  },
};

function broadcastSum(cx: GradContext, signs: number[]): (string | null)[] {
  const g = cx.g;
  const y = shapeOf(cx, cx.node.outputs[0]);
  return cx.node.inputs.map((input, i) => {
    if (!cx.want[i]) return null;
    const scaled = signs[i] === 1 ? cx.dy : g.op(signs[i] === -1 ? 'Neg' : 'Mul', signs[i] === -1 ? [cx.dy] : [cx.dy, g.scalar('grad/scale', signs[i])], {}, 'grad/scale');
    return reduceTo(g, scaled, y, shapeOf(cx, input));
  });
}

interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  pads: number[];
}

function windowOf(cx: GradContext, kernel: number[]): Window {
  const a = cx.node.attrs;
  return { kernel, strides: list(a.strides, [1, 1]), dilations: list(a.dilations, [1, 1]), pads: list(a.pads, [0, 0, 0, 0]) };
}

/** ConvTranspose output_padding that restores the forward input's spatial size exactly. */
function outputPadding(x: Dims, y: Dims, w: Window): number[] {
  return [0, 1].map((i) => x[2 + i] - (w.strides[i] * (y[2 + i] - 1) + (w.kernel[i] - 1) * w.dilations[i] + 1 - w.pads[i] - w.pads[i + 2]));
}

/**
 * Conv: dX is a ConvTranspose of dY with the same weights; dW is itself a convolution, of X with
 * channels and batch swapped, by dY as the kernel, stride and dilation exchanged; groups
 * (depthwise included) stay groups by putting each group's batch in its own channel block.
 */
function convGrad(cx: GradContext): (string | null)[] {
  const g = cx.g;
  const [x, w] = cx.node.inputs;
  const xs = shapeOf(cx, x);
  const ws = shapeOf(cx, w);
  const ys = shapeOf(cx, cx.node.outputs[0]);
  const group = Number(cx.node.attrs.group ?? 1);
  const win = windowOf(cx, ws.slice(2));
  const out: (string | null)[] = [null, null, null];
  const depthwise = group === xs[1] && ws[0] === group;
  if (cx.want[0] && win.strides.every((v) => v === 1) && (group === 1 || depthwise)) {
    // Stride 1: dX is a plain Conv of dY with the kernel flipped (and in/out swapped), which
    // runs on onnxruntime's forward Conv path, faster than its ConvTranspose.
    const swapped = depthwise ? w : g.op('Transpose', [w], { perm: [1, 0, 2, 3] }, 'grad/conv_wt');
    const flipped = g.op('Slice', [swapped, g.int64s('grad/starts', [-1, -1]), g.int64s('grad/ends', [-(2 ** 62), -(2 ** 62)]), g.int64s('grad/axes', [2, 3]), g.int64s('grad/steps', [-1, -1])], {}, 'grad/conv_flip');
    const reach = win.kernel.map((k, i) => (k - 1) * win.dilations[i]);
    const pads = [reach[0] - win.pads[0], reach[1] - win.pads[1], reach[0] - win.pads[2], reach[1] - win.pads[3]];
    out[0] = g.op('Conv', [cx.dy, flipped], { kernel_shape: win.kernel, dilations: win.dilations, pads, group }, 'grad/conv_dx');
  } else if (cx.want[0]) {
    out[0] = g.op(
      'ConvTranspose',
      [cx.dy, w],
      { kernel_shape: win.kernel, strides: win.strides, dilations: win.dilations, pads: win.pads, group, output_padding: outputPadding(xs, ys, win) },
      'grad/conv_dx',
    );
  }
  if (cx.want[1] && group === xs[1] && ws[0] === group) out[1] = depthwiseWeightGrad(cx, xs, ys, win);
  else if (cx.want[1] && group === 1) out[1] = denseWeightGrad(cx, xs, ys, win);
  else if (cx.want[1]) {
    const [, c, h, wd] = xs;
    const perGroup = c / group;
    const [, , ho, wo] = ys;
    let xt: string;
    if (group === 1) xt = g.op('Transpose', [x], { perm: [1, 0, 2, 3] }, 'grad/conv_xt');
    else {
      const split = g.op('Reshape', [x, g.int64s('grad/shape', [-1, group, perGroup, h, wd])], {}, 'grad/conv_xg');
      const moved = g.op('Transpose', [split], { perm: [2, 1, 0, 3, 4] }, 'grad/conv_xt');
      xt = g.op('Reshape', [moved, g.int64s('grad/shape', [perGroup, -1, h, wd])], {}, 'grad/conv_xt');
    }
    const dyt = g.op('Transpose', [cx.dy], { perm: [1, 0, 2, 3] }, 'grad/conv_dyt');
    let dw = g.op('Conv', [xt, dyt], { kernel_shape: [ho, wo], strides: win.dilations, dilations: win.strides, pads: win.pads, group }, 'grad/conv_dw');
    const full = [0, 1].map((i) => windowOut(xs[2 + i], ys[2 + i], win.dilations[i], win.strides[i], win.pads[i] + win.pads[i + 2]));
    if (full[0] !== win.kernel[0] || full[1] !== win.kernel[1]) {
      dw = g.op('Slice', [dw, g.int64s('grad/starts', [0, 0]), g.int64s('grad/ends', win.kernel), g.int64s('grad/axes', [2, 3])], {}, 'grad/conv_dw');
    }
    out[1] = g.op('Transpose', [dw], { perm: [1, 0, 2, 3] }, 'grad/conv_dw');
  }
  if (cx.want[2]) out[2] = g.op('ReduceSum', [cx.dy, g.int64s('grad/axes', [0, 2, 3])], { keepdims: 0 }, 'grad/conv_db');
  return out;
}

/**
 * Ungrouped dW as kh·kw GEMMs, one per tap: X (channels first, padded) shifted to the tap,
 * [C, N·Ho·Wo], times dY as [N·Ho·Wo, M]. The long inner dimension keeps MLAS's GEMM at speed,
 * where the equivalent Conv (dY as a Ho×Wo kernel) ran about 5× slower on VGG16.
 */
function denseWeightGrad(cx: GradContext, xs: Dims, ys: Dims, win: Window): string {
  const g = cx.g;
  const [, c] = xs;
  const [kh, kw] = win.kernel;
  const [, m, ho, wo] = ys;
  const [pt, pl, pb, pr] = win.pads;
  const padded = pt + pl + pb + pr > 0 ? g.op('Pad', [cx.node.inputs[0], g.int64s('grad/pads', [0, 0, pt, pl, 0, 0, pb, pr])], {}, 'grad/dw_pad') : cx.node.inputs[0];
  // Both moves shift a single axis, which onnxruntime transposes fast; a general permutation of the result would not be.
  const xt = g.op('Transpose', [padded], { perm: [0, 2, 3, 1] }, 'grad/dw_xt');
  const dyCols = g.op('Reshape', [g.op('Transpose', [cx.dy], { perm: [1, 0, 2, 3] }, 'grad/dw_dyt'), g.int64s('grad/shape', [m, -1])], {}, 'grad/dw_dyt');
  const rows = g.int64s('grad/shape', [-1, c, 1]);
  const [hp, wp] = [xs[2] + pt + pb, xs[3] + pl + pr];
  const taps: string[] = [];
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++) {
      const y0 = i * win.dilations[0];
      const x0 = j * win.dilations[1];
      const y1 = y0 + (ho - 1) * win.strides[0] + 1;
      const x1 = x0 + (wo - 1) * win.strides[1] + 1;
      const whole = y0 === 0 && x0 === 0 && y1 === hp && x1 === wp && win.strides.every((v) => v === 1);
      const shifted = whole
        ? xt
        : g.op('Slice', [xt, g.int64s('grad/starts', [y0, x0]), g.int64s('grad/ends', [y1, x1]), g.int64s('grad/axes', [1, 2]), g.int64s('grad/steps', win.strides)], {}, 'grad/dw_tap');
      // [M, N·Ho·Wo] × [N·Ho·Wo, C] (as a [.., C, 1] view, so the taps concatenate on the last axis).
      const tap = g.op('Reshape', [shifted, rows], {}, 'grad/dw_tap');
      taps.push(g.op('MatMul', [dyCols, g.op('Reshape', [tap, g.int64s('grad/shape', [-1, c])], {}, 'grad/dw_tap')], {}, 'grad/dw_tap'));
    }
  const stacked = taps.length === 1 ? taps[0] : g.op('Concat', taps.map((t) => g.op('Reshape', [t, g.int64s('grad/shape', [m, c, 1])], {}, 'grad/dw_tap')), { axis: 2 }, 'grad/dw_taps');
  return g.op('Reshape', [stacked, g.int64s('grad/shape', [m, c, kh, kw])], {}, 'grad/dw');
}

/**
 * Depthwise (one filter per channel) dW, tap by tap: each of the kh·kw taps is the sum over
 * batch and positions of dY times X shifted to that tap. The grouped-conv form above would run
 * one tiny GEMM per channel, which MLAS does slowly (about 3× the whole step here).
 */
function depthwiseWeightGrad(cx: GradContext, xs: Dims, ys: Dims, win: Window): string {
  const g = cx.g;
  const [, c] = xs;
  const [kh, kw] = win.kernel;
  const [, , ho, wo] = ys;
  const [pt, pl, pb, pr] = win.pads;
  const x = pt + pl + pb + pr > 0 ? g.op('Pad', [cx.node.inputs[0], g.int64s('grad/pads', [0, 0, pt, pl, 0, 0, pb, pr])], {}, 'grad/dw_pad') : cx.node.inputs[0];
  const axes = g.int64s('grad/axes', [2, 3]);
  const steps = g.int64s('grad/steps', win.strides);
  const sumAxes = g.int64s('grad/axes', [0, 2, 3]);
  const taps: string[] = [];
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++) {
      const y0 = i * win.dilations[0];
      const x0 = j * win.dilations[1];
      const starts = g.int64s('grad/starts', [y0, x0]);
      const ends = g.int64s('grad/ends', [y0 + (ho - 1) * win.strides[0] + 1, x0 + (wo - 1) * win.strides[1] + 1]);
      const shifted = g.op('Slice', [x, starts, ends, axes, steps], {}, 'grad/dw_tap');
      taps.push(g.op('ReduceSum', [g.op('Mul', [shifted, cx.dy], {}, 'grad/dw_tap'), sumAxes], { keepdims: 1 }, 'grad/dw_tap'));
    }
  // taps: kh·kw × [1, C, 1, 1] → [kh·kw, C] → [C, 1, kh, kw]
  const stacked = g.op('Reshape', [g.op('Concat', taps, { axis: 0 }, 'grad/dw_taps'), g.int64s('grad/shape', [kh * kw, c])], {}, 'grad/dw_taps');
  return g.op('Reshape', [g.op('Transpose', [stacked], { perm: [1, 0] }, 'grad/dw_taps'), g.int64s('grad/shape', [c, 1, kh, kw])], {}, 'grad/dw');
}

/** MaxPool: dY goes to the arg-max of each window (MaxPool's own indices), summed where windows overlap. */
function maxPoolGrad(cx: GradContext): (string | null)[] {
  const g = cx.g;
  const node = cx.node;
  if (node.outputs.length < 2) node.outputs.push(g.unique(`${node.outputs[0]}/indices`));
  const flat = (name: string) => g.op('Reshape', [name, g.int64s('grad/flat', [-1])], {}, 'grad/flat');
  const zeros = g.op('ConstantOfShape', [g.op('Shape', [flat(node.inputs[0])], {}, 'grad/shape')], {}, 'grad/zeros');
  const scattered = g.op('ScatterElements', [zeros, flat(node.outputs[1]), flat(cx.dy)], { axis: 0, reduction: 'add' }, 'grad/maxpool');
  return [reshapeLike(g, scattered, node.inputs[0])];
}

/** AveragePool: dY / (pixels counted) spread back over each window, a depthwise ConvTranspose by ones. */
function averagePoolGrad(cx: GradContext): (string | null)[] {
  const g = cx.g;
  const xs = shapeOf(cx, cx.node.inputs[0]);
  const ys = shapeOf(cx, cx.node.outputs[0]);
  const win = windowOf(cx, list(cx.node.attrs.kernel_shape, []));
  const includePad = Number(cx.node.attrs.count_include_pad ?? 0) === 1;
  const [ho, wo] = [ys[2], ys[3]];
  const inverse = new Float32Array(ho * wo);
  const covered = (o: number, axis: number) => {
    const start = o * win.strides[axis] - win.pads[axis];
    const end = start + win.kernel[axis];
    return includePad ? win.kernel[axis] : Math.min(end, xs[2 + axis]) - Math.max(start, 0);
  };
  for (let i = 0; i < ho; i++) for (let j = 0; j < wo; j++) inverse[i * wo + j] = 1 / (covered(i, 0) * covered(j, 1));
  const scaled = g.op('Mul', [cx.dy, g.floats('grad/avgpool_counts', inverse, [1, 1, ho, wo])], {}, 'grad/avgpool');
  const channels = xs[1];
  const ones = g.floats('grad/avgpool_ones', new Float32Array(channels * win.kernel[0] * win.kernel[1]).fill(1), [channels, 1, ...win.kernel]);
  return [
    g.op(
      'ConvTranspose',
      [scaled, ones],
      { kernel_shape: win.kernel, strides: win.strides, pads: win.pads, group: channels, output_padding: outputPadding(xs, ys, { ...win, dilations: [1, 1] }) },
      'grad/avgpool',
    ),
  ];
}

export interface BackwardSpec {
  /** The value differentiated, and the name of its gradient (a graph input or a node output). */
  output: string;
  seed: string;
  /** Values whose gradients are wanted: weights, or the images. */
  wrt: string[];
}

/**
 * Appends the backward pass of `spec.output` to the graph built so far; returns each `wrt`
 * value's gradient name (absent when the value does not influence the output).
 */
export function addBackward(g: GraphBuilder, shapes: Map<string, Dims>, spec: BackwardSpec): Map<string, string> {
  const forward = g.nodes.slice();
  const needs = new Set(spec.wrt);
  for (const node of forward) if (node.inputs.some((i) => needs.has(i))) node.outputs.forEach((o) => needs.add(o));
  const reaches = new Set([spec.output]);
  for (let i = forward.length - 1; i >= 0; i--) if (forward[i].outputs.some((o) => reaches.has(o))) forward[i].inputs.forEach((n) => reaches.add(n));

  const partials = new Map<string, string[]>([[spec.output, [spec.seed]]]);
  const total = (name: string): string | null => {
    const parts = partials.get(name);
    if (!parts || parts.length === 0) return null;
    if (parts.length === 1) return parts[0];
    const summed = g.op('Sum', parts, {}, 'grad/accumulate');
    partials.set(name, [summed]);
    return summed;
  };
  const zero = g.scalar('grad/zero', 0);
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i];
    if (!reaches.has(node.outputs[0]) || !node.inputs.some((n) => needs.has(n))) continue;
    const dy = total(node.outputs[0]);
    if (!dy) continue;
    const build = Object.hasOwn(BUILDERS, node.opType) ? BUILDERS[node.opType] : undefined;
    if (!build) throw new GradientError(`no gradient for the ONNX operator ${node.opType} (value ${node.outputs[0]}); fine-tune fewer layers`);
    const grads = build({ g, node, dy, shapes, want: node.inputs.map((n) => needs.has(n)), zero });
    node.inputs.forEach((input, k) => {
      const grad = grads[k];
      if (grad && needs.has(input)) partials.set(input, [...(partials.get(input) ?? []), grad]);
    });
  }
  const result = new Map<string, string>();
  for (const name of spec.wrt) {
    const grad = total(name);
    if (grad) result.set(name, grad);
  }
  return result;
}
