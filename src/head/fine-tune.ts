import * as tf from '../tf.ts';
import { UsageError } from '../errors.ts';
import type { Pooling } from '../engines/types.ts';

/**
 * Fine-tuning: the last N layers of the backbone that have weights are trained with the head.
 * Everything before them is frozen and runs once: its output (the "cut") is what the feature
 * cache stores, so the saved head starts at the cut and carries the unfrozen layers.
 */
export interface FineTunePlan {
  /** The frozen part ends here; its output feeds the first unfrozen layer. */
  cutLayer: string;
  /** Unfrozen layers in order, from after the cut up to the feature layer. */
  layers: tf.layers.Layer[];
  /** Output shape of the cut layer without the batch: [h, w, c]. */
  mapShape: number[];
}

function inbound(layer: tf.layers.Layer): tf.layers.Layer[] {
  return layer.inboundNodes[0]?.inboundLayers ?? [];
}

/** Layer kinds whose gradients tfjs's wasm backend lacks. */
const NEEDS_NATIVE_GRADIENTS = new Set(['Conv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'MaxPooling2D', 'AveragePooling2D']);

export function planFineTune(model: tf.LayersModel, featureLayer: string, opts: { layers?: number; blocks?: number; backend?: string }): FineTunePlan {
  const chain: tf.layers.Layer[] = [];
  let layer: tf.layers.Layer | undefined = model.getLayer(featureLayer);
  const wanted = opts.blocks !== undefined ? blockLayerCount(model, featureLayer, opts.blocks) : (opts.layers ?? 0);
  let weighted = 0;
  while (layer && weighted < wanted) {
    const parents = inbound(layer);
    if (parents.length === 0) break;
    if (parents.length !== 1) {
      throw new UsageError(`--fine-tune ${wanted}: layer ${layer.name} (${layer.getClassName()}) joins several branches; fine-tuning needs a chain of layers, so choose fewer layers`);
    }
    chain.unshift(layer);
    if (layer.trainableWeights.length > 0) weighted++;
    layer = parents[0];
  }
  if (!layer || layer.getClassName() === 'InputLayer' || weighted < wanted) {
    const available = model.layers.slice(0, model.layers.findIndex((l) => l.name === featureLayer) + 1).filter((l) => l.trainableWeights.length > 0).length;
    throw new UsageError(`--fine-tune ${wanted}: ${featureLayer} is preceded by ${available} layers with weights, and one must stay frozen; fine-tune at most ${available - 1}`);
  }
  const blocked = chain.find((l) => NEEDS_NATIVE_GRADIENTS.has(l.getClassName()) && !isPointwise(l));
  if (blocked && (opts.backend === 'wasm' || opts.backend === 'cpu')) {
    throw new UsageError(
      `--fine-tune: training ${blocked.name} (${blocked.getClassName()}) needs tfjs-node or tfjs-node-gpu (the ${opts.backend} backend has no gradient for it${opts.backend === 'cpu' ? ' fast enough' : ''}); install one, or fine-tune fewer layers`,
    );
  }
  const shape = layer.outputShape as (number | null)[];
  if (shape.length !== 4) throw new UsageError(`--fine-tune: the cut at ${layer.name} is not an image feature map (shape [${shape.join(', ')}])`);
  return { cutLayer: layer.name, layers: chain, mapShape: shape.slice(1) as number[] };
}

/** VGG-style names (block5_conv3): the layers with weights in the last K blocks up to the feature layer. */
export function blockLayerCount(model: tf.LayersModel, featureLayer: string, blocks: number): number {
  const upTo = model.layers.slice(0, model.layers.findIndex((l) => l.name === featureLayer) + 1);
  const numbers = upTo.map((l) => /^block(\d+)_/.exec(l.name)?.[1]).filter((b): b is string => b !== undefined).map(Number);
  if (numbers.length === 0) throw new UsageError('--fine-tune-blocks needs a network with blockN_ layer names (VGG); use --fine-tune N');
  const last = Math.max(...numbers);
  return upTo.filter((l) => l.trainableWeights.length > 0 && Number(/^block(\d+)_/.exec(l.name)?.[1]) > last - blocks).length;
}

interface ConvConfig {
  kernelSize?: number[];
  strides?: number[];
  dilationRate?: number | number[];
  filters?: number;
  activation?: string;
  useBias?: boolean;
  name?: string;
}

/** A 1×1, stride-1 convolution is a Dense layer on the channel axis (and trains on wasm, which has no convolution gradients). */
function isPointwise(layer: tf.layers.Layer): boolean {
  if (layer.getClassName() !== 'Conv2D') return false;
  const c = layer.getConfig() as ConvConfig;
  return (c.kernelSize ?? []).every((k) => k === 1) && (c.strides ?? [1, 1]).every((st) => st === 1);
}

/** A new layer of the same class and configuration (weights copied separately). */
function cloneLayer(layer: tf.layers.Layer): tf.layers.Layer {
  if (isPointwise(layer)) {
    const c = layer.getConfig() as ConvConfig;
    return tf.layers.dense({ units: c.filters!, activation: c.activation as 'linear', useBias: c.useBias, name: c.name });
  }
  const config = { ...layer.getConfig() };
  delete config.batchInputShape;
  delete config.inputShape;
  const Ctor = layer.constructor as new (config: unknown) => tf.layers.Layer;
  return new Ctor(config);
}

function poolingLayer(pooling: Pooling): tf.layers.Layer {
  if (pooling === 'avg') return tf.layers.globalAveragePooling2d({ name: 'finetune_pool' });
  if (pooling === 'max') return tf.layers.globalMaxPooling2d({ name: 'finetune_pool' });
  return tf.layers.flatten({ name: 'finetune_pool' });
}

/**
 * Flattened cut maps → reshape → copies of the unfrozen layers (with their weights) → pooling,
 * followed by `head`'s layers when given: a Sequential the training loop and the bundle take as is.
 */
export function buildFineTuneModel(plan: FineTunePlan, pooling: Pooling, head?: tf.Sequential): tf.Sequential {
  const model = tf.sequential({ name: 'finetune_head' });
  model.add(tf.layers.reshape({ targetShape: plan.mapShape, inputShape: [plan.mapShape.reduce((a, b) => a * b, 1)], name: 'finetune_map' }));
  const copies = plan.layers.map((layer) => {
    const copy = cloneLayer(layer);
    model.add(copy);
    return [copy, layer] as const;
  });
  model.add(poolingLayer(pooling));
  const headCopies = (head?.layers ?? []).map((layer) => {
    const copy = cloneLayer(layer);
    model.add(copy);
    return [copy, layer] as const;
  });
  for (const [copy, original] of [...copies, ...headCopies]) {
    if (!isPointwise(original)) {
      copy.setWeights(original.getWeights());
      continue;
    }
    const [kernel, ...rest] = original.getWeights();
    const matrix = tf.reshape(kernel, [kernel.shape[2]!, kernel.shape[3]!]);
    copy.setWeights([matrix, ...rest]);
    matrix.dispose();
  }
  return model;
}

/** Pooled outputs of the (still frozen) unfrozen layers over cached maps, batch by batch. */
export function frozenFeatures(prefix: tf.Sequential, maps: Float32Array, n: number, mapSize: number, batchSize = 32): { x: Float32Array; dim: number } {
  const dim = (prefix.outputs[0].shape as number[])[1];
  const x = new Float32Array(n * dim);
  for (let start = 0; start < n; start += batchSize) {
    const rows = Math.min(batchSize, n - start);
    const out = tf.tidy(() => prefix.predict(tf.tensor2d(maps.subarray(start * mapSize, (start + rows) * mapSize), [rows, mapSize])) as tf.Tensor);
    x.set(out.dataSync(), start * dim);
    out.dispose();
  }
  return { x, dim };
}
