import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isRegistryName } from '../backbones/registry.ts';
import { notTheBackbone } from '../backbones/resolve.ts';
import * as tf from '../tf.ts';
import { loadBundle, type LoadedBundle } from '../bundle/load.ts';
import { expandInputs, inInputOrder } from '../data/inputs.ts';
import { initBackend } from '../engines/backend.ts';
import { ModelFileError, UsageError } from '../errors.ts';
import type { CacheOptions } from '../features/store.ts';
import { applyTemperature, logitsFromProbabilities } from '../metrics/index.ts';
import { lastModelFile } from '../paths.ts';
import type { OnProgress } from '../progress.ts';
import { openFusedSource, type EngineSettings, type FusedSource } from '../features/source.ts';

export interface FinetuneModel extends LoadedBundle {
  classes: string[];
}

export type Prediction =
  | { path: string; label: string; probability: number; probabilities: Record<string, number> }
  | { path: string; error: string };

export interface PredictOptions extends EngineSettings, CacheOptions {
  /** Average over the image and its mirror image. */
  tta?: boolean;
  /** Backbone weights to use instead of the registry lookup (checked against the bundle's checksum); comma-separated when fused, one per backbone. */
  weights?: string;
  /** Where the backbone is (comma-separated when fused), when it was given by a path that has moved since training. */
  backbone?: string;
  onProgress?: OnProgress;
  signal?: AbortSignal;
}

/** The bundle at `dir`, or the one trained last. */
export async function loadModel(dir?: string, opts: { backend?: EngineSettings['backend'] } = {}): Promise<FinetuneModel> {
  await initBackend(opts.backend);
  let target = dir;
  if (!target) {
    target = (await readFile(lastModelFile(), 'utf8').catch(() => ''))?.trim();
    if (!target) throw new UsageError('no --model given and no model trained yet: run `finetune train DATA` first, or pass --model DIR');
  }
  const bundle = await loadBundle(target);
  return { ...bundle, classes: bundle.manifest.classes };
}

/** Opens the backbone(s) a bundle was trained with, refusing weights that differ from training. */
export async function openModelFeatures(model: FinetuneModel, opts: PredictOptions): Promise<FusedSource> {
  const records = model.manifest.backbones;
  const moved = opts.backbone?.split(',');
  for (const [i, b] of records.entries()) {
    const given = moved?.[i] || undefined;
    // A fine-tuned backbone runs from the bundle's own file; the original weights are not needed.
    if (b.onnx) continue;
    if (given === undefined) {
      if (!isRegistryName(b.id) && path.isAbsolute(b.id) && !(await stat(b.id).catch(() => null))) {
        const order = records.length > 1 ? ` (comma-separated, in this order: ${records.map((r) => r.id).join(',')})` : '';
        throw new UsageError(`the backbone ${b.id} recorded in ${model.dir} is no longer at that path: pass --backbone NEWPATH where it is now${order}`);
      }
    } else if (isRegistryName(given) && given !== b.id) {
      // A registry network is known by its name; a path's weights are checked as it loads (trainedWith).
      throw notTheBackbone(given, b);
    }
  }
  const choices = records.map((b, i) => ({
    backbone: moved?.[i] || b.id,
    // Only a network the user points to is checked as it loads; the recorded one is checked below.
    trainedWith: moved?.[i] ? { id: b.id, checksum: b.checksum } : undefined,
    weights: opts.weights?.split(',')[i] || undefined,
    layer: b.layer,
    preprocess: b.preprocess,
    pooling: b.pooling,
    resize: b.resize,
    inputSize: b.inputSize,
    trained: b.onnx && model.backboneOnnx?.[i] ? { bytes: model.backboneOnnx[i]!, sha256: b.onnx.sha256, file: path.join(model.dir, b.onnx.file), checksum: b.checksum, featureSize: b.featureSize } : undefined,
  }));
  if (records.some((b, i) => b.onnx && !model.backboneOnnx?.[i])) throw new ModelFileError(`${model.dir}: its fine-tuned backbone was not loaded; open the model with loadModel`);
  const source = await openFusedSource(choices, opts, opts.onProgress);
  for (const [i, part] of source.parts.entries()) {
    const b = records[i];
    let problem: string | undefined;
    if (part.backbone.checksum !== b.checksum) {
      problem = `backbone weights ${part.backbone.source} (sha256 ${part.backbone.checksum.slice(0, 12)}…) differ from those ${model.dir} was trained with (${b.checksum.slice(0, 12)}…): use the same weights, or re-train`;
    } else if (part.extractor.featureSize !== b.featureSize) {
      problem = `${model.dir}: backbone ${b.id} gives ${part.extractor.featureSize} features but the head expects ${b.featureSize}; re-train the model`;
    }
    if (problem) {
      await source.close();
      throw new ModelFileError(problem);
    }
  }
  return source;
}

