import * as tf from '../tf.ts';
import { firstLine, ModelFileError } from '../errors.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
interface LayerEntry extends JsonObject {
  class_name: string;
  config: JsonObject;
}

/** Arguments tfjs-layers does not know, and the value at which dropping them changes nothing. */
const NO_OP_ARGUMENTS: Record<string, Record<string, Json>> = {
  '*': { ragged: false, synchronized: false, lora_rank: null, quantization_config: null, optional: false },
  Conv1D: { groups: 1 },
  Conv2D: { groups: 1 },
  Conv3D: { groups: 1 },
  DepthwiseConv2D: { groups: 1 },
  SeparableConv1D: { groups: 1 },
  SeparableConv2D: { groups: 1 },
  Conv2DTranspose: { groups: 1, output_padding: null },
  Conv3DTranspose: { groups: 1, output_padding: null },
  GlobalAveragePooling1D: { keepdims: false },
  GlobalAveragePooling2D: { keepdims: false },
  GlobalMaxPooling1D: { keepdims: false },
  GlobalMaxPooling2D: { keepdims: false },
  ReLU: { negative_slope: 0, threshold: 0 },
};

const TFJS_DTYPES = new Set(['float32', 'int32', 'bool', 'complex64', 'string']);
const GLOBAL_POOLINGS: Record<string, number> = {
  GlobalAveragePooling1D: 1,
  GlobalAveragePooling2D: 2,
  GlobalMaxPooling1D: 1,
  GlobalMaxPooling2D: 2,
};

/**
 * Keras 2.x / tf.keras `model_config` JSON → a topology tfjs-layers 4.22 builds
 * (`tf.models.modelFromJSON`). Every rewrite is exactly equivalent at any input size; an
 * argument tfjs cannot express with a non-default value is an error, never silently dropped.
 * Async because mapping keepdims needs channel counts, which only a tfjs build can infer.
 */
export async function kerasConfigToTfjs(modelConfig: unknown, source: string): Promise<JsonObject> {
  if (!isObject(modelConfig) || typeof modelConfig.class_name !== 'string' || !isObject(modelConfig.config)) {
    throw new ModelFileError(`${source}: model_config is not a Keras model config (needs class_name and config)`);
  }
  const copy = stripSerializationKeys(modelConfig as Json) as LayerEntry; // a fresh copy: the caller's JSON stays as read
  return fixModel(copy, source);
}

async function fixModel(entry: LayerEntry, source: string): Promise<LayerEntry> {
  if (entry.class_name === 'Functional') entry.class_name = 'Model';
  const config = entry.config;
  if (!Array.isArray(config.layers)) {
    throw new ModelFileError(`${source}: model ${String(config.name)} has no layers list in its config`);
  }
  const isSequential = entry.class_name === 'Sequential';
  let layers = config.layers as LayerEntry[];
  for (const layer of layers) await fixLayer(layer, source);
  if (!isSequential) {
    for (const layer of layers) normaliseInboundNodes(layer, source);
    for (const key of ['input_layers', 'output_layers']) {
      if (Array.isArray(config[key]) && typeof (config[key] as Json[])[0] === 'string') config[key] = [config[key]];
    }
  }
  layers = await expandKeepdims(entry, layers, isSequential, source);
  config.layers = layers;
  return entry;
}

async function fixLayer(layer: LayerEntry, source: string): Promise<void> {
  if (!isObject(layer) || typeof layer.class_name !== 'string' || !isObject(layer.config)) {
    throw new ModelFileError(`${source}: model_config has a layer entry without class_name and config`);
  }
  const className = layer.class_name;
  const config = layer.config;
  const name = String(config.name ?? layer.name);
  if (className === 'Functional' || className === 'Sequential' || className === 'Model') {
    await fixModel(layer, source);
    return;
  }
  if (isObject(config.dtype)) {
    // Keras 2.13+/3 write the dtype policy as an object; only its name means anything to tfjs.
    const policy = config.dtype;
    config.dtype = (isObject(policy.config) ? policy.config.name : policy.name) ?? null;
  }
  if (typeof config.dtype === 'string' && !TFJS_DTYPES.has(config.dtype)) {
    throw unsupported(source, name, className, 'dtype', config.dtype);
  }
  if (className === 'InputLayer' && config.batch_shape !== undefined && config.batch_input_shape === undefined) {
    config.batch_input_shape = config.batch_shape;
    delete config.batch_shape;
  }
  if (className === 'BatchNormalization' && Array.isArray(config.axis)) {
    if (config.axis.length !== 1 || typeof config.axis[0] !== 'number') {
      throw unsupported(source, name, className, 'axis', config.axis);
    }
    config.axis = config.axis[0];
  }
  if (className === 'ReLU') reluToLeaky(layer);
  if (className === 'LeakyReLU' && config.negative_slope !== undefined && config.alpha === undefined) {
    config.alpha = config.negative_slope; // Keras 3 renamed alpha
    delete config.negative_slope;
  }
  const noOps = { ...NO_OP_ARGUMENTS['*'], ...NO_OP_ARGUMENTS[layer.class_name] };
  for (const [key, neutral] of Object.entries(noOps)) {
    if (!(key in config)) continue;
    if (key === 'keepdims' && config.keepdims === true) continue; // rewritten by expandKeepdims
    if (!sameJson(config[key], neutral)) throw unsupported(source, name, className, key, config[key]);
    delete config[key];
  }
}

