import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '../tf.ts';
import h5wasm from 'h5wasm/node';
import type { Dataset, Group, File as H5File } from 'h5wasm';
import { weightsChecksum } from '../backbones/checksum.ts';
import { withInputSize } from './topology.ts';
import { firstLine, ModelFileError } from '../errors.ts';
import { kerasConfigToTfjs } from './keras-config.ts';

export interface KerasWeight {
  name: string;
  shape: number[];
  data: Float32Array;
}

const EXPECTED = 'expected a Keras HDF5 file (.h5 from model.save or model.save_weights)';

/** Layer name → its weights in the file's order. Works for weights-only and whole-model files. */
export async function readKerasWeights(file: string): Promise<Map<string, KerasWeight[]>> {
  return withH5(file, (f) => readWeightsFrom(f, file));
}

/** True when the file holds a model_config (whole model) rather than weights only. */
export async function isWholeModelH5(file: string): Promise<boolean> {
  return withH5(file, (f) => 'model_config' in f.attrs);
}

/**
 * Sets the weights of every layer of `model` that has weights, matched by layer name. Layers the
 * file has and the model lacks are ignored, so a with-top file fits a no-top model.
 */
export async function loadKerasWeightsInto(
  model: tf.LayersModel,
  file: string,
): Promise<{ checksum: string; loadedLayers: string[] }> {
  const weights = await readKerasWeights(file);
  const loadedLayers = assignWeights(model, weights, file);
  return { checksum: await weightsChecksum(file), loadedLayers };
}

