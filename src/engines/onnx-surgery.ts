import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { Pooling } from './types.ts';

const { onnx } = onnxProto;
type ModelProto = onnxProto.onnx.IModelProto;
type GraphProto = onnxProto.onnx.IGraphProto;
type NodeProto = onnxProto.onnx.INodeProto;
type ValueInfo = onnxProto.onnx.IValueInfoProto;
const DataType = onnx.TensorProto.DataType;

export type Layout = 'NCHW' | 'NHWC';

/** The graph input images go into. */
export interface ImageInput {
  name: string;
  layout: Layout;
  /** onnx.TensorProto.DataType of the input: FLOAT or FLOAT16. */
  elemType: number;
  /** null where the graph leaves the size open (then --input-size decides). */
  height: number | null;
  width: number | null;
  /** A batch dimension fixed by the exporter (often 1); null when dynamic. */
  batch: number | null;
}

/** A value's element type and shape (null: a dimension the graph leaves open). */
export interface ValueShape {
  elemType: number;
  dims: (number | null)[];
}

/** Decodes the protobuf; throws when the bytes are not an ONNX model with a graph. */
export function decodeModel(bytes: Uint8Array): onnxProto.onnx.ModelProto {
  const model = onnx.ModelProto.decode(bytes);
  if (!model.graph || (model.graph.node ?? []).length === 0) throw new Error('no graph in it');
  return model;
}

function graphOf(model: ModelProto): GraphProto {
  return model.graph!;
}

function dimsOf(info: ValueInfo | undefined): (number | null)[] | undefined {
  const shape = info?.type?.tensorType?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d) => (d.dimValue != null && Number(d.dimValue) > 0 ? Number(d.dimValue) : null));
}

/** Graph inputs that are not initializers (older exporters list weights as inputs too). */
function realInputs(graph: GraphProto): ValueInfo[] {
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  return (graph.input ?? []).filter((i) => !weights.has(i.name));
}

/**
 * The one 4-D float input with 3 channels: NCHW when the 3 is in position 1 (PyTorch,
 * timm, Hugging Face exports), NHWC in position 3 (tf2onnx). A string says why there is none.
 */
export function imageInput(model: ModelProto): ImageInput | string {
  const inputs = realInputs(graphOf(model));
  if (inputs.length !== 1) return `it has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); finetune feeds one image tensor`;
  const [input] = inputs;
  const elemType = input.type?.tensorType?.elemType ?? 0;
  const dims = dimsOf(input);
  const describe = `input ${input.name} [${(dims ?? []).map((d) => d ?? '?').join(', ')}]`;
  if (elemType !== DataType.FLOAT && elemType !== DataType.FLOAT16) return `${describe} is of type ${DataType[elemType] ?? elemType}, not float32 or float16`;
  if (!dims || dims.length !== 4) return `${describe} is not a 4-D image batch (NCHW or NHWC)`;
  const layout: Layout | null = dims[1] === 3 ? 'NCHW' : dims[3] === 3 ? 'NHWC' : null;
  if (!layout) return `${describe} has no 3-channel (RGB) axis in position 1 (NCHW) or 3 (NHWC)`;
  const [height, width] = layout === 'NCHW' ? [dims[2], dims[3]] : [dims[1], dims[2]];
  return { name: input.name!, layout, elemType, height, width, batch: dims[0] };
}

/** Every node output, in graph order (ONNX stores nodes topologically sorted). */
export function nodeValues(model: ModelProto): { name: string; opType: string }[] {
  return (graphOf(model).node ?? []).flatMap((n) => (n.output ?? []).filter((o) => o !== '').map((name) => ({ name, opType: n.opType ?? '' })));
}

/** Shapes the file already states (value_info, outputs): exporters that ran shape inference write them. */
export function declaredShapes(model: ModelProto): Map<string, ValueShape> {
  const graph = graphOf(model);
  const shapes = new Map<string, ValueShape>();
  for (const info of [...(graph.valueInfo ?? []), ...(graph.output ?? []), ...(graph.input ?? [])]) {
    const dims = dimsOf(info);
    const elemType = info.type?.tensorType?.elemType;
    if (info.name && dims && elemType) shapes.set(info.name, { elemType, dims });
  }
  return shapes;
}