/** ReLU with a negative slope and nothing else is LeakyReLU, which tfjs has. */
function reluToLeaky(layer: LayerEntry): void {
  const c = layer.config;
  const slope = c.negative_slope;
  if (typeof slope !== 'number' || slope === 0 || c.max_value != null || (c.threshold ?? 0) !== 0) return;
  layer.class_name = 'LeakyReLU';
  c.alpha = slope;
  delete c.negative_slope;
  delete c.threshold;
  delete c.max_value;
}

/**
 * Global pooling with keepdims=True becomes the pooling without it followed by a Reshape to
 * [1,(1,)C]. Consumers of the pooling, and the model's outputs, are rewired to the Reshape.
 * C must be a number: tfjs's Reshape leaves a -1 unresolved whenever the batch size is unknown.
 */
async function expandKeepdims(model: LayerEntry, layers: LayerEntry[], isSequential: boolean, source: string): Promise<LayerEntry[]> {
  const pools = layers.filter((l) => GLOBAL_POOLINGS[l.class_name] !== undefined && l.config.keepdims === true);
  if (pools.length === 0) return layers;
  for (const pool of pools) delete pool.config.keepdims;
  const channels = await poolChannels(model, layers, pools, isSequential, source);
  const taken = new Set(layers.map(layerName));
  const renamed = new Map<string, string>();
  const out: LayerEntry[] = [];
  for (const layer of layers) {
    out.push(layer);
    if (!pools.includes(layer)) continue;
    const poolName = layerName(layer);
    let reshapeName = `${poolName}_keepdims`;
    for (let i = 2; taken.has(reshapeName); i++) reshapeName = `${poolName}_keepdims_${i}`;
    taken.add(reshapeName);
    const c = channels.get(poolName)!;
    const ones = new Array<number>(GLOBAL_POOLINGS[layer.class_name]).fill(1);
    const reshape: LayerEntry = {
      class_name: 'Reshape',
      config: {
        name: reshapeName,
        trainable: layer.config.trainable ?? true,
        dtype: layer.config.dtype ?? 'float32',
        target_shape: layer.config.data_format === 'channels_first' ? [c, ...ones] : [...ones, c],
      },
    };
    if (!isSequential) {
      reshape.name = reshapeName;
      reshape.inbound_nodes = Array.from({ length: callCount(layer) }, (_, node) => [[poolName, node, 0, {}]]);
      renamed.set(poolName, reshapeName);
    }
    out.push(reshape);
  }
  if (renamed.size > 0) {
    const inserted = new Set(renamed.values());
    for (const layer of out) {
      if (inserted.has(layerName(layer))) continue;
      for (const call of (layer.inbound_nodes ?? []) as Json[][][]) {
        for (const input of call) input[0] = renamed.get(String(input[0])) ?? input[0];
      }
    }
    for (const output of (model.config.output_layers ?? []) as Json[][]) {
      output[0] = renamed.get(String(output[0])) ?? output[0];
    }
  }
  return out;
}