/** A whole-model .h5 (model_config + model_weights) → tfjs LayersModel with its weights. */
export async function loadKerasModel(file: string, opts: { inputSize?: readonly [number, number] } = {}): Promise<{ model: tf.LayersModel; checksum: string }> {
  const { config, weights } = await withH5(file, (f) => {
    const raw = f.attrs['model_config']?.value;
    if (raw == null) {
      throw new ModelFileError(`${file} holds weights only (no model_config): load it into a model built in code, or save the whole model with model.save('x.h5')`);
    }
    return { config: parseJsonAttr(raw, file), weights: readWeightsFrom(f, file) };
  });
  const topology = await kerasConfigToTfjs(opts.inputSize ? withInputSize(config, opts.inputSize) : config, file);
  let model: tf.LayersModel;
  try {
    model = await tf.models.modelFromJSON({ modelTopology: topology } as unknown as Parameters<typeof tf.models.modelFromJSON>[0]);
  } catch (err) {
    if (err instanceof ModelFileError) throw err;
    throw new ModelFileError(`${file}: tfjs-layers cannot build its model_config: ${firstLine(err)}`, { cause: err });
  }
  try {
    assignWeights(model, weights, file);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return { model, checksum: await weightsChecksum(file) };
}

function assignWeights(model: tf.LayersModel, fileWeights: Map<string, KerasWeight[]>, file: string): string[] {
  const layers = model.layers.filter((layer) => layer.weights.length > 0);
  const missing = layers.filter((layer) => !fileWeights.has(layer.name)).map((layer) => layer.name);
  if (missing.length > 0) {
    throw new ModelFileError(`${file} has no weights for layer${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of the model: it was saved from a different architecture (or without its top)`);
  }
  // Check every layer before touching any variable, so a bad file leaves the model as it was.
  const plan = layers.map((layer) => ({ layer, values: matchLayerWeights(layer, fileWeights.get(layer.name)!, file) }));
  for (const { layer, values } of plan) {
    const tensors = values.map((w) => tf.tensor(w.data, w.shape, 'float32'));
    try {
      layer.setWeights(tensors);
    } finally {
      tf.dispose(tensors);
    }
  }
  return plan.map(({ layer }) => layer.name);
}

/** The file's weights for one layer, in the order of `layer.weights`. */
function matchLayerWeights(layer: tf.layers.Layer, inFile: KerasWeight[], file: string): KerasWeight[] {
  const wanted = layer.weights.map((w) => ({ short: lastSegment(w.originalName), shape: w.shape as number[] }));
  if (inFile.length !== wanted.length) {
    throw new ModelFileError(
      `${file}: layer ${layer.name} has ${inFile.length} weights in the file (${inFile.map((w) => shortName(w.name)).join(', ')}) but ${wanted.length} in the model (${wanted.map((w) => w.short).join(', ')})`,
    );
  }
  // Old Keras names (block1_conv1_W_1:0) say nothing usable, so only new-style names are matched by name.
  const byName = inFile.every((w) => w.name.includes('/'));
  const shortNames = new Map(inFile.map((w) => [shortName(w.name), w]));
  return wanted.map(({ short, shape }, i) => {
    const found = byName ? shortNames.get(short) : inFile[i];
    if (!found) {
      throw new ModelFileError(
        `${file}: layer ${layer.name} has no weight ${short} in the file (it has ${inFile.map((w) => shortName(w.name)).join(', ')})`,
      );
    }
    if (found.shape.length !== shape.length || found.shape.some((d, k) => d !== shape[k])) {
      throw new ModelFileError(
        `${file}: layer ${layer.name} weight ${short} has shape [${found.shape.join(',')}] in the file but [${shape.join(',')}] in the model`,
      );
    }
    return found;
  });
}

function readWeightsFrom(f: H5File, file: string): Map<string, KerasWeight[]> {
  const root = weightsRoot(f, file);
  const out = new Map<string, KerasWeight[]>();
  for (const layerName of stringList(root.attrs['layer_names']?.value)) {
    const group = root.get(layerName);
    if (!isGroup(group)) {
      throw new ModelFileError(`${file}: layer_names lists ${layerName} but the file has no group for it; the file is damaged`);
    }
    const weights = stringList(group.attrs['weight_names']?.value).map((weightName) =>
      readDataset(group.get(weightName), `${layerName}/${weightName}`, file),
    );
    out.set(layerName, weights);
  }
  return out;
}

/** Whole-model files keep the weights under model_weights/; weights-only files at the root. */
function weightsRoot(f: H5File, file: string): Group {
  if ('layer_names' in f.attrs) return f;
  const nested = f.get('model_weights');
  if (isGroup(nested) && 'layer_names' in nested.attrs) return nested;
  throw new ModelFileError(`${file} is an HDF5 file without Keras weights (no layer_names attribute): ${EXPECTED}`);
}

function readDataset(entity: unknown, where: string, file: string): KerasWeight {
  if (!(entity instanceof h5wasm.Dataset)) {
    throw new ModelFileError(`${file}: weight ${where} is listed in weight_names but missing; the file is damaged`);
  }
  const dataset = entity as Dataset;
  const value = dataset.value;
  let data: Float32Array;
  if (value instanceof Float32Array) data = value;
  else if (value instanceof Float64Array) data = Float32Array.from(value);
  else throw new ModelFileError(`${file}: weight ${where} has dtype ${JSON.stringify(dataset.dtype)}; only float32 and float64 weights are supported`);
  return { name: where.slice(where.indexOf('/') + 1), shape: dataset.shape ?? [], data };
}

async function withH5<T>(file: string, use: (f: H5File) => T): Promise<T> {
  await assertHdf5(file);
  await h5wasm.ready;
  const f = new h5wasm.File(path.resolve(file), 'r');
  try {
    return use(f);
  } finally {
    f.close();
  }
}

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * HDF5 prints its error stack to stderr when asked to open a file that is not HDF5, so the
 * signature is checked here first: at 0, or after a user block of 512 · 2^k bytes.
 */
async function assertHdf5(file: string): Promise<void> {
  let size: number;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new ModelFileError(`${file} is not a file: ${EXPECTED}`);
    size = info.size;
  } catch (err) {
    if (err instanceof ModelFileError) throw err;
    throw new ModelFileError(`${file} not found: ${EXPECTED}`, { cause: err });
  }
  const handle = await open(file, 'r');
  try {
    const buf = Buffer.alloc(HDF5_SIGNATURE.length);
    for (let offset = 0; offset + buf.length <= size; offset = offset === 0 ? 512 : offset * 2) {
      await handle.read(buf, 0, buf.length, offset);
      if (buf.equals(HDF5_SIGNATURE)) return;
    }
  } finally {
    await handle.close();
  }
  throw new ModelFileError(`${file} is not an HDF5 file: ${EXPECTED}`);
}

function isGroup(entity: unknown): entity is Group {
  return entity instanceof h5wasm.Group;
}

/** h5py writes string lists as fixed-length bytes, older files as numpy bytes; empty lists as float arrays. */
function stringList(value: unknown): string[] {
  if (value == null) return [];
  if (typeof value === 'string') return [value];
  if (value instanceof Uint8Array) return [decodeBytes(value)];
  if (ArrayBuffer.isView(value)) return [];
  if (Array.isArray(value)) return value.map((v) => (v instanceof Uint8Array ? decodeBytes(v) : String(v)));
  return [];
}

function parseJsonAttr(value: unknown, file: string): unknown {
  const text = value instanceof Uint8Array ? decodeBytes(value) : Array.isArray(value) ? String(value[0]) : String(value);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelFileError(`${file}: its model_config attribute is not valid JSON; the file is damaged`, { cause: err });
  }
}

function decodeBytes(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** `conv1_bn/moving_mean:0` → `moving_mean`. */
function shortName(weightName: string): string {
  return lastSegment(weightName).replace(/:\d+$/, '');
}

function lastSegment(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