const CLASSIFIER_OPS = new Set(['GlobalAveragePool', 'GlobalMaxPool', 'Flatten', 'Gemm']);
/** Between a feature map and the classifier: only pooling and reshaping, no weights. */
const POOL_OR_RESHAPE = new Set(['GlobalAveragePool', 'GlobalMaxPool', 'Flatten', 'Reshape', 'Squeeze', 'Dropout', 'Identity']);

/**
 * Where a classifier's top begins: the input of the last global pooling / Flatten / Gemm,
 * followed back through pooling and reshaping to the feature map they summarise (so
 * --pooling applies as for the tfjs folders). A network without such a node: its first output.
 */
export function defaultFeatureValue(model: ModelProto): string {
  const graph = graphOf(model);
  const nodes = graph.node ?? [];
  const producer = new Map(nodes.flatMap((n) => (n.output ?? []).map((o) => [o, n] as const)));
  const last = [...nodes].reverse().find((n) => CLASSIFIER_OPS.has(n.opType ?? '') && producer.has(n.input?.[0] ?? ''));
  if (!last) return graph.output![0].name!;
  let value = last.input![0];
  for (let p = producer.get(value); p && POOL_OR_RESHAPE.has(p.opType ?? '') && producer.has(p.input?.[0] ?? ''); p = producer.get(value)) value = p.input![0];
  return beforeClassConv(graph, value, producer) ?? value;
}

/**
 * SqueezeNet and Darknet classify with a 1×1 convolution, one filter per class, before the
 * pooling: that convolution (and its activation) belongs to the top, so the cut goes before it.
 */
function beforeClassConv(graph: GraphProto, value: string, producer: Map<string, NodeProto>): string | undefined {
  const classes = dimsOf(graph.output?.[0])?.at(-1);
  let p = producer.get(value);
  while (p && ['Relu', 'LeakyRelu', 'Identity', 'Dropout'].includes(p.opType ?? '')) p = producer.get(p.input?.[0] ?? '');
  if (!p || p.opType !== 'Conv' || !classes) return undefined;
  const weight = (graph.initializer ?? []).find((t) => t.name === p.input?.[1]);
  const dims = (weight?.dims ?? []).map(Number);
  const input = p.input?.[0];
  return dims.length === 4 && dims[0] === classes && dims[2] === 1 && dims[3] === 1 && input && producer.has(input) ? input : undefined;
}

/** Names a node reads, including outer-scope names its subgraphs (If, Loop, Scan) use. */
function readsOf(node: NodeProto): string[] {
  const names = [...(node.input ?? [])];
  for (const attr of node.attribute ?? []) {
    for (const sub of [attr.g, ...(attr.graphs ?? [])]) {
      if (!sub) continue;
      const inner = new Set([...(sub.initializer ?? []).map((t) => t.name), ...(sub.input ?? []).map((i) => i.name)]);
      for (const n of sub.node ?? []) {
        for (const o of n.output ?? []) inner.add(o);
        for (const r of readsOf(n)) if (!inner.has(r)) names.push(r);
      }
    }
  }
  return names.filter((n) => n !== '');
}

/**
 * The part of the graph that computes `values`: only the nodes they need and the
 * initializers those nodes read; `values` become the outputs. The model is not changed.
 */
export function cutGraph(model: ModelProto, values: readonly string[]): onnxProto.onnx.ModelProto {
  const graph = graphOf(model);
  const nodes = graph.node ?? [];
  const producerIndex = new Map(nodes.flatMap((n, i) => (n.output ?? []).map((o) => [o, i] as const)));
  const keep = new Set<number>();
  const needed = new Set<string>();
  const stack = [...values];
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (needed.has(name)) continue;
    needed.add(name);
    const i = producerIndex.get(name);
    if (i === undefined || keep.has(i)) continue;
    keep.add(i);
    stack.push(...readsOf(nodes[i]));
  }
  const known = new Map([...(graph.valueInfo ?? []), ...(graph.output ?? [])].map((v) => [v.name, v] as const));
  return onnx.ModelProto.create({
    ...model,
    graph: {
      ...graph,
      node: nodes.filter((_, i) => keep.has(i)),
      initializer: (graph.initializer ?? []).filter((t) => needed.has(t.name ?? '')),
      sparseInitializer: (graph.sparseInitializer ?? []).filter((t) => needed.has(t.values?.name ?? '')),
      input: (graph.input ?? []).filter((v) => needed.has(v.name ?? '')),
      output: values.map((name) => known.get(name) ?? { name }),
      valueInfo: (graph.valueInfo ?? []).filter((v) => needed.has(v.name ?? '') && !values.includes(v.name ?? '')),
    },
  });
}

