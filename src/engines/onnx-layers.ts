import { applyActivation, relu } from './onnx-activations.ts';
import {
  batchNormAffine,
  pads2d,
  pair,
  requireChannelsLast,
  requireWeight,
  spatial,
  storedAxis,
  weight,
  type LayerContext,
  type Value,
} from './onnx-context.ts';

type Translate = (cx: LayerContext) => Value;

interface ConvSpec {
  input: string;
  /** ONNX layout [out, in/group, kh, kw]. */
  kernel: Float32Array;
  dims: number[];
  bias: Float32Array | null;
  attrs: Record<string, number | number[]>;
}

/** Emits a Conv, folding a following BatchNormalization into its weights when allowed. */
function emitConv(cx: LayerContext, spec: ConvSpec, activation: unknown): Value {
  const outChannels = spec.dims[0];
  let { kernel, bias } = spec;
  const linear = String(activation ?? 'linear') === 'linear';
  const bn = linear ? cx.takeFollowingBatchNorm() : null;
  if (bn) {
    const perChannel = kernel.length / outChannels;
    const folded = new Float32Array(kernel.length);
    const foldedBias = new Float32Array(outChannels);
    for (let o = 0; o < outChannels; o++) {
      const s = bn.scale[o];
      for (let j = o * perChannel; j < (o + 1) * perChannel; j++) folded[j] = kernel[j] * s;
      foldedBias[o] = (bias ? bias[o] : 0) * s + bn.shift[o];
    }
    kernel = folded;
    bias = foldedBias;
  }
  const g = cx.g;
  const name = cx.layer.name;
  const inputs = [spec.input, g.floats(`${name}/kernel`, kernel, spec.dims)];
  if (bias) inputs.push(g.floats(`${name}/bias`, bias, [outChannels]));
  const conv: Value = { name: g.op('Conv', inputs, spec.attrs, name), shape: cx.outShape };
  return applyActivation(cx, conv, activation);
}

/** [kh, kw, in, out] (TF) → [out, in, kh, kw] (ONNX). */
function convKernel(k: Float32Array, [kh, kw, cin, cout]: number[]): Float32Array {
  const out = new Float32Array(k.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < cin; i++)
        for (let o = 0; o < cout; o++) out[((o * cin + i) * kh + y) * kw + x] = k[((y * kw + x) * cin + i) * cout + o];
  return out;
}

/** [kh, kw, in, mult] (TF depthwise) → [in*mult, 1, kh, kw]; TF's output channel c*mult+m is ONNX group c's m-th. */
function depthwiseKernel(k: Float32Array, [kh, kw, cin, mult]: number[]): Float32Array {
  const out = new Float32Array(k.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let c = 0; c < cin; c++)
        for (let m = 0; m < mult; m++) out[((c * mult + m) * kh + y) * kw + x] = k[((y * kw + x) * cin + c) * mult + m];
  return out;
}

function convAttrs(cx: LayerContext, input: Value, kernelSize: [number, number], group: number) {
  requireChannelsLast(cx);
  const strides = pair(cx.config.strides ?? 1, 'strides', cx.layer);
  const dilations = pair(cx.config.dilationRate ?? 1, 'dilationRate', cx.layer);
  const pads = pads2d(cx.config.padding, spatial(input, cx.layer), kernelSize, strides, dilations, cx.layer);
  return { kernel_shape: kernelSize, strides, dilations, pads, group };
}

const conv2d: Translate = (cx) => {
  const [input] = cx.inputs;
  const w = requireWeight(cx.layer, 'kernel');
  const [kh, kw, cin, cout] = w.shape;
  return emitConv(
    cx,
    { input: input.name, kernel: convKernel(w.data, w.shape), dims: [cout, cin, kh, kw], bias: weight(cx.layer, 'bias')?.data ?? null, attrs: convAttrs(cx, input, [kh, kw], 1) },
    cx.config.activation,
  );
};

const depthwiseConv2d: Translate = (cx) => {
  const [input] = cx.inputs;
  const w = requireWeight(cx.layer, 'depthwise_kernel');
  const [kh, kw, cin, mult] = w.shape;
  return emitConv(
    cx,
    { input: input.name, kernel: depthwiseKernel(w.data, w.shape), dims: [cin * mult, 1, kh, kw], bias: weight(cx.layer, 'bias')?.data ?? null, attrs: convAttrs(cx, input, [kh, kw], cin) },
    cx.config.activation,
  );
};

