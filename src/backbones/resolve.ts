import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { PREPROCESS_MODES, type Preprocess } from '../data/preprocess.ts';
import { InterruptedError, ModelFileError, UsageError } from '../errors.ts';
import { modelsDir } from '../paths.ts';
import type { OnProgress } from '../progress.ts';
import { offlineByEnv, pullDestination, sourceUrl } from './pull-targets.ts';
import { isRegistryName, REGISTRY, registryEntry, type RegistryEntry } from './registry.ts';
import { findWeights, missingWeightsMessage } from './weights-lookup.ts';
import { isOnnxPath, type OnnxBackbone } from './onnx-file.ts';

export type { OnnxBackbone } from './onnx-file.ts';
/** A network that gives features: a tfjs layers model (registry, tfjs folder, .h5) or an ONNX file. */
export type AnyBackbone = Backbone | OnnxBackbone;

/** What an ONNX file cannot do: its graph runs as it is, so there are no layers to train or rebuild. */
export function onnxFeaturesOnly(spec: string): UsageError {
  return new UsageError(`--backbone ${spec}: an ONNX backbone gives features only (train, predict, evaluate, lr-find, export --format onnx, models export); fine-tuning and tfjs export need a tfjs folder or Keras .h5`);
}

export interface Backbone {
  /** Registry name (`vgg16`) or the absolute path the network was loaded from. */
  id: string;
  /** The file or folder the weights came from. */
  source: string;
  model: tf.LayersModel;
  layer: string;
  preprocess: Preprocess;
  inputSize: [number, number];
  /** sha256 of the weights, recorded in a bundle and checked when it is used again. */
  checksum: string;
}

export interface BackboneOptions {
  weights?: string;
  layer?: string;
  /** Run the convolutional part at this [height, width] instead of the declared input size (a Flatten top is left out). */
  inputSize?: readonly [number, number];
  /** Use the network's own output as the features (its ImageNet probabilities); overrides layer. */
  output?: boolean;
  preprocess?: Preprocess;
  /** Fetch missing registry weights (default: yes, unless FINETUNE_OFFLINE=1). */
  download?: boolean;
  onProgress?: OnProgress;
  signal?: AbortSignal;
  /** The backbone a model was trained with: a network given by path must have these weights (checked before its layers). */
  trainedWith?: { id: string; checksum: string };
}

/** `spec` holds other weights than the network a model was trained with. */
export function notTheBackbone(spec: string, trainedWith: { id: string; checksum?: string }, checksum?: string): UsageError {
  const why = checksum && trainedWith.checksum ? `: its weights' sha256 ${checksum.slice(0, 12)}… differs from the recorded ${trainedWith.checksum.slice(0, 12)}… (${trainedWith.id})` : ` (that is ${trainedWith.id})`;
  return new UsageError(`--backbone ${spec} is not the backbone this model was trained with${why}; pass the network it was trained with, or re-train`);
}

const HEAD_CLASSES = new Set(['Flatten', 'GlobalAveragePooling2D', 'GlobalMaxPooling2D', 'Dense']);
const PASS_THROUGH = new Set(['Activation', 'LeakyReLU', 'ReLU', 'Softmax', 'Dropout', 'BatchNormalization']);

function inboundOf(layer: tf.layers.Layer): tf.layers.Layer | undefined {
  return layer.inboundNodes[0]?.inboundLayers[0];
}

/**
 * The input of the first Flatten / global pooling / Dense layer: where a classifier's top
 * begins. Darknet-style networks classify with a 1×1 convolution (one filter per class)
 * before the pooling; that convolution belongs to the top too, so the cut goes before it.
 */
export function defaultFeatureLayer(model: tf.LayersModel): string {
  const outputs = model.outputs[0].shape[model.outputs[0].shape.length - 1];
  for (const layer of model.layers) {
    if (!HEAD_CLASSES.has(layer.getClassName())) continue;
    const inbound = inboundOf(layer);
    if (!inbound || inbound.getClassName() === 'InputLayer') continue;
    let probe: tf.layers.Layer | undefined = inbound;
    while (probe && PASS_THROUGH.has(probe.getClassName())) probe = inboundOf(probe);
    const config = probe?.getConfig() as { kernelSize?: number[]; filters?: number } | undefined;
    if (probe && probe.getClassName() === 'Conv2D' && config?.filters === outputs && config.kernelSize?.every((k) => k === 1)) {
      const before = inboundOf(probe);
      if (before && before.getClassName() !== 'InputLayer') return before.name;
    }
    return inbound.name;
  }
  return model.layers[model.layers.length - 1].name;
}

