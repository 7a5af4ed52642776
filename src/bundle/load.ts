import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '../tf.ts';
import { readTfjsFolder } from '../formats/tfjs-folder.ts';
import { ModelFileError, UsageError } from '../errors.ts';
import { BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_FILE, type Manifest } from './manifest.ts';

export interface LoadedBundle {
  dir: string;
  manifest: Manifest;
  head: tf.LayersModel;
  /** Per backbone record: the fine-tuned network's ONNX bytes (checksum verified), or undefined for the original weights. */
  backboneOnnx?: (Uint8Array | undefined)[];
}

/** Reads and checks a bundle: JSON and weights only; nothing in it is executed. */
export async function loadBundle(dir: string): Promise<LoadedBundle> {
  const info = await stat(dir).catch(() => null);
  if (!info) throw new UsageError(`--model ${dir} does not exist: train one with \`finetune train DATA --out ${dir}\``);
  if (!info.isDirectory()) throw new UsageError(`--model ${dir} is a file; give the model folder (the one holding ${MANIFEST_FILE})`);
  const manifestPath = path.join(dir, MANIFEST_FILE);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ModelFileError(`${manifestPath} ${missing ? 'is missing' : 'is not valid JSON'}: ${dir} is not a finetune model (re-train it with \`finetune train\`)`, { cause: err });
  }
  if (manifest?.format !== BUNDLE_FORMAT || typeof manifest.formatVersion !== 'number') {
    throw new ModelFileError(`${manifestPath} is not a finetune model manifest (no "format": "${BUNDLE_FORMAT}")`);
  }
  if (manifest.formatVersion > BUNDLE_VERSION) {
    throw new ModelFileError(`${manifestPath} is format version ${manifest.formatVersion}, newer than this finetune reads (${BUNDLE_VERSION}): upgrade finetune`);
  }
  if (!Array.isArray(manifest.classes) || manifest.classes.length < 2 || typeof manifest.head !== 'string' || !Array.isArray(manifest.backbones) || manifest.backbones.length === 0 || manifest.backbones.some((b) => !b?.id)) {
    throw new ModelFileError(`${manifestPath} lacks classes, head or backbone: the file is damaged; re-train the model`);
  }
  const headJson = path.resolve(dir, manifest.head);
  if (path.relative(path.resolve(dir), headJson).startsWith('..') || path.isAbsolute(manifest.head)) {
    throw new ModelFileError(`${manifestPath}: head path "${manifest.head}" points outside the model folder; refusing to read it`);
  }
  let artifacts: tf.io.ModelArtifacts;
  try {
    ({ artifacts } = await readTfjsFolder(headJson));
  } catch (err) {
    // The reader's message names the broken file; the user also needs to know the cure.
    if (!(err instanceof ModelFileError)) throw err;
    throw new ModelFileError(`${err.message}; the model ${dir} is damaged: re-train it`, { cause: err });
  }
  let head: tf.LayersModel;
  try {
    head = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  } catch (err) {
    throw new ModelFileError(`${headJson}: the head does not load (${(err as Error).message.split('\n')[0]}); re-train the model`, { cause: err });
  }
  const outputs = head.outputs[0].shape[1];
  if (outputs !== manifest.classes.length) {
    head.dispose();
    throw new ModelFileError(`${headJson} has ${outputs} outputs but ${manifestPath} lists ${manifest.classes.length} classes; re-train the model`);
  }
  try {
    const backboneOnnx = await Promise.all(manifest.backbones.map((b) => (b.onnx ? readTrainedBackbone(dir, manifestPath, b.onnx) : undefined)));
    return { dir, manifest, head, backboneOnnx };
  } catch (err) {
    head.dispose();
    throw err;
  }
}

/** A fine-tuned backbone's ONNX file, refused unless it is inside the bundle and has the recorded sha256. */
async function readTrainedBackbone(dir: string, manifestPath: string, onnx: { file: string; sha256: string }): Promise<Uint8Array> {
  const file = path.resolve(dir, String(onnx.file));
  if (path.isAbsolute(String(onnx.file)) || path.relative(path.resolve(dir), file).startsWith('..')) {
    throw new ModelFileError(`${manifestPath}: backbone path "${onnx.file}" points outside the model folder; refusing to read it`);
  }
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new ModelFileError(`${file}: the fine-tuned backbone cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); the model ${dir} is damaged: re-train it`, { cause: err });
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== onnx.sha256) {
    throw new ModelFileError(`${file} has sha256 ${sha256.slice(0, 12)}…, not the ${String(onnx.sha256).slice(0, 12)}… recorded in ${manifestPath}: the fine-tuned backbone was changed; restore it or re-train`);
  }
  return bytes;
}
