import { INPUT_NAME, OUTPUT_NAME, type OnnxGraph } from './onnx-export.ts';
import type { GraphNode, ValueSpec } from './onnx-graph.ts';
import { addBackward } from './onnx-grad.ts';
import { inferShapes } from './onnx-shapes.ts';

export const LABELS_NAME = 'labels';
export const LOSS_NAME = 'loss';
export const LOGITS_NAME = 'logits';
export const FEATURES_GRAD_NAME = 'features_grad';

/** One Dense layer of the classifier on top of the features; the last one gives the logits. */
export interface HeadLayer {
  /** [in, out], Keras layout. */
  kernel: Float32Array;
  bias: Float32Array;
  relu: boolean;
}

export interface Param {
  name: string;
  dims: number[];
  /** Initial value (the exported weights, or the head's start). */
  data: Float32Array;
}

export interface TrainingModel {
  /** Forward+backward: inputs images, labels, params; outputs loss, logits, `grad:<param>`. */
  trainBytes: Uint8Array;
  /** Forward only, same inputs minus labels: outputs logits. */
  evalBytes: Uint8Array;
  params: Param[];
  gradOf: (param: string) => string;
  /** The nodes of the forward backbone, for re-encoding it with trained weights. */
  backboneNodes: GraphNode[];
  /** Dropout mask inputs of the training graph ([batch, units], fed scaled by 1/keep), earliest first. */
  masks: { name: string; units: number }[];
}

export const maskName = (layer: number): string => `dropout_mask${layer}`;

export const gradName = (param: string): string => `grad:${param}`;

function imagesSpec(graph: OnnxGraph): ValueSpec {
  return { name: INPUT_NAME, dims: graph.inputDims.map((d, i) => (i === 0 ? -1 : d)) };
}

function paramsOf(graph: OnnxGraph, names: string[]): Param[] {
  return names.map((name) => {
    const c = graph.g.constants.get(name);
    if (!c || !(c.data instanceof Float32Array)) throw new Error(`trainable ${name} is not a float constant of the graph`);
    return { name, dims: c.dims, data: c.data };
  });
}

function snapshot(nodes: GraphNode[]): GraphNode[] {
  return nodes.map((n) => ({ ...n, inputs: n.inputs.slice(), outputs: n.outputs.slice() }));
}

/** Names each wanted gradient as a graph output (`grad:<param>`). */
function exposeGradients(graph: OnnxGraph, grads: Map<string, string>, params: Param[]): ValueSpec[] {
  return params.map((p) => {
    const grad = grads.get(p.name);
    if (!grad) throw new Error(`${p.name} does not influence the output; it cannot be trained`);
    graph.g.opInto(graph.g.unique(gradName(p.name)), 'Identity', [grad]);
    return { name: gradName(p.name), dims: p.dims };
  });
}

/**
 * The whole training computation as one ONNX model: backbone → Dense head (logits) → softmax
 * cross-entropy with one-hot labels, and the gradient of the mean loss for every trainable
 * constant of the backbone plus the head. Trainable values are graph inputs, so one session
 * serves every step while the optimizer (in JS) updates them.
 */