/** Depthwise conv (no bias) then a 1×1 conv that carries the bias, BN fold and activation. */
const separableConv2d: Translate = (cx) => {
  const [input] = cx.inputs;
  const dw = requireWeight(cx.layer, 'depthwise_kernel');
  const pw = requireWeight(cx.layer, 'pointwise_kernel');
  const [kh, kw, cin, mult] = dw.shape;
  const cout = pw.shape[3];
  const g = cx.g;
  const depthwise = g.op(
    'Conv',
    [input.name, g.floats(`${cx.layer.name}/depthwise_kernel`, depthwiseKernel(dw.data, dw.shape), [cin * mult, 1, kh, kw])],
    convAttrs(cx, input, [kh, kw], cin),
    `${cx.layer.name}/depthwise`,
  );
  return emitConv(
    cx,
    { input: depthwise, kernel: convKernel(pw.data, pw.shape), dims: [cout, cin * mult, 1, 1], bias: weight(cx.layer, 'bias')?.data ?? null, attrs: { kernel_shape: [1, 1] } },
    cx.config.activation,
  );
};

const dense: Translate = (cx) => {
  const [input] = cx.inputs;
  const w = requireWeight(cx.layer, 'kernel');
  const [units_in, units] = w.shape;
  const bias = weight(cx.layer, 'bias')?.data ?? null;
  const g = cx.g;
  const name = cx.layer.name;
  const rank = input.shape.length;
  if (rank === 4) {
    // Dense on NHWC acts on the channel axis: exactly a 1×1 conv in NCHW, no transposes needed.
    const kernel = convKernel(w.data, [1, 1, units_in, units]);
    return emitConv(cx, { input: input.name, kernel, dims: [units, units_in, 1, 1], bias, attrs: { kernel_shape: [1, 1] } }, cx.config.activation);
  }
  const kernel = g.floats(`${name}/kernel`, w.data, w.shape);
  let out: string;
  if (rank === 2 && bias) out = g.op('Gemm', [input.name, kernel, g.floats(`${name}/bias`, bias, [units])], {}, name);
  else {
    out = g.op('MatMul', [input.name, kernel], {}, name);
    if (bias) out = g.op('Add', [out, g.floats(`${name}/bias`, bias, [units])], {}, name);
  }
  return applyActivation(cx, { name: out, shape: [...input.shape.slice(0, -1), units] }, cx.config.activation);
};

const batchNormalization: Translate = (cx) => {
  const [input] = cx.inputs;
  const rank = input.shape.length;
  const axis = Array.isArray(cx.config.axis) && cx.config.axis.length === 1 ? Number(cx.config.axis[0]) : Number(cx.config.axis ?? -1);
  if (axis !== -1 && axis !== rank - 1) cx.fail(`axis ${axis} is not translated (only the channel axis)`);
  const { scale, shift } = batchNormAffine(cx.layer);
  // Per-channel constants shaped to broadcast over the stored layout (C,1,1 for NCHW).
  const dims = rank === 4 ? [scale.length, 1, 1] : [scale.length];
  const g = cx.g;
  const name = cx.layer.name;
  const scaled = g.op('Mul', [input.name, g.floats(`${name}/scale`, Float32Array.from(scale), dims)], {}, name);
  return { name: g.op('Add', [scaled, g.floats(`${name}/shift`, Float32Array.from(shift), dims)], {}, name), shape: cx.outShape };
};

function pooling(op: 'MaxPool' | 'AveragePool'): Translate {
  return (cx) => {
    requireChannelsLast(cx);
    const [input] = cx.inputs;
    const kernel = pair(cx.config.poolSize ?? 2, 'poolSize', cx.layer);
    const strides = pair(cx.config.strides ?? kernel, 'strides', cx.layer);
    const pads = pads2d(cx.config.padding ?? 'valid', spatial(input, cx.layer), kernel, strides, [1, 1], cx.layer);
    // Keras 'same' average pooling divides by the number of real pixels in each window.
    const attrs: Record<string, number | number[]> = { kernel_shape: kernel, strides, pads };
    if (op === 'AveragePool') attrs.count_include_pad = 0;
    return { name: cx.g.op(op, [input.name], attrs, cx.layer.name), shape: cx.outShape };
  };
}