/**
 * Initializers stored beside the model (`model.onnx_data`, torch.onnx.export's
 * external-data format) read into the model, so the one in-memory model holds everything.
 */
export function inlineExternalData(model: ModelProto, dir: string): void {
  const fds = new Map<string, number>();
  try {
    for (const tensor of graphOf(model).initializer ?? []) {
      if (tensor.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
      const entry = Object.fromEntries((tensor.externalData ?? []).map((e) => [e.key, e.value]));
      if (!entry.location || path.isAbsolute(entry.location) || entry.location.split(/[\\/]/).includes('..')) {
        throw new Error(`initializer ${tensor.name} points at "${entry.location}", not a file beside the model`);
      }
      const file = path.join(dir, entry.location);
      let fd = fds.get(file);
      if (fd === undefined) {
        try {
          fd = openSync(file, 'r');
        } catch (err) {
          throw new Error(`its weights file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); keep it beside the model`);
        }
        fds.set(file, fd);
      }
      const offset = Number(entry.offset ?? 0);
      const length = Number(entry.length ?? 0);
      const data = new Uint8Array(length);
      if (readSync(fd, data, 0, length, offset) !== length) throw new Error(`${file} ends before initializer ${tensor.name} (offset ${offset}, ${length} bytes)`);
      tensor.rawData = data;
      tensor.externalData = [];
      tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    }
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
}

/** The files a model's external initializers live in, relative to its folder. */
export function externalDataFiles(model: ModelProto): string[] {
  const files = new Set<string>();
  for (const t of graphOf(model).initializer ?? []) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = (t.externalData ?? []).find((e) => e.key === 'location')?.value;
    if (location) files.add(location);
  }
  return [...files];
}

export const FEATURE_INPUT = 'finetune_images';
export const FEATURE_OUTPUT = 'finetune_features';

const ints = (name: string, values: number[]) => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: values });
const int = (name: string, value: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: value });

/** Appends nodes with fresh output names (prefixed, so they cannot meet the model's own). */
class NodeList {
  readonly nodes: NodeProto[] = [];
  private counter = 0;
  op(opType: string, inputs: string[], attrs: onnxProto.onnx.IAttributeProto[] = [], output = `finetune_${opType}_${this.counter++}`): string {
    this.nodes.push({ opType, name: output, input: inputs, output: [output], attribute: attrs });
    return output;
  }
}

/**
 * `model` cut at `values`, its image input replaced by FEATURE_INPUT: NHWC float32 at
 * `inputSize`, the pipeline's own layout, transposed and cast here to what the model takes.
 */
function fedFromImages(model: ModelProto, input: ImageInput, inputSize: readonly [number, number], values: readonly string[], tail: NodeProto[] = [], outputs?: ValueInfo[]): onnxProto.onnx.ModelProto {
  const cut = cutGraph(model, values);
  const graph = cut.graph!;
  const front = new NodeList();
  let fed = FEATURE_INPUT;
  if (input.layout === 'NCHW') fed = front.op('Transpose', [fed], [ints('perm', [0, 3, 1, 2])]);
  if (input.elemType === DataType.FLOAT16) fed = front.op('Cast', [fed], [int('to', DataType.FLOAT16)]);
  front.nodes.push({ opType: 'Identity', name: 'finetune_feed', input: [fed], output: [input.name] });
  const [h, w] = inputSize;
  return onnx.ModelProto.create({
    ...cut,
    graph: {
      ...graph,
      node: [...front.nodes, ...(graph.node ?? []), ...tail],
      input: [
        { name: FEATURE_INPUT, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [batchDim(input), { dimValue: h }, { dimValue: w }, { dimValue: 3 }] } } } },
        ...(graph.input ?? []).filter((i) => i.name !== input.name),
      ],
      output: outputs ?? graph.output,
      // The sizes stated for the model's own input size no longer hold at another one.
      valueInfo: [],
    },
  });
}

/**
 * A map's layout from its shape where the two equal sides of a square map tell
 * ([C, 7, 7] vs [7, 7, C]), else the input's (tf2onnx keeps TensorFlow's NHWC between ops).
 */