export function buildTrainingModel(graph: OnnxGraph, opts: { trainable: string[]; head: HeadLayer[]; dropout?: boolean }): TrainingModel {
  const { g } = graph;
  const backboneNodes = snapshot(g.nodes);
  let x = OUTPUT_NAME;
  let width = graph.featureSize;
  const headNames: string[] = [];
  const masks: { name: string; units: number }[] = [];
  const maskNodes = new Set<GraphNode>();
  opts.head.forEach((layer, i) => {
    const units = layer.bias.length;
    if (layer.kernel.length !== width * units) throw new Error(`head layer ${i}: kernel of ${layer.kernel.length} values does not map ${width} inputs to ${units}`);
    const kernel = g.floats(`head${i}/kernel`, layer.kernel, [width, units]);
    const bias = g.floats(`head${i}/bias`, layer.bias, [units]);
    headNames.push(kernel, bias);
    const last = i === opts.head.length - 1;
    const out = last ? g.opInto(g.unique(LOGITS_NAME), 'Gemm', [x, kernel, bias]) : g.op('Gemm', [x, kernel, bias], {}, `head${i}`);
    x = layer.relu && !last ? g.op('Relu', [out], {}, `head${i}/relu`) : out;
    // Where the Keras head has its Dropout: after each hidden layer (the eval graph skips it).
    if (opts.dropout && !last) {
      const mask = g.unique(maskName(i));
      masks.push({ name: mask, units });
      x = g.op('Mul', [x, mask], {}, `head${i}/dropout`);
      maskNodes.add(g.nodes[g.nodes.length - 1]);
    }
    width = units;
  });
  const k = width;
  const params = [...paramsOf(graph, opts.trainable), ...paramsOf(graph, headNames)];
  const paramInputs = params.map((p) => ({ name: p.name, dims: p.dims }));
  const images = imagesSpec(graph);
  const logitsSpec = { name: LOGITS_NAME, dims: [-1, k] };
  const evalNodes = g.nodes.map((n) => (maskNodes.has(n) ? { ...n, opType: 'Identity', inputs: [n.inputs[0]] } : n));
  const evalBytes = g.encodeGraph([images, ...paramInputs], [logitsSpec], 'finetune-eval', evalNodes);

  const maskInputs = masks.map((m) => ({ name: m.name, dims: [-1, m.units] }));
  const shapes = inferShapes(g.nodes, g.constants, new Map([[INPUT_NAME, images.dims], ...maskInputs.map((m) => [m.name, m.dims] as [string, number[]])]));
  g.unique(LABELS_NAME);
  const logp = g.op('LogSoftmax', [LOGITS_NAME], { axis: 1 }, 'loss/logp');
  const perImage = g.op('ReduceSum', [g.op('Mul', [LABELS_NAME, logp], {}, 'loss/picked'), g.int64s('loss/axes', [1])], { keepdims: 0 }, 'loss/per_image');
  g.opInto(g.unique(LOSS_NAME), 'Neg', [g.op('ReduceMean', [perImage], { keepdims: 0 }, 'loss/mean')]);
  // d(mean CE)/d logits = (softmax − labels) / N, written out rather than differentiated.
  const batch = g.op('Cast', [g.op('Shape', [LOGITS_NAME], { start: 0, end: 1 }, 'loss/batch')], { to: 1 }, 'loss/batch');
  const seed = g.op('Div', [g.op('Sub', [g.op('Softmax', [LOGITS_NAME], { axis: 1 }, 'loss/probs'), LABELS_NAME], {}, 'loss/residual'), batch], {}, 'loss/dlogits');
  shapes.set(LOGITS_NAME, [-1, k]);
  const grads = addBackward(g, shapes, { output: LOGITS_NAME, seed, wrt: params.map((p) => p.name) });
  const gradOutputs = exposeGradients(graph, grads, params);
  const trainBytes = g.encodeGraph(
    [images, { name: LABELS_NAME, dims: [-1, k] }, ...maskInputs, ...paramInputs],
    [{ name: LOSS_NAME, dims: [] }, logitsSpec, ...gradOutputs],
    'finetune-train',
  );
  return { trainBytes, evalBytes, params, gradOf: gradName, backboneNodes, masks };
}

/**
 * For gradient checks: the backbone's features and the gradients of ⟨features, features_grad⟩
 * with respect to the chosen constants and (optionally) the images.
 */
export function buildGradientCheckModel(graph: OnnxGraph, opts: { trainable: string[]; images: boolean }): { bytes: Uint8Array; params: Param[] } {
  const { g } = graph;
  const params = paramsOf(graph, opts.trainable);
  const images = imagesSpec(graph);
  const shapes = inferShapes(g.nodes, g.constants, new Map([[INPUT_NAME, images.dims]]));
  g.unique(FEATURES_GRAD_NAME);
  const wrt = [...params.map((p) => p.name), ...(opts.images ? [INPUT_NAME] : [])];
  const grads = addBackward(g, shapes, { output: OUTPUT_NAME, seed: FEATURES_GRAD_NAME, wrt });
  const outputs = exposeGradients(graph, grads, params);
  if (opts.images) {
    g.opInto(g.unique(gradName(INPUT_NAME)), 'Identity', [grads.get(INPUT_NAME)!]);
    outputs.push({ name: gradName(INPUT_NAME), dims: images.dims });
  }
  const bytes = g.encodeGraph(
    [images, { name: FEATURES_GRAD_NAME, dims: [-1, graph.featureSize] }, ...params.map((p) => ({ name: p.name, dims: p.dims }))],
    [{ name: OUTPUT_NAME, dims: [-1, graph.featureSize] }, ...outputs],
    'finetune-gradcheck',
  );
  return { bytes, params };
}

/**
 * The weights of the exported backbone that can train, grouped by Keras layer in graph order:
 * kernels, biases (folded BatchNormalization included), a standalone BN's scale and shift.
 * Scalars (a ReLU6's bounds, Rescaling's factors) are constants of the architecture, not weights.
 */
export function trainableLayers(graph: OnnxGraph): { layer: string; constants: string[] }[] {
  const out: { layer: string; constants: string[] }[] = [];
  for (const [layer, names] of graph.layerConstants) {
    const constants = names.filter((n) => (graph.g.constants.get(n)?.dims.length ?? 0) > 0);
    if (constants.length > 0) out.push({ layer, constants });
  }
  return out;
}
