import type * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.ts';
import type { Pooling } from './types.ts';
import { GraphBuilder } from './onnx-graph.ts';
import { TRANSLATORS } from './onnx-layers.ts';
import {
  NCHW_TO_NHWC,
  NHWC_TO_NCHW,
  batchNormAffine,
  unsupported,
  type BatchNormAffine,
  type Layer,
  type LayerContext,
  type Shape,
  type Value,
} from './onnx-context.ts';

type SymbolicTensor = tf.SymbolicTensor;
type LayerNode = Layer['inboundNodes'][number];

export interface OnnxExport {
  bytes: Uint8Array;
  featureSize: number;
  inputSize: [number, number];
}

export const INPUT_NAME = 'images';
export const OUTPUT_NAME = 'features';

/** The exported graph before encoding, for passes that extend it (the backward pass). */
export interface OnnxGraph {
  g: GraphBuilder;
  /** [0, H, W, C]: the batch dimension is symbolic. */
  inputDims: number[];
  featureSize: number;
  /** The output's dims when it is not [0, featureSize] (an unpooled export). */
  outputDims?: number[];
  /** Keras layer name → the names of the graph constants its weights became (kernel, bias …). */
  layerConstants: Map<string, string[]>;
}

/**
 * Builds an ONNX model computing `model`'s input → output of `layer` → pooling, from the
 * model's own topology and weights. Input "images": float32 NHWC [N, H, W, C]; output
 * "features": [N, featureSize]. Layers after the feature layer are never looked at.
 */
export function exportToOnnx(model: tf.LayersModel, opts: ExportOptions): OnnxExport {
  const { g, inputDims, featureSize, outputDims } = buildOnnxGraph(model, opts);
  const bytes = g.encode({ name: INPUT_NAME, dims: inputDims }, { name: OUTPUT_NAME, dims: outputDims ?? [0, featureSize] });
  return { bytes, featureSize, inputSize: [inputDims[1], inputDims[2]] };
}

/** `unpooled`: the feature layer's own output in Keras order (NHWC maps), for `finetune models export --format onnx`. */
export interface ExportOptions {
  layer: string;
  pooling: Pooling;
  unpooled?: boolean;
}

export function buildOnnxGraph(model: tf.LayersModel, opts: ExportOptions): OnnxGraph {
  const featureLayer = findLayer(model, opts.layer);
  const featureTensor = singleOutput(featureLayer);
  const nodes = nodesUpTo(featureTensor);
  const consumers = consumersOf(nodes, featureTensor);

  const g = new GraphBuilder();
  g.unique(INPUT_NAME);
  const outputName = g.unique(OUTPUT_NAME);
  const values = new Map<number, Value>();
  const layerConstants = new Map<string, string[]>();
  const nhwcOf = new Map<string, string>();
  const kerasOrder = (v: Value): string => {
    if (v.shape.length !== 4) return v.name;
    let name = nhwcOf.get(v.name);
    if (!name) {
      name = g.op('Transpose', [v.name], { perm: NCHW_TO_NHWC }, `${v.name}/nhwc`);
      nhwcOf.set(v.name, name);
    }
    return name;
  };
  const fromKerasOrder = (name: string, shape: Shape): Value =>
    shape.length === 4 ? { name: g.op('Transpose', [name], { perm: NHWC_TO_NCHW }, `${name}/nchw`), shape } : { name, shape };

  let input: { layer: Layer; shape: number[] } | null = null;
  for (const node of nodes) {
    const layer = node.outboundLayer;
    const [output] = node.outputTensors;
    if (values.has(output.id)) continue; // a BatchNormalization already folded into its conv
    const className = layer.getClassName();
    if (className === 'InputLayer') {
      if (input && input.layer !== layer) unsupported(layer, 'the feature layer depends on more than one model input');
      const shape = imageInputShape(layer, output.shape);
      input = { layer, shape };
      values.set(output.id, { name: g.op('Transpose', [INPUT_NAME], { perm: NHWC_TO_NCHW }, 'images/nchw'), shape: output.shape });
      continue;
    }
    const translate = Object.hasOwn(TRANSLATORS, className) ? TRANSLATORS[className] : undefined;
    if (!translate) {
      const nested = layer as unknown as { layers?: unknown };
      unsupported(layer, nested.layers ? 'nested models are not translated' : 'no ONNX translation for this layer type');
    }
    let folded: SymbolicTensor | null = null;
    const cx: LayerContext = {
      g,
      layer,
      config: layer.getConfig() as Record<string, unknown>,
      inputs: node.inputTensors.map((t) => values.get(t.id)!),
      outShape: output.shape,
      fail: (reason) => unsupported(layer, reason),
      takeFollowingBatchNorm: (): BatchNormAffine | null => {
        const bn = foldableBatchNorm(output, consumers);
        if (!bn) return null;
        folded = bn.outputTensors[0];
        return batchNormAffine(bn.outboundLayer);
      },
      kerasOrder,
      fromKerasOrder,
    };
    const before = new Set(g.constants.keys());
    const value = translate(cx);
    layerConstants.set(layer.name, [...g.constants.keys()].filter((k) => !before.has(k) && g.constants.get(k)!.data instanceof Float32Array));
    values.set(output.id, value);
    if (folded) values.set((folded as SymbolicTensor).id, value);
  }
  if (!input) return unsupported(featureLayer, 'does not depend on the model input');

  const features = values.get(featureTensor.id)!;
  if (opts.unpooled) {
    const dims = features.shape.slice(1);
    if (dims.some((d) => d == null)) unsupported(featureLayer, `output shape ${JSON.stringify(features.shape)} is not fully known`);
    g.opInto(outputName, 'Identity', [kerasOrder(features)]);
    return { g, inputDims: input.shape, featureSize: (dims as number[]).reduce((a, b) => a * b, 1), outputDims: [0, ...(dims as number[])], layerConstants };
  }
  const { name: pooled, size } = pool(g, features, opts.pooling, kerasOrder, featureLayer);
  g.opInto(outputName, 'Identity', [pooled]);
  return { g, inputDims: input.shape, featureSize: size, layerConstants };
}