function mapLayout([a, b, c]: number[], inputLayout: Layout): Layout {
  if (b === c && a !== b) return 'NCHW';
  if (a === b && c !== a) return 'NHWC';
  return inputLayout;
}

function batchDim(input: ImageInput): onnxProto.onnx.TensorShapeProto.IDimension {
  return input.batch ? { dimValue: input.batch } : { dimParam: 'N' };
}

/** `model` with `values` as its outputs, fed by NHWC float32 images: run once to learn their shapes. */
export function probeGraph(model: ModelProto, input: ImageInput, inputSize: readonly [number, number], values: readonly string[]): Uint8Array {
  return onnx.ModelProto.encode(fedFromImages(model, input, inputSize, values, [], values.map((name) => ({ name })))).finish();
}

export interface FeatureGraphOptions {
  input: ImageInput;
  inputSize: readonly [number, number];
  /** The value whose activations become the features, and its shape at inputSize. */
  value: string;
  shape: ValueShape;
  pooling: Pooling;
}

/**
 * `model` cut at `value`, fed by NHWC float32 images and ending in pooled float32
 * features FEATURE_OUTPUT [N, size]. Only ops whose attributes are the same in every opset
 * since 6 are added, so the model keeps its own opset.
 */
export function featureGraph(model: ModelProto, opts: FeatureGraphOptions): { bytes: Uint8Array; featureSize: number } {
  const tail = new NodeList();
  let v = opts.value;
  if (opts.shape.elemType !== DataType.FLOAT) v = tail.op('Cast', [v], [int('to', DataType.FLOAT)]);
  const dims = opts.shape.dims.slice(1);
  if (dims.some((d) => d == null)) throw new Error(`${opts.value} has shape [${opts.shape.dims.map((d) => d ?? '?').join(', ')}] at ${opts.inputSize.join('×')}: its size must be known`);
  const known = dims as number[];
  let featureSize: number;
  if (known.length === 1) featureSize = known[0];
  else if (opts.pooling === 'flatten') {
    v = tail.op('Flatten', [v], [int('axis', 1)]);
    featureSize = known.reduce((a, b) => a * b, 1);
  } else {
    if (known.length !== 2 && known.length !== 3) throw new Error(`${opts.value} is ${known.length + 1}-D; pool a 2-D, 3-D or 4-D value`);
    // Channels first for the global poolings: NHWC maps (tf2onnx keeps TF's layout) and
    // transformer tokens [N, T, D] are transposed so the channel / embedding axis is 1.
    const channelsLast = known.length === 2 || mapLayout(known, opts.input.layout) === 'NHWC';
    const channels = channelsLast ? known[known.length - 1] : known[0];
    if (channelsLast) v = tail.op('Transpose', [v], [ints('perm', known.length === 2 ? [0, 2, 1] : [0, 3, 1, 2])]);
    const global = (kind: 'GlobalAveragePool' | 'GlobalMaxPool') => tail.op('Flatten', [tail.op(kind, [v])], [int('axis', 1)]);
    if (opts.pooling === 'avgmax') {
      v = tail.op('Concat', [global('GlobalAveragePool'), global('GlobalMaxPool')], [int('axis', 1)]);
      featureSize = 2 * channels;
    } else {
      v = global(opts.pooling === 'avg' ? 'GlobalAveragePool' : 'GlobalMaxPool');
      featureSize = channels;
    }
  }
  tail.nodes.push({ opType: 'Identity', name: 'finetune_output', input: [v], output: [FEATURE_OUTPUT] });
  const output = { name: FEATURE_OUTPUT, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [batchDim(opts.input), { dimValue: featureSize }] } } } };
  const wrapped = fedFromImages(model, opts.input, opts.inputSize, [opts.value], tail.nodes, [output]);
  return { bytes: onnx.ModelProto.encode(wrapped).finish(), featureSize };
}

/** Names close to `wanted` (shared prefix / substring first), for "no such layer" errors. */
export function nearestNames(names: readonly string[], wanted: string, count = 5): string[] {
  const w = wanted.toLowerCase();
  const score = (name: string) => {
    const n = name.toLowerCase();
    if (n.includes(w) || w.includes(n)) return 0;
    let prefix = 0;
    while (prefix < n.length && prefix < w.length && n[prefix] === w[prefix]) prefix++;
    return 1 + editDistance(n, w) - prefix;
  };
  return [...names].sort((a, b) => score(a) - score(b)).slice(0, count);
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}
