import onnxProto from 'onnx-proto';
import type * as tf from '../tf.ts';
import { preprocessAffine, type Preprocess } from '../data/preprocess.ts';
import { UsageError } from '../errors.ts';
import { PIXELS, PROBABILITIES } from './pixel-model.ts';

const { onnx } = onnxProto;
type GraphProto = onnxProto.onnx.IGraphProto;
type NodeProto = onnxProto.onnx.INodeProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** One backbone as an ONNX graph: preprocessed NHWC float32 images → pooled features [N, featureSize]. */
export interface OnnxFeaturePart {
  bytes: Uint8Array;
  inputName: string;
  outputName: string;
  featureSize: number;
  preprocess: Preprocess;
  /** The batch size the graph fixes, if it does. */
  fixedBatch?: number;
  /** Names the part in messages. */
  label: string;
}

/**
 * One ONNX model: pixels (RGB 0–255, NHWC) → per part its preprocessing (a 3×3 matrix and a
 * bias, the affine map predict applies in JS) → the part's own graph, unchanged but for
 * prefixed names → the parts side by side → the head's Dense layers → ÷ temperature → softmax.
 * Used where a backbone exists only as ONNX (a fine-tuned backbone.onnx, an ONNX-file
 * backbone), so there are no layers to rebuild; the part keeps the opset it was written for.
 */
export function composeOnnxModel(
  parts: OnnxFeaturePart[],
  head: tf.LayersModel,
  opts: { inputSize: readonly [number, number]; temperature: number },
): { model: onnxProto.onnx.ModelProto; batch: number | null; opset: number } {
  const models = parts.map((p) => onnx.ModelProto.decode(p.bytes));
  const opsets = mergeOpsets(models, parts);
  const batches = [...new Set(parts.map((p) => p.fixedBatch).filter((b): b is number => b !== undefined))];
  if (batches.length > 1) throw new UsageError(`the backbones fix different batch sizes (${batches.join(', ')}); they cannot share one pixels input`);
  const batch = batches[0] ?? null;

  const nodes: NodeProto[] = [];
  const initializer: onnxProto.onnx.ITensorProto[] = [];
  const sparseInitializer: onnxProto.onnx.ISparseTensorProto[] = [];
  const valueInfo: onnxProto.onnx.IValueInfoProto[] = [];
  const functions: onnxProto.onnx.IFunctionProto[] = [];
  let counter = 0;
  const op = (opType: string, inputs: string[], attrs: onnxProto.onnx.IAttributeProto[] = [], output = `finetune/${opType}_${counter++}`) => {
    nodes.push({ opType, name: `${output}/node`, input: inputs, output: [output], attribute: attrs });
    return output;
  };
  const floats = (name: string, data: Float32Array, dims: number[]) => {
    initializer.push({ name, dataType: FLOAT, dims, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  };

  const features = parts.map((part, i) => {
    const prefix = `b${i + 1}/`;
    const graph = models[i].graph!;
    renameGraph(graph, (name) => `${prefix}${name}`);
    const { kernel, bias } = preprocessAffine(part.preprocess);
    const scaled = op('MatMul', [PIXELS, floats(`${prefix}preprocess/kernel`, Float32Array.from(kernel.flat()), [3, 3])]);
    op('Add', [scaled, floats(`${prefix}preprocess/bias`, Float32Array.from(bias), [3])], [], `${prefix}${part.inputName}`);
    nodes.push(...(graph.node ?? []));
    initializer.push(...(graph.initializer ?? []));
    sparseInitializer.push(...(graph.sparseInitializer ?? []));
    valueInfo.push(...(graph.valueInfo ?? []));
    functions.push(...(models[i].functions ?? []));
    return `${prefix}${part.outputName}`;
  });
  let x = features.length > 1 ? op('Concat', features, [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }], 'fused_features') : features[0];

  const layers = head.layers.filter((l) => l.getClassName() !== 'InputLayer' && l.getClassName() !== 'Dropout');
  const last = layers[layers.length - 1];
  if (!last || last.getClassName() !== 'Dense' || (last.getConfig() as { activation?: string }).activation !== 'softmax') {
    throw new UsageError(`the model's head does not end in a softmax Dense layer (${last?.getClassName() ?? 'no layers'}); it cannot be exported`);
  }
  for (const layer of layers) {
    const config = layer.getConfig() as { activation?: string; useBias?: boolean };
    if (layer.getClassName() !== 'Dense' || !['relu', 'linear', 'softmax'].includes(config.activation ?? 'linear')) {
      throw new UsageError(`the model's head has a ${layer.getClassName()} layer (${layer.name}, activation ${config.activation ?? 'none'}); an ONNX-graph backbone is exported with Dense heads only`);
    }
    const [kernel, bias] = layer.getWeights();
    const name = `head/${layer.name}`;
    x = op('MatMul', [x, floats(`${name}/kernel`, Float32Array.from(kernel.dataSync()), kernel.shape)]);
    if (bias) x = op('Add', [x, floats(`${name}/bias`, Float32Array.from(bias.dataSync()), bias.shape)]);
    if (config.activation === 'relu') x = op('Relu', [x]);
  }
  // softmax(z/T): the calibration predict applies to the head's probabilities, as logits.
  if (opts.temperature !== 1) x = op('Div', [x, floats('temperature', Float32Array.of(opts.temperature), [])]);
  // Softmax over axis 1 of a 2-D value means the same in every opset (13 changed other ranks only).
  op('Softmax', [x], [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }], PROBABILITIES);

  const [h, w] = opts.inputSize;
  const dim = (d: number | null): onnxProto.onnx.TensorShapeProto.IDimension => (d === null ? { dimParam: 'N' } : { dimValue: d });
  const classes = (last.getConfig() as { units: number }).units;
  const model = onnx.ModelProto.create({
    // IR 7 at least: initializers need not be listed as graph inputs.
    irVersion: Math.max(7, ...models.map((m) => Number(m.irVersion ?? 0))),
    producerName: 'finetune',
    opsetImport: opsets,
    functions,
    docString: 'pixels: float32 [N, H, W, 3], RGB 0-255, already resized as preprocess.json says; probabilities: [N, classes], calibrated, classes in the order of labels.json',
    graph: {
      name: 'finetune',
      node: nodes,
      initializer,
      sparseInitializer,
      valueInfo,
      input: [{ name: PIXELS, type: { tensorType: { elemType: FLOAT, shape: { dim: [dim(batch), dim(h), dim(w), dim(3)] } } } }],
      output: [{ name: PROBABILITIES, type: { tensorType: { elemType: FLOAT, shape: { dim: [dim(batch), dim(classes)] } } } }],
    },
  });
  return { model, batch, opset: Number(opsets.find((o) => o.domain === '')!.version) };
}

