import type { Attr, Constant, GraphNode } from './onnx-graph.ts';

/** Static shapes with -1 for the symbolic batch dimension. */
export type Dims = number[];

/**
 * Static shape of every value of a graph, for the ops the exporter and the backward pass emit.
 * The gradient builders need them (ConvTranspose's output_padding, the slice after a weight
 * gradient, the axes a broadcast gradient is summed over). An op missing here throws.
 */
export function inferShapes(nodes: GraphNode[], constants: Map<string, Constant>, inputs: Map<string, Dims>): Map<string, Dims> {
  const shapes = new Map<string, Dims>(inputs);
  for (const c of constants.values()) if (!shapes.has(c.name)) shapes.set(c.name, c.dims);
  const ints = (name: string): number[] => {
    const c = constants.get(name);
    if (!c || !(c.data instanceof BigInt64Array)) throw new Error(`shape inference: ${name} is not an int64 constant`);
    return Array.from(c.data, Number);
  };
  for (const node of nodes) {
    const ins = node.inputs.map((name) => {
      const s = shapes.get(name);
      if (!s) throw new Error(`shape inference: ${node.opType} reads ${name}, whose shape is unknown`);
      return s;
    });
    const out = outputShape(node, ins, ints);
    shapes.set(node.outputs[0], out);
  }
  return shapes;
}

function num(a: Attr | undefined, fallback: number): number {
  return typeof a === 'number' ? a : fallback;
}

function list(a: Attr | undefined, fallback: number[]): number[] {
  return Array.isArray(a) ? a : fallback;
}

export function broadcast(a: Dims, b: Dims): Dims {
  const rank = Math.max(a.length, b.length);
  const out: Dims = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Spatial output size of a Conv/pool window. */
export function windowOut(size: number, kernel: number, stride: number, dilation: number, padTotal: number): number {
  return Math.floor((size + padTotal - ((kernel - 1) * dilation + 1)) / stride) + 1;
}

function outputShape(node: GraphNode, ins: Dims[], ints: (name: string) => number[]): Dims {
  const a = node.attrs;
  const [x] = ins;
  switch (node.opType) {
    case 'Identity':
    case 'Relu':
    case 'LeakyRelu':
    case 'Clip':
    case 'Sigmoid':
    case 'Tanh':
    case 'Elu':
    case 'Softmax':
    case 'LogSoftmax':
    case 'Neg':
    case 'Exp':
    case 'Log':
    case 'Sqrt':
    case 'Cast':
    case 'Not':
    case 'ScatterElements':
      return x;
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div':
    case 'Sum':
    case 'Max':
    case 'Min':
    case 'Mean':
    case 'Greater':
    case 'Less':
    case 'GreaterOrEqual':
    case 'LessOrEqual':
    case 'Equal':
    case 'And':
      return ins.reduce(broadcast);
    case 'Where':
      return broadcast(broadcast(ins[0], ins[1]), ins[2]);
    case 'Transpose':
      return list(a.perm, [...x.keys()].reverse()).map((p) => x[p]);
    case 'Conv':
    case 'MaxPool':
    case 'AveragePool': {
      const kernel = node.opType === 'Conv' ? ins[1].slice(2) : list(a.kernel_shape, []);
      const strides = list(a.strides, [1, 1]);
      const dilations = list(a.dilations, [1, 1]);
      const pads = list(a.pads, [0, 0, 0, 0]);
      const channels = node.opType === 'Conv' ? ins[1][0] : x[1];
      return [x[0], channels, ...[0, 1].map((i) => windowOut(x[2 + i], kernel[i], strides[i], dilations[i], pads[i] + pads[i + 2]))];
    }
    case 'ConvTranspose': {
      const [, , kh, kw] = ins[1];
      const strides = list(a.strides, [1, 1]);
      const dilations = list(a.dilations, [1, 1]);
      const pads = list(a.pads, [0, 0, 0, 0]);
      const outPad = list(a.output_padding, [0, 0]);
      const group = num(a.group, 1);
      return [x[0], ins[1][1] * group, ...[kh, kw].map((k, i) => strides[i] * (x[2 + i] - 1) + outPad[i] + (k - 1) * dilations[i] + 1 - pads[i] - pads[i + 2])];
    }
    case 'GlobalAveragePool':
    case 'GlobalMaxPool':
      return [x[0], x[1], 1, 1];
    case 'Flatten': {
      const axis = num(a.axis, 1);
      const prod = (d: Dims) => (d.includes(-1) ? -1 : d.reduce((p, q) => p * q, 1));
      return [prod(x.slice(0, axis)), prod(x.slice(axis))];
    }
    case 'Reshape': {
      const target = ints(node.inputs[1]).map((d, i) => (d === 0 ? x[i] : d));
      const known = x.includes(-1) ? null : x.reduce((p, q) => p * q, 1);
      const unknown = target.indexOf(-1);
      if (unknown >= 0 && known !== null) target[unknown] = known / target.reduce((p, q, i) => (i === unknown ? p : p * q), 1);
      return target;
    }
    case 'Concat': {
      const axis = num(a.axis, 0);
      const out = x.slice();
      out[axis] = ins.reduce((s, d) => s + d[axis], 0);
      return out;
    }
    case 'Pad': {
      const pads = ints(node.inputs[1]);
      return x.map((d, i) => (d < 0 ? d : d + pads[i] + pads[i + x.length]));
    }
    case 'Slice': {
      const starts = ints(node.inputs[1]);
      const ends = ints(node.inputs[2]);
      const axes = node.inputs[3] ? ints(node.inputs[3]) : starts.map((_, i) => i);
      const out = x.slice();
      axes.forEach((axis, i) => {
        const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + x[axis] : v, 0), x[axis]);
        out[axis] = Math.max(0, clamp(ends[i]) - clamp(starts[i]));
      });
      return out;
    }
    case 'Gemm': {
      const m = num(a.transA, 0) ? x[1] : x[0];
      const n = num(a.transB, 0) ? ins[1][0] : ins[1][1];
      return [m, n];
    }
    case 'MatMul':
      return [...x.slice(0, -1), ins[1][ins[1].length - 1]];
    case 'ReduceSum':
    case 'ReduceMean': {
      const axes = node.inputs[1] ? ints(node.inputs[1]).map((v) => (v < 0 ? v + x.length : v)) : [...x.keys()];
      const keep = num(a.keepdims, 1);
      return keep ? x.map((d, i) => (axes.includes(i) ? 1 : d)) : x.filter((_, i) => !axes.includes(i));
    }
    case 'Expand':
      return broadcast(x, ints(node.inputs[1]));
    default:
      throw new Error(`shape inference: no rule for ${node.opType}`);
  }
}