/** Probabilities of the head for rows of features, one batch at a time (no temperature). */
export function headProbabilities(model: FinetuneModel, features: Float32Array, n: number, dim: number, batchSize = 256): Float32Array {
  const out = new Float32Array(n * model.classes.length);
  for (let start = 0; start < n; start += batchSize) {
    const rows = Math.min(batchSize, n - start);
    const probs = tf.tidy(() => model.head.predict(tf.tensor2d(features.subarray(start * dim, (start + rows) * dim), [rows, dim])) as tf.Tensor2D);
    out.set(probs.dataSync(), start * model.classes.length);
    probs.dispose();
  }
  return out;
}

/** softmax(log p / T) row by row: the bundle's calibration, with the same code that fitted it. */
export function withTemperature(probabilities: Float32Array, classes: number, temperature: number): Float32Array {
  if (temperature === 1) return probabilities;
  const out = new Float32Array(probabilities.length);
  for (let start = 0; start < probabilities.length; start += classes) {
    out.set(applyTemperature(logitsFromProbabilities(probabilities.subarray(start, start + classes)), temperature), start);
  }
  return out;
}

export interface ScoredImages {
  paths: string[];
  /** n × classes probabilities (the bundle's temperature applied); rows of skipped images are zeros. */
  probabilities: Float32Array;
  /** The same without temperature scaling. */
  uncalibrated: Float32Array;
  ok: Uint8Array;
  skipped: { path: string; reason: string }[];
  cache: { hits: number; misses: number };
  seconds: number;
}

/** Features → probabilities for a list of image files (averaged with the mirror image when tta). */
export async function scoreImages(model: FinetuneModel, source: FusedSource, paths: string[], opts: PredictOptions): Promise<ScoredImages> {
  const k = model.classes.length;
  const temperature = model.manifest.temperature || 1;
  const plain = await source.extract(paths, { onProgress: opts.onProgress, signal: opts.signal });
  let uncalibrated = headProbabilities(model, plain.features, paths.length, plain.dim);
  let probabilities = withTemperature(uncalibrated, k, temperature);
  let seconds = plain.seconds;
  const cache = { ...plain.cache };
  if (opts.tta) {
    const mirrored = await source.extract(paths, { variant: { flip: true }, onProgress: opts.onProgress, signal: opts.signal });
    const flippedRaw = headProbabilities(model, mirrored.features, paths.length, mirrored.dim);
    const flipped = withTemperature(flippedRaw, k, temperature);
    probabilities = probabilities.map((p, i) => (p + flipped[i]) / 2);
    uncalibrated = uncalibrated.map((p, i) => (p + flippedRaw[i]) / 2);
    seconds += mirrored.seconds;
    cache.hits += mirrored.cache.hits;
    cache.misses += mirrored.cache.misses;
  }
  return { paths, probabilities, uncalibrated, ok: plain.ok, skipped: plain.skipped, cache, seconds };
}

/** Classifies image files, folders or globs; unreadable or missing files get an error entry. */
export async function predict(model: FinetuneModel, inputs: string[], opts: PredictOptions = {}): Promise<Prediction[]> {
  if (inputs.length === 0) throw new UsageError('predict needs at least one image, folder or glob');
  const { paths, entries } = await expandInputs(inputs);
  const results: Prediction[] = [];
  if (paths.length > 0) {
    const source = await openModelFeatures(model, opts);
    try {
      const scored = await scoreImages(model, source, paths, opts);
      const reasons = new Map(scored.skipped.map((s) => [s.path, s.reason]));
      const k = model.classes.length;
      paths.forEach((path, i) => {
        if (!scored.ok[i]) {
          results.push({ path, error: reasons.get(path) ?? 'unreadable image' });
          return;
        }
        results.push({ path, ...labelRow(model.classes, scored.probabilities.subarray(i * k, (i + 1) * k)) });
      });
    } finally {
      await source.close();
    }
  }
  return inInputOrder(entries, results, (s) => ({ path: s.path, error: s.reason }));
}

/** One row of class probabilities as predict answers it: the most probable class first. */
export function labelRow(classes: string[], row: Float32Array): { label: string; probability: number; probabilities: Record<string, number> } {
  let best = 0;
  for (let c = 1; c < classes.length; c++) if (row[c] > row[best]) best = c;
  return { label: classes[best], probability: row[best], probabilities: Object.fromEntries(classes.map((name, c) => [name, row[c]])) };
}