function globalPooling(op: 'GlobalAveragePool' | 'GlobalMaxPool'): Translate {
  return (cx) => {
    requireChannelsLast(cx);
    const [input] = cx.inputs;
    spatial(input, cx.layer);
    const pooled = cx.g.op(op, [input.name], {}, cx.layer.name);
    return { name: cx.g.op('Flatten', [pooled], { axis: 1 }, cx.layer.name), shape: cx.outShape };
  };
}

function paddingPairs(cx: LayerContext, key: string): [[number, number], [number, number]] {
  const value = cx.config[key];
  if (Array.isArray(value) && value.length === 2 && value.every((p) => Array.isArray(p) && p.length === 2)) {
    return value as [[number, number], [number, number]];
  }
  const [h, w] = pair(value, key, cx.layer);
  return [[h, h], [w, w]];
}

const zeroPadding2d: Translate = (cx) => {
  requireChannelsLast(cx);
  const [input] = cx.inputs;
  const [[top, bottom], [left, right]] = paddingPairs(cx, 'padding');
  const pads = cx.g.int64s(`${cx.layer.name}/pads`, [0, 0, top, left, 0, 0, bottom, right]);
  return { name: cx.g.op('Pad', [input.name, pads], {}, cx.layer.name), shape: cx.outShape };
};

const cropping2d: Translate = (cx) => {
  requireChannelsLast(cx);
  const [input] = cx.inputs;
  const [h, w] = spatial(input, cx.layer);
  const [[top, bottom], [left, right]] = paddingPairs(cx, 'cropping');
  const g = cx.g;
  const name = cx.layer.name;
  const inputs = [input.name, g.int64s(`${name}/starts`, [top, left]), g.int64s(`${name}/ends`, [h - bottom, w - right]), g.int64s(`${name}/axes`, [2, 3])];
  return { name: g.op('Slice', inputs, {}, name), shape: cx.outShape };
};

const flatten: Translate = (cx) => {
  const [input] = cx.inputs;
  // Keras flattens NHWC: transpose back first or the feature order would be channel-major.
  return { name: cx.g.op('Flatten', [cx.kerasOrder(input)], { axis: 1 }, cx.layer.name), shape: cx.outShape };
};

const reshape: Translate = (cx) => {
  const [input] = cx.inputs;
  const inputDims = input.shape.slice(1);
  // tfjs keeps a -1 (stored as null) target dimension unknown in the symbolic shape; resolve it here.
  const target = (cx.config.targetShape as (number | null)[]).map((d) => (d == null || d < 0 ? -1 : d));
  const unknown = target.indexOf(-1);
  if (unknown >= 0) {
    if (inputDims.some((d) => d == null)) cx.fail(`input shape ${JSON.stringify(input.shape)} is not fully known`);
    const total = (inputDims as number[]).reduce((a, b) => a * b, 1);
    target[unknown] = total / target.reduce((a, b, i) => (i === unknown ? a : a * b), 1);
  }
  const shape = cx.g.int64s(`${cx.layer.name}/shape`, [-1, ...target]);
  return cx.fromKerasOrder(cx.g.op('Reshape', [cx.kerasOrder(input), shape], {}, cx.layer.name), [cx.outShape[0], ...target]);
};

const permute: Translate = (cx) => {
  const [input] = cx.inputs;
  const dims = cx.config.dims as number[];
  return cx.fromKerasOrder(cx.g.op('Transpose', [cx.kerasOrder(input)], { perm: [0, ...dims] }, cx.layer.name), cx.outShape);
};

const concatenate: Translate = (cx) => {
  const rank = cx.inputs[0].shape.length;
  if (cx.inputs.some((v) => v.shape.length !== rank)) cx.fail('inputs of different ranks');
  const axis = storedAxis(Number(cx.config.axis ?? -1), rank);
  return { name: cx.g.op('Concat', cx.inputs.map((v) => v.name), { axis }, cx.layer.name), shape: cx.outShape };
};

function merge(op: 'Sum' | 'Mul' | 'Mean' | 'Max' | 'Min' | 'Sub'): Translate {
  return (cx) => {
    const rank = cx.inputs[0].shape.length;
    // Same rank keeps broadcasting identical in both layouts; mixed ranks would not be.
    if (cx.inputs.some((v) => v.shape.length !== rank)) cx.fail('inputs of different ranks');
    const names = cx.inputs.map((v) => v.name);
    if (op === 'Mul' || op === 'Sub') {
      let acc = names[0];
      for (const next of names.slice(1)) acc = cx.g.op(op, [acc, next], {}, cx.layer.name);
      return { name: acc, shape: cx.outShape };
    }
    return { name: cx.g.op(op, names, {}, cx.layer.name), shape: cx.outShape };
  };
}