/** Conventions of where a file came from: tfjs exports (ml5, nsfwjs) take x/255; Keras MobileNet/Inception take tf mode. */
function guessPreprocess(model: tf.LayersModel, kind: 'tfjs' | 'keras'): Preprocess {
  if (kind === 'tfjs') return 'unit';
  const name = model.name.toLowerCase();
  if (/vgg|resnet(?!.*v2)/.test(name)) return 'caffe';
  return 'tf';
}

function checkPreprocess(mode: string | undefined): Preprocess | undefined {
  if (mode === undefined) return undefined;
  if (mode === 'imagenet') return 'torch';
  if (!(PREPROCESS_MODES as readonly string[]).includes(mode)) throw new UsageError(`--preprocess ${mode} is not known: use one of ${PREPROCESS_MODES.join(', ')}`);
  return mode as Preprocess;
}

function checkLayer(model: tf.LayersModel, layer: string, id: string, resized?: readonly [number, number]): string {
  if (!model.layers.some((l) => l.name === layer)) {
    const names = model.layers.map((l) => l.name);
    const shown = names.length > 12 ? [...names.slice(0, 4), '…', ...names.slice(-7)] : names;
    const why = resized ? `; at --input-size ${resized[0]}x${resized[1]} its layers from the Flatten on are left out, as they take only its own size` : '';
    throw new UsageError(`--layer ${layer}: ${id} has no such layer (it has ${shown.join(', ')}${why}; \`finetune models layers\` lists all)`);
  }
  return layer;
}

function inputSizeOf(model: tf.LayersModel, id: string): [number, number] {
  const shape = model.inputs[0].shape;
  if (shape.length !== 4 || shape[3] !== 3 || !shape[1] || !shape[2]) {
    throw new ModelFileError(`${id}: input shape [${shape.join(', ')}] is not [batch, height, width, 3]; finetune needs an RGB image network with a fixed input size`);
  }
  return [shape[1], shape[2]];
}

/** The weights on disk, or downloaded into $FINETUNE_HOME/models when allowed. */
async function findOrPullWeights(entry: RegistryEntry, includeTop: boolean, opts: BackboneOptions): Promise<string> {
  try {
    return findWeights(entry, includeTop, opts.weights);
  } catch (err) {
    if (!(err instanceof ModelFileError) || opts.download === false || offlineByEnv()) throw err;
    const file = includeTop ? entry.weights.full! : entry.weights.notop;
    const { download } = await import('../net/download.ts');
    try {
      const result = await download(sourceUrl(file), pullDestination(file), { md5: file.md5, onProgress: opts.onProgress, signal: opts.signal });
      return result.path;
    } catch (cause) {
      if (cause instanceof InterruptedError) throw cause;
      throw new ModelFileError(`${missingWeightsMessage(entry, file)} (download failed: ${(cause as Error).message})`, { cause });
    }
  }
}

/** A name given to `finetune models import`: $FINETUNE_HOME/models/<name>.h5, <name>/model.json or <name>/<file>.onnx. */
export async function importedPath(spec: string): Promise<string | undefined> {
  if (!/^[\w.-]+$/.test(spec)) return undefined;
  for (const candidate of [path.join(modelsDir(), spec, 'model.json'), path.join(modelsDir(), `${spec}.h5`)]) {
    if (await stat(candidate).catch(() => null)) return candidate;
  }
  const onnx = (await readdir(path.join(modelsDir(), spec)).catch(() => [] as string[])).filter(isOnnxPath);
  return onnx.length === 1 ? path.join(modelsDir(), spec, onnx[0]) : undefined;
}

