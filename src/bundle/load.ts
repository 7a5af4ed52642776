import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '../tf.ts';
import { readTfjsFolder } from '../backbones/tfjs-folder.ts';
import { ModelFileError, UsageError } from '../errors.ts';
import { BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_FILE, type Manifest } from './manifest.ts';

export interface LoadedBundle {
  dir: string;
  manifest: Manifest;
  head: tf.LayersModel;
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
  return { dir, manifest, head };
}