const identity: Translate = (cx) => cx.inputs[0];

const activation: Translate = (cx) => applyActivation(cx, cx.inputs[0], cx.config.activation);

const reluLayer: Translate = (cx) => {
  const props = cx.layer as unknown as { negativeSlope?: number; threshold?: number };
  const maxValue = cx.config.maxValue == null ? null : Number(cx.config.maxValue);
  return relu(cx, cx.inputs[0], maxValue, Number(props.negativeSlope ?? 0), Number(props.threshold ?? 0));
};

const leakyRelu: Translate = (cx) => ({
  name: cx.g.op('LeakyRelu', [cx.inputs[0].name], { alpha: { float: Number(cx.config.alpha ?? 0.3) } }, cx.layer.name),
  shape: cx.outShape,
});

const elu: Translate = (cx) => ({
  name: cx.g.op('Elu', [cx.inputs[0].name], { alpha: { float: Number(cx.config.alpha ?? 1) } }, cx.layer.name),
  shape: cx.outShape,
});

const thresholdedRelu: Translate = (cx) => ({
  name: cx.g.op('ThresholdedRelu', [cx.inputs[0].name], { alpha: { float: Number(cx.config.theta ?? 1) } }, cx.layer.name),
  shape: cx.outShape,
});

const softmax: Translate = (cx) => {
  const [input] = cx.inputs;
  const axis = storedAxis(Number(cx.config.axis ?? -1), input.shape.length);
  return { name: cx.g.op('Softmax', [input.name], { axis }, cx.layer.name), shape: cx.outShape };
};

const prelu: Translate = (cx) => {
  const [input] = cx.inputs;
  const alpha = requireWeight(cx.layer, 'alpha');
  let { data, shape } = alpha;
  if (shape.length === 3) {
    // [H, W, C] (1 on shared axes) → [C, H, W] to broadcast over NCHW.
    const [h, w, c] = shape;
    const moved = new Float32Array(data.length);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) moved[(k * h + y) * w + x] = data[(y * w + x) * c + k];
    data = moved;
    shape = [c, h, w];
  }
  return { name: cx.g.op('PRelu', [input.name, cx.g.floats(`${cx.layer.name}/alpha`, data, shape)], {}, cx.layer.name), shape: cx.outShape };
};

const rescaling: Translate = (cx) => {
  const g = cx.g;
  const name = cx.layer.name;
  const scaled = g.op('Mul', [cx.inputs[0].name, g.scalar(`${name}/scale`, Number(cx.config.scale ?? 1))], {}, name);
  return { name: g.op('Add', [scaled, g.scalar(`${name}/offset`, Number(cx.config.offset ?? 0))], {}, name), shape: cx.outShape };
};

/** Keras class name → translator. A class missing here makes the export fail with UnsupportedLayerError. */
export const TRANSLATORS: Readonly<Record<string, Translate>> = Object.freeze({
  Conv2D: conv2d,
  DepthwiseConv2D: depthwiseConv2d,
  SeparableConv2D: separableConv2d,
  Dense: dense,
  BatchNormalization: batchNormalization,
  MaxPooling2D: pooling('MaxPool'),
  AveragePooling2D: pooling('AveragePool'),
  GlobalAveragePooling2D: globalPooling('GlobalAveragePool'),
  GlobalMaxPooling2D: globalPooling('GlobalMaxPool'),
  ZeroPadding2D: zeroPadding2d,
  Cropping2D: cropping2d,
  Flatten: flatten,
  Reshape: reshape,
  Permute: permute,
  Concatenate: concatenate,
  Add: merge('Sum'),
  Multiply: merge('Mul'),
  Subtract: merge('Sub'),
  Average: merge('Mean'),
  Maximum: merge('Max'),
  Minimum: merge('Min'),
  Activation: activation,
  ReLU: reluLayer,
  LeakyReLU: leakyRelu,
  ELU: elu,
  ThresholdedReLU: thresholdedRelu,
  Softmax: softmax,
  PReLU: prelu,
  Rescaling: rescaling,
  // Inference-time no-ops.
  Dropout: identity,
  SpatialDropout1D: identity,
  SpatialDropout2D: identity,
  GaussianNoise: identity,
  GaussianDropout: identity,
  AlphaDropout: identity,
  ActivityRegularization: identity,
});