/**
 * One opset per domain: the highest any part imports. Parts at different standard opsets
 * share the highest only from 13 on: from 13 to 17 operators changed by new types and new
 * attributes whose defaults keep the old meaning, except RoiAlign (16 changed its default
 * coordinate mode); below 13 Softmax, Squeeze, Split and the reductions mean other things.
 */
function mergeOpsets(models: onnxProto.onnx.ModelProto[], parts: OnnxFeaturePart[]): onnxProto.onnx.IOperatorSetIdProto[] {
  const byDomain = new Map<string, number>();
  const standard = models.map((m) => Number((m.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 1));
  for (const m of models) {
    for (const o of m.opsetImport ?? []) {
      const domain = o.domain === 'ai.onnx' ? '' : (o.domain ?? '');
      byDomain.set(domain, Math.max(byDomain.get(domain) ?? 0, Number(o.version ?? 0)));
    }
  }
  const highest = Math.max(...standard);
  const stuck = parts.find((_, i) => standard[i] !== highest && (standard[i] < 13 || (standard[i] < 16 && usesOp(models[i].graph!, 'RoiAlign'))));
  if (stuck) {
    const list = parts.map((p, i) => `${p.label}: opset ${standard[i]}`).join(', ');
    throw new UsageError(`the fused backbones' ONNX graphs use opsets that cannot be joined (${list}); one ONNX model has one opset: re-export ${stuck.label} at opset ${highest}, or train on the backbones separately`);
  }
  byDomain.set('', highest);
  return [...byDomain].map(([domain, version]) => ({ domain, version }));
}

function usesOp(graph: GraphProto, opType: string): boolean {
  return (graph.node ?? []).some((n) => n.opType === opType || (n.attribute ?? []).some((a) => [a.g, ...(a.graphs ?? [])].some((g) => g && usesOp(g, opType))));
}

/** Every value, initializer and node name in `graph` and its subgraphs through `rename` (empty names mark absent optional inputs and stay). */
function renameGraph(graph: GraphProto, rename: (name: string) => string): void {
  const r = (name: string | null | undefined) => (name ? rename(name) : (name ?? ''));
  for (const node of graph.node ?? []) {
    node.input = (node.input ?? []).map(r);
    node.output = (node.output ?? []).map(r);
    node.name = r(node.name);
    for (const attr of node.attribute ?? []) {
      if (attr.g) renameGraph(attr.g, rename);
      for (const g of attr.graphs ?? []) renameGraph(g, rename);
    }
  }
  for (const t of graph.initializer ?? []) t.name = r(t.name);
  for (const t of graph.sparseInitializer ?? []) {
    if (t.values) t.values.name = r(t.values.name);
    if (t.indices) t.indices.name = r(t.indices.name);
  }
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) v.name = r(v.name);
}
