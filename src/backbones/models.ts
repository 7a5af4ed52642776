import { cp, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { download, hashFile } from '../net/download.ts';
import { REGISTRY } from './registry.ts';
import { loadBackbone } from './resolve.ts';
import { isOnnxPath } from './onnx-file.ts';
import { writeLayersModel } from '../bundle/save.ts';
import { initBackend } from '../engines/backend.ts';
import { ModelFileError, UsageError } from '../errors.ts';
import { modelsDir } from '../paths.ts';
import type { OnProgress } from '../progress.ts';
import { offlineByEnv, presentAt, pullDestination, pullTargets, sourceUrl, type PullTarget } from './pull-targets.ts';

export interface ModelListing {
  name: string;
  description: string;
  inputSize: readonly [number, number];
  preprocess: string;
  defaultLayer: string;
  parameters: number;
  downloadBytes: number;
  /** Where the weights are, when present. */
  path: string | null;
  /** The with-top weights (for --layer fc1/fc2/predictions), when published. */
  full: { downloadBytes: number; path: string | null } | null;
}

export function listModels(): ModelListing[] {
  return Object.values(REGISTRY).map((e) => ({
    name: e.name,
    description: e.description,
    inputSize: e.inputSize,
    preprocess: e.preprocess,
    defaultLayer: e.defaultLayer,
    parameters: e.parameters.notop,
    downloadBytes: e.weights.notop.bytes,
    path: presentAt(e.weights.notop) ?? null,
    full: e.weights.full ? { downloadBytes: e.weights.full.bytes, path: presentAt(e.weights.full) ?? null } : null,
  }));
}

function pullTarget(name: string): PullTarget {
  const targets = pullTargets();
  const target = targets.find((t) => t.name === name.toLowerCase());
  if (!target) throw new UsageError(`unknown model "${name}": use one of ${targets.map((t) => t.name).join(', ')}`);
  return target;
}

export interface PullOptions {
  onProgress?: OnProgress;
  signal?: AbortSignal;
  offline?: boolean;
  /** Download again even when the file is present. */
  force?: boolean;
}

export interface PullResult {
  name: string;
  path: string;
  bytes: number;
  md5: string;
  downloaded: boolean;
}

/** Downloads one registry file into $FINETUNE_HOME/models, resuming and verifying the published hash. */
export async function pullModel(name: string, opts: PullOptions = {}): Promise<PullResult> {
  const target = pullTarget(name);
  const existing = presentAt(target.file);
  if (existing && !opts.force) {
    const { md5, bytes } = await hashFile(existing);
    return { name: target.name, path: existing, bytes, md5, downloaded: false };
  }
  const dest = pullDestination(target.file);
  await mkdir(path.dirname(dest), { recursive: true });
  const result = await download(sourceUrl(target.file), dest, {
    md5: target.file.md5,
    onProgress: opts.onProgress,
    signal: opts.signal,
    offline: opts.offline ?? offlineByEnv(),
  });
  return { name: target.name, path: result.path, bytes: result.bytes, md5: result.md5, downloaded: true };
}

export interface VerifyResult {
  name: string;
  path: string;
  ok: boolean;
  expected?: string;
  actual: string;
}

/** Re-hashes every registry file present and compares it with the published md5. */
export async function verifyModels(): Promise<VerifyResult[]> {
  const results: VerifyResult[] = [];
  for (const target of pullTargets()) {
    const file = presentAt(target.file);
    if (!file) continue;
    const { md5 } = await hashFile(file);
    results.push({ name: target.name, path: file, ok: !target.file.md5 || md5 === target.file.md5, expected: target.file.md5, actual: md5 });
  }
  return results;
}

/**
 * Copies a weights file or model folder into $FINETUNE_HOME/models after checking that it
 * loads: a registry weights file under its Keras name, anything else as models/<name>,
 * usable afterwards as `--backbone <name>`.
 */
export async function importModel(source: string, opts: { name?: string } = {}): Promise<{ name: string; path: string }> {
  const info = await stat(source).catch(() => null);
  if (!info) throw new UsageError(`${source} does not exist`);
  const base = path.basename(source);
  if (!info.isDirectory() && !/\.(h5|hdf5|keras|onnx)$/i.test(base)) {
    throw new UsageError(`models import ${source}: expected a tfjs model folder (model.json), a Keras .h5/.hdf5/.keras file or an ONNX .onnx file`);
  }
  if (isOnnxPath(base)) return importOnnx(source, opts.name ?? base.replace(/\.onnx$/i, ''));
  const registryFile = pullTargets().find((t) => t.file.file === base);
  let name: string;
  let dest: string;
  if (registryFile && registryFile.backbone) {
    await initBackend();
    const backbone = await loadBackbone(registryFile.backbone, { weights: source, layer: registryFile.top ? 'predictions' : undefined, download: false });
    backbone.model.dispose();
    name = registryFile.name;
    dest = pullDestination(registryFile.file);
  } else {
    await initBackend();
    const backbone = await loadBackbone(source, { download: false });
    backbone.model.dispose();
    name = opts.name ?? base.replace(/\.(h5|hdf5|keras|json)$/i, '');
    if (!/^[\w.-]+$/.test(name) || REGISTRY[name]) throw new UsageError(`--name ${name}: use letters, digits, '.', '_' or '-', and not a registry name`);
    dest = path.join(modelsDir(), info.isDirectory() ? name : `${name}${path.extname(base) || '.h5'}`);
  }
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.import-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await cp(source, tmp, { recursive: info.isDirectory() });
  await rm(dest, { recursive: true, force: true });
  await rename(tmp, dest);
  return { name, path: dest };
}

/**
 * An ONNX model goes into its own folder, models/<name>/, with the external-data files it
 * names beside it (their names are relative to the model's folder, and two exports may both
 * call theirs model.onnx_data).
 */
async function importOnnx(source: string, name: string): Promise<{ name: string; path: string }> {
  if (!/^[\w.-]+$/.test(name) || REGISTRY[name]) throw new UsageError(`--name ${name}: use letters, digits, '.', '_' or '-', and not a registry name`);
  const { loadOnnxBackbone } = await import('./onnx-file.ts');
  // The check that it is an image model; an open input size is the user's to give later, at train time.
  const network = await loadOnnxBackbone(source).catch(async (err: unknown) => {
    if (err instanceof UsageError && /--input-size/.test(err.message)) return loadOnnxBackbone(source, { inputSize: [224, 224] });
    throw err;
  });
  const dir = path.join(modelsDir(), name);
  const tmp = `${dir}.import-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const from = path.dirname(path.resolve(source));
  for (const file of [path.resolve(source), ...network.network.dataFiles]) {
    const target = path.join(tmp, path.relative(from, file));
    await mkdir(path.dirname(target), { recursive: true });
    await cp(file, target);
  }
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return { name, path: path.join(dir, path.basename(source)) };
}

/** Writes a loaded backbone as a tfjs layers model folder (model.json + weights.bin). */
export async function exportBackbone(spec: string, dir: string, opts: { format?: string; weights?: string; layer?: string } = {}): Promise<string> {
  if (opts.format === 'onnx') {
    const { exportBackboneOnnx } = await import('./export-onnx.ts');
    await initBackend();
    return (await exportBackboneOnnx(spec, dir, { weights: opts.weights, layer: opts.layer })).file;
  }
  if ((opts.format ?? 'tfjs') !== 'tfjs') throw new UsageError(`--format ${opts.format}: use tfjs or onnx`);
  if (opts.layer) throw new UsageError('--layer applies to --format onnx; a tfjs export keeps the whole network');
  await initBackend();
  const backbone = await loadBackbone(spec, { weights: opts.weights, download: false });
  try {
    const existing = await stat(dir).catch(() => null);
    if (existing) throw new UsageError(`${dir} already exists: choose a new folder for the export`);
    const tmp = `${dir}.export-${process.pid}`;
    await mkdir(tmp, { recursive: true });
    await writeLayersModel(tmp, backbone.model);
    await rename(tmp, dir);
    return dir;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new ModelFileError(`export of ${spec} to ${dir} failed: ${(err as Error).message}`, { cause: err });
  } finally {
    backbone.model.dispose();
  }
}

export interface LayerInfo {
  name: string;
  className: string;
  outputShape: (number | null)[];
  isDefault: boolean;
}

/** The layers of a backbone (architecture only for registry names: no weights needed). */
export async function backboneLayers(spec: string, opts: { weights?: string } = {}): Promise<LayerInfo[]> {
  if (/\.onnx$/i.test(spec) && !REGISTRY[spec.toLowerCase()]) return onnxLayers(spec);
  await initBackend();
  const { defaultFeatureLayer } = await import('./resolve.ts');
  let model: import('@tensorflow/tfjs').LayersModel;
  let defaultLayer: string;
  const entry = REGISTRY[spec.toLowerCase()];
  if (entry) {
    model = entry.build({ includeTop: true });
    defaultLayer = entry.defaultLayer;
  } else {
    ({ model } = await loadBackbone(spec, { weights: opts.weights, download: false }));
    defaultLayer = defaultFeatureLayer(model);
  }
  try {
    return model.layers.map((l) => {
      const shape = l.outputShape as (number | null)[] | (number | null)[][];
      const first = Array.isArray(shape[0]) ? (shape[0] as (number | null)[]) : (shape as (number | null)[]);
      return { name: l.name, className: l.getClassName(), outputShape: first, isDefault: l.name === defaultLayer };
    });
  } finally {
    model.dispose();
  }
}

/**
 * Every node output of an ONNX file with its shape at the file's input size (224² where the
 * graph leaves it open), from the file's own shape records or one run on a blank image.
 */
async function onnxLayers(spec: string): Promise<LayerInfo[]> {
  const { loadOnnxBackbone } = await import('./onnx-file.ts');
  const { valueShapes } = await import('../engines/onnx-file.ts');
  const { nodeValues } = await import('../engines/onnx-surgery.ts');
  const file = path.resolve(spec);
  if (!(await stat(file).catch(() => null))) throw new UsageError(`${spec}: no such file`);
  const { network, layer, inputSize } = await loadOnnxBackbone(file, { inputSize: undefined }).catch(async (err) => {
    if (!(err instanceof UsageError) || !/--input-size/.test(err.message)) throw err;
    return loadOnnxBackbone(file, { inputSize: [224, 224] });
  });
  const values = nodeValues(network.model);
  const shapes = await valueShapes(network, values.map((v) => v.name), inputSize);
  return values.map((v) => ({ name: v.name, className: v.opType, outputShape: [null, ...(shapes.get(v.name)?.dims.slice(1) ?? [])], isDefault: v.name === layer }));
}
