import * as tf from '../tf.ts';
import { preprocessAffine, type Preprocess } from '../data/preprocess.ts';
import { UsageError } from '../errors.ts';
import type { Pooling } from '../engines/types.ts';

/** One backbone as a bundle runs it: the network, its feature layer, preprocessing and pooling. */
export interface PixelModelPart {
  model: tf.LayersModel;
  layer: string;
  preprocess: Preprocess;
  pooling: Pooling;
}

export const PIXELS = 'pixels';
export const PROBABILITIES = 'probabilities';

type Symbolic = tf.SymbolicTensor;

/**
 * pixels (RGB 0–255, NHWC at `inputSize`) → per part: preprocessing as a fixed 1×1 convolution,
 * copies of the backbone's layers up to its feature layer (their own weights), pooling → the
 * parts side by side → copies of the head's layers, the last Dense divided by the temperature
 * (softmax(z/T) is the calibration predict applies) → probabilities. A plain tfjs layers model of
 * built-in layers only, so tfjs serialises and loads it anywhere, and the ONNX exporter translates it.
 */
export function buildPixelModel(parts: PixelModelPart[], head: tf.LayersModel, opts: { inputSize: readonly [number, number]; temperature: number }): tf.LayersModel {
  const [height, width] = opts.inputSize;
  const pixels = tf.input({ shape: [height, width, 3], name: PIXELS });
  const fused = parts.length > 1;
  const features = parts.map((part, i) => {
    const prefix = fused ? `b${i + 1}_` : '';
    const pre = applyPreprocess(`${prefix}preprocess`, part.preprocess, pixels);
    const map = copyUpTo(part.model, part.layer, pre, prefix);
    return poolFeatures(map, part.pooling, prefix);
  });
  let x = fused ? (tf.layers.concatenate({ name: 'fused_features', axis: -1 }).apply(features) as Symbolic) : features[0];
  const headLayers = head.layers.filter((l) => l.getClassName() !== 'InputLayer');
  const last = headLayers[headLayers.length - 1];
  const lastConfig = last?.getConfig() as { activation?: string } | undefined;
  if (!last || last.getClassName() !== 'Dense' || lastConfig?.activation !== 'softmax') {
    throw new UsageError(`the model's head does not end in a softmax Dense layer (${last?.getClassName() ?? 'no layers'}); it cannot be exported`);
  }
  for (const layer of headLayers) {
    const isLast = layer === last;
    const copy = cloneLayer(layer, isLast ? PROBABILITIES : `head_${layer.name}`);
    x = copy.apply(x) as Symbolic;
    copyWeights(layer, copy, isLast ? 1 / opts.temperature : 1);
  }
  return tf.model({ inputs: pixels, outputs: x, name: 'finetune_export' });
}

function applyPreprocess(name: string, mode: Preprocess, pixels: Symbolic): Symbolic {
  const { kernel, bias } = preprocessAffine(mode);
  const layer = tf.layers.conv2d({ name, filters: 3, kernelSize: 1, useBias: true, trainable: false });
  const out = layer.apply(pixels) as Symbolic;
  const weights = [tf.tensor4d(kernel.flat(), [1, 1, 3, 3]), tf.tensor1d(bias)];
  layer.setWeights(weights);
  tf.dispose(weights);
  return out;
}

/** The same global pooling the feature extractors apply (engines/pooling.ts), as layers. */
function poolFeatures(map: Symbolic, pooling: Pooling, prefix: string): Symbolic {
  if (map.shape.length === 2) return map;
  if (pooling === 'flatten') return tf.layers.flatten({ name: `${prefix}pool_flatten` }).apply(map) as Symbolic;
  const avg = () => tf.layers.globalAveragePooling2d({ name: `${prefix}pool_avg` }).apply(map) as Symbolic;
  const max = () => tf.layers.globalMaxPooling2d({ name: `${prefix}pool_max` }).apply(map) as Symbolic;
  if (pooling === 'avg') return avg();
  if (pooling === 'max') return max();
  return tf.layers.concatenate({ name: `${prefix}pool_avgmax`, axis: -1 }).apply([avg(), max()]) as Symbolic;
}

/**
 * Re-applies `model`'s layers that `layerName` depends on to `input`: each layer is copied once
 * (its configuration under a prefixed name, then its weights), so a layer used twice stays shared.
 */
function copyUpTo(model: tf.LayersModel, layerName: string, input: Symbolic, prefix: string): Symbolic {
  const target = model.layers.find((l) => l.name === layerName);
  if (!target) throw new UsageError(`feature layer "${layerName}" is not in the backbone ${model.name}`);
  if (target.inboundNodes.length !== 1 || target.inboundNodes[0].outputTensors.length !== 1) {
    throw new UsageError(`feature layer "${layerName}" has more than one output; it cannot be exported`);
  }
  const copies = new Map<tf.layers.Layer, tf.layers.Layer>();
  const made = new Map<number, Symbolic>();
  const visit = (t: Symbolic): Symbolic => {
    const done = made.get(t.id);
    if (done) return done;
    const layer = t.sourceLayer as tf.layers.Layer;
    let result: Symbolic;
    if (layer.getClassName() === 'InputLayer') {
      if (model.inputs.length !== 1 || model.inputs[0].id !== t.id) throw new UsageError(`backbone ${model.name}: the feature layer depends on more than one input`);
      result = input;
    } else {
      if ('layers' in layer) throw new UsageError(`backbone ${model.name}: layer ${layer.name} is a nested model, which export does not copy`);
      const node = layer.inboundNodes[t.nodeIndex];
      const inputs = node.inputTensors.map(visit);
      let copy = copies.get(layer);
      const fresh = !copy;
      if (!copy) {
        copy = cloneLayer(layer, `${prefix}${layer.name}`);
        copies.set(layer, copy);
      }
      const outputs = copy.apply(inputs.length === 1 ? inputs[0] : inputs) as Symbolic | Symbolic[];
      result = Array.isArray(outputs) ? outputs[t.tensorIndex] : outputs;
      if (fresh) copyWeights(layer, copy, 1);
    }
    made.set(t.id, result);
    return result;
  };
  return visit(target.inboundNodes[0].outputTensors[0]);
}

/** A new layer of the same class and configuration under another name (weights copied separately). */
function cloneLayer(layer: tf.layers.Layer, name: string): tf.layers.Layer {
  const config: Record<string, unknown> = { ...layer.getConfig(), name };
  delete config.batchInputShape;
  delete config.inputShape;
  delete config.inputDType;
  const Ctor = layer.constructor as new (config: unknown) => tf.layers.Layer;
  return new Ctor(config);
}

/** The original's weights into the copy; `scale` ≠ 1 multiplies all of them (the temperature). */
function copyWeights(from: tf.layers.Layer, to: tf.layers.Layer, scale: number): void {
  const weights = from.getWeights();
  if (weights.length === 0) return;
  if (scale === 1) {
    to.setWeights(weights);
    return;
  }
  const scaled = tf.tidy(() => weights.map((w) => tf.mul(w, scale)));
  to.setWeights(scaled);
  tf.dispose(scaled);
}