export async function loadBackbone(spec: string, opts: BackboneOptions = {}): Promise<Backbone> {
  const preprocess = checkPreprocess(opts.preprocess);
  if (isRegistryName(spec)) {
    const entry = registryEntry(spec);
    const layer = opts.output ? entry.topLayers[entry.topLayers.length - 1] : (opts.layer ?? entry.defaultLayer);
    const includeTop = entry.topLayers.includes(layer);
    const resized = opts.inputSize && (opts.inputSize[0] !== entry.inputSize[0] || opts.inputSize[1] !== entry.inputSize[1]);
    if (includeTop && resized) throw new UsageError(`--input-size: ${entry.name}'s top (${entry.topLayers.join(', ')}) needs ${entry.inputSize.join('×')} inputs; pick a conv layer or drop --input-size`);
    const model = entry.build({ includeTop, inputSize: opts.inputSize });
    checkLayer(model, layer, entry.name);
    const source = await findOrPullWeights(entry, includeTop, opts);
    const { loadKerasWeightsInto } = await import('../formats/keras-h5.ts');
    const { checksum } = await loadKerasWeightsInto(model, source);
    return { id: entry.name, source, model, layer, preprocess: preprocess ?? entry.preprocess, inputSize: opts.inputSize ? [opts.inputSize[0], opts.inputSize[1]] : [...entry.inputSize], checksum };
  }
  const full = path.resolve((await stat(spec).catch(() => null)) ? spec : ((await importedPath(spec)) ?? spec));
  const info = await stat(full).catch(() => null);
  if (!info) throw new UsageError(`--backbone ${spec}: not a known backbone name and no such file or folder (known: ${Object.keys(REGISTRY).join(', ')}; or a name given to 'finetune models import')`);
  let model: tf.LayersModel;
  let checksum: string;
  let kind: 'tfjs' | 'keras';
  if (info.isDirectory() || full.endsWith('.json')) {
    const { loadTfjsFolder } = await import('../formats/tfjs-folder.ts');
    ({ model, checksum } = await loadTfjsFolder(full, { inputSize: opts.inputSize }));
    kind = 'tfjs';
  } else if (/\.(h5|hdf5|keras)$/i.test(full)) {
    const { loadKerasModel } = await import('../formats/keras-h5.ts');
    ({ model, checksum } = await loadKerasModel(full, { inputSize: opts.inputSize }));
    kind = 'keras';
  } else if (isOnnxPath(full)) {
    throw onnxFeaturesOnly(spec);
  } else {
    throw new UsageError(`--backbone ${spec}: expected a tfjs model folder (model.json), a Keras .h5 file or an ONNX .onnx file`);
  }
  if (opts.weights) {
    model.dispose();
    throw new UsageError('--weights applies to registry backbones (vgg16); a backbone given by path carries its own weights');
  }
  if (opts.trainedWith && checksum !== opts.trainedWith.checksum) {
    model.dispose();
    throw notTheBackbone(spec, opts.trainedWith, checksum);
  }
  const layer = opts.output ? model.layers[model.layers.length - 1].name : checkLayer(model, opts.layer ?? defaultFeatureLayer(model), spec, opts.inputSize);
  return { id: full, source: full, model, layer, preprocess: preprocess ?? guessPreprocess(model, kind), inputSize: inputSizeOf(model, spec), checksum };
}

/** Like loadBackbone, and an ONNX file as well (it runs on the onnx engine only). */
export async function loadAnyBackbone(spec: string, opts: BackboneOptions = {}): Promise<AnyBackbone> {
  if (isRegistryName(spec)) return loadBackbone(spec, opts);
  // An imported ONNX model is reached by its name, like an imported .h5.
  const named = isOnnxPath(spec) || (await stat(spec).catch(() => null)) ? undefined : await importedPath(spec);
  if (!isOnnxPath(spec) && !(named && isOnnxPath(named))) return loadBackbone(spec, opts);
  const file = path.resolve(named ?? spec);
  if (!(await stat(file).catch(() => null))) throw new UsageError(`--backbone ${spec}: no such file`);
  if (opts.weights) throw new UsageError(`--weights applies to registry backbones (vgg16); ${spec} carries its own weights`);
  const { loadOnnxBackbone } = await import('./onnx-file.ts');
  return loadOnnxBackbone(file, { layer: opts.layer, output: opts.output, inputSize: opts.inputSize, preprocess: checkPreprocess(opts.preprocess) });
}