/** Channel count of each pooling's output, from a throw-away tfjs build of the layers that feed it. */
async function poolChannels(
  model: LayerEntry,
  layers: LayerEntry[],
  pools: LayerEntry[],
  isSequential: boolean,
  source: string,
): Promise<Map<string, number>> {
  let probe: JsonObject;
  const outputs: [string, number][] = pools.flatMap((pool) =>
    Array.from({ length: isSequential ? 1 : callCount(pool) }, (_, node): [string, number] => [layerName(pool), node]),
  );
  if (isSequential) {
    const last = layers.indexOf(pools[pools.length - 1]);
    probe = { class_name: 'Sequential', config: { name: 'keepdims_probe', layers: structuredClone(layers.slice(0, last + 1)) } };
  } else {
    const byName = new Map(layers.map((l) => [layerName(l), l]));
    const needed = new Set<string>();
    const pending = pools.map(layerName);
    while (pending.length > 0) {
      const name = pending.pop()!;
      if (needed.has(name)) continue;
      needed.add(name);
      for (const call of (byName.get(name)?.inbound_nodes ?? []) as Json[][][]) {
        for (const input of call) pending.push(String(input[0]));
      }
    }
    probe = {
      class_name: 'Model',
      config: {
        name: 'keepdims_probe',
        layers: structuredClone(layers.filter((l) => needed.has(layerName(l)))),
        input_layers: ((model.config.input_layers ?? []) as Json[][]).filter((i) => needed.has(String(i[0]))),
        output_layers: outputs.map(([name, node]) => [name, node, 0]),
      },
    };
  }
  let built: tf.LayersModel;
  try {
    built = await tf.models.modelFromJSON({ modelTopology: probe } as unknown as Parameters<typeof tf.models.modelFromJSON>[0]);
  } catch (err) {
    throw new ModelFileError(`${source}: tfjs-layers cannot build the layers before ${layerName(pools[0])}: ${firstLine(err)}`, { cause: err });
  }
  try {
    const channels = new Map<string, number>();
    outputs.forEach(([name], i) => {
      const shape = isSequential ? (built.getLayer(name).outputShape as (number | null)[]) : built.outputs[i].shape;
      const c = shape[shape.length - 1];
      if (typeof c !== 'number' || (channels.has(name) && channels.get(name) !== c)) {
        throw new ModelFileError(`${source}: layer ${name} pools an input whose channel count is not fixed; keepdims=true cannot be mapped for tfjs`);
      }
      channels.set(name, c);
    });
    return channels;
  } finally {
    built.dispose();
  }
}

function callCount(layer: LayerEntry): number {
  return Array.isArray(layer.inbound_nodes) ? Math.max(1, layer.inbound_nodes.length) : 1;
}

function layerName(layer: LayerEntry): string {
  return String(layer.config.name ?? layer.name);
}


/**
 * Keras 3 writes each call as {args, kwargs} with `keras_history` on the tensors; tfjs reads the
 * Keras 2 form [[layer, node, tensor, kwargs], …].
 */
function normaliseInboundNodes(layer: LayerEntry, source: string): void {
  const nodes = layer.inbound_nodes;
  if (!Array.isArray(nodes)) return;
  layer.inbound_nodes = nodes.map((node) => {
    if (Array.isArray(node)) return node;
    if (!isObject(node) || !Array.isArray(node.args)) {
      throw new ModelFileError(`${source}: layer ${String(layer.config.name)} has an inbound node tfjs cannot read`);
    }
    const first = node.args[0];
    const tensors = Array.isArray(first) ? first : [first];
    const kwargs = isObject(node.kwargs) ? node.kwargs : {};
    return tensors.map((tensor) => {
      const history = isObject(tensor) && isObject(tensor.config) ? tensor.config.keras_history : undefined;
      if (!Array.isArray(history) || history.length < 3) {
        throw new ModelFileError(`${source}: layer ${String(layer.config.name)} has an input tfjs cannot read`);
      }
      return [history[0], history[1], history[2], kwargs];
    });
  });
}

/** Keras 2.13+ adds `module` and `registered_name` to every serialized object. */
function stripSerializationKeys(value: Json): Json {
  if (Array.isArray(value)) return value.map(stripSerializationKeys);
  if (!isObject(value)) return value;
  const out: JsonObject = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === 'module' || key === 'registered_name') continue;
    out[key] = stripSerializationKeys(v);
  }
  return out;
}

function unsupported(source: string, layer: string, className: string, key: string, value: Json | undefined): ModelFileError {
  return new ModelFileError(
    `${source}: layer ${layer} (${className}) has ${key}=${JSON.stringify(value)}, which tfjs-layers cannot express; this model cannot be loaded`,
  );
}

function sameJson(a: Json | undefined, b: Json): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