function findLayer(model: tf.LayersModel, name: string): Layer {
  const layer = model.layers.find((l) => l.name === name);
  if (layer) return layer;
  const names = model.layers.map((l) => l.name);
  const shown = names.length > 12 ? [...names.slice(0, 6), '…', ...names.slice(-6)] : names;
  throw new UsageError(`feature layer "${name}" is not in the model; its layers are: ${shown.join(', ')}`);
}

function singleOutput(layer: Layer): SymbolicTensor {
  if (layer.inboundNodes.length !== 1) unsupported(layer, `is used ${layer.inboundNodes.length} times in the model; its output is ambiguous`);
  const outputs = layer.inboundNodes[0].outputTensors;
  if (outputs.length !== 1) unsupported(layer, 'has more than one output');
  return outputs[0];
}

function producer(t: SymbolicTensor): LayerNode {
  return t.sourceLayer.inboundNodes[t.nodeIndex];
}

/** The layer calls `output` depends on, inputs first (depth-first post-order). */
function nodesUpTo(output: SymbolicTensor): LayerNode[] {
  const order: LayerNode[] = [];
  const seen = new Set<number>();
  const stack: { node: LayerNode; expanded: boolean }[] = [{ node: producer(output), expanded: false }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.expanded) {
      stack.pop();
      if (!seen.has(top.node.id)) {
        seen.add(top.node.id);
        order.push(top.node);
      }
      continue;
    }
    top.expanded = true;
    if (top.node.outboundLayer.getClassName() === 'InputLayer') continue; // its node lists itself as input
    if (top.node.outputTensors.length !== 1) unsupported(top.node.outboundLayer, 'has more than one output');
    for (const t of [...top.node.inputTensors].reverse()) {
      const node = producer(t);
      if (!seen.has(node.id)) stack.push({ node, expanded: false });
    }
  }
  return order;
}

/** tensor id → the exported layer calls reading it (the graph output counts as a reader, as null). */
function consumersOf(nodes: LayerNode[], output: SymbolicTensor): Map<number, (LayerNode | null)[]> {
  const consumers = new Map<number, (LayerNode | null)[]>();
  const add = (id: number, node: LayerNode | null) => consumers.set(id, [...(consumers.get(id) ?? []), node]);
  for (const node of nodes) {
    if (node.outboundLayer.getClassName() === 'InputLayer') continue;
    for (const t of node.inputTensors) add(t.id, node);
  }
  add(output.id, null);
  return consumers;
}

/** The BN that is the only reader of `t` and normalizes its channel axis, if there is one. */
function foldableBatchNorm(t: SymbolicTensor, consumers: Map<number, (LayerNode | null)[]>): LayerNode | null {
  const readers = consumers.get(t.id) ?? [];
  if (readers.length !== 1 || !readers[0]) return null;
  const bn = readers[0];
  if (bn.outboundLayer.getClassName() !== 'BatchNormalization' || t.shape.length !== 4) return null;
  const axis = bn.outboundLayer.getConfig().axis;
  const a = Array.isArray(axis) && axis.length === 1 ? Number(axis[0]) : Number(axis ?? -1);
  return a === -1 || a === 3 ? bn : null;
}

function imageInputShape(layer: Layer, shape: Shape): number[] {
  const [, h, w, c] = shape;
  if (shape.length !== 4 || h == null || w == null || c == null) {
    unsupported(layer, `input shape ${JSON.stringify(shape)} is not [batch, height, width, channels] with known sizes`);
  }
  return [0, h, w, c];
}

function pool(g: GraphBuilder, v: Value, pooling: Pooling, kerasOrder: (v: Value) => string, layer: Layer): { name: string; size: number } {
  const dims = v.shape.slice(1);
  if (dims.some((d) => d == null)) unsupported(layer, `output shape ${JSON.stringify(v.shape)} is not fully known`);
  const known = dims as number[];
  if (known.length === 1) return { name: v.name, size: known[0] };
  if (pooling === 'flatten') {
    return { name: g.op('Flatten', [kerasOrder(v)], { axis: 1 }, 'pool/flatten'), size: known.reduce((a, b) => a * b, 1) };
  }
  if (known.length !== 3) unsupported(layer, `${pooling} pooling needs a 4-D output, got ${JSON.stringify(v.shape)}`);
  const global = (kind: 'avg' | 'max') => g.op('Flatten', [g.op(kind === 'avg' ? 'GlobalAveragePool' : 'GlobalMaxPool', [v.name], {}, `pool/${kind}`)], { axis: 1 }, `pool/${kind}/flatten`);
  if (pooling === 'avgmax') return { name: g.op('Concat', [global('avg'), global('max')], { axis: 1 }, 'pool/avgmax'), size: 2 * known[2] };
  return { name: global(pooling), size: known[2] };
}
