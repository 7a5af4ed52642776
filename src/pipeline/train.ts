import path from 'node:path';
import * as tf from '../tf.ts';
import { loadBackbone, onnxFeaturesOnly, type Backbone } from '../backbones/resolve.ts';
import { isOnnxPath } from '../backbones/onnx-file.ts';
import { BUNDLE_FORMAT, BUNDLE_VERSION, type BackboneRecord, type Manifest } from '../bundle/manifest.ts';
import type { Skipped } from '../data/files.ts';
import { loadDataset, type Dataset, type Layout, type Sample } from '../data/layout.ts';
import type { Preprocess } from '../data/preprocess.ts';
import { initBackend } from '../engines/backend.ts';
import type { Pooling } from '../engines/types.ts';
import { UsageError } from '../errors.ts';
import type { ExtractResult } from '../features/extract.ts';
import type { CacheOptions } from '../features/store.ts';
import type { EpochRecord, FeatureSet } from '../head/train.ts';
import { fitModel, trainHead, type HeadTrainingOptions, type HeadTrainingResult } from '../head/train.ts';
import { trainEnsemble } from '../head/ensemble.ts';
import { resolveHeadEngine, trainHeadsOnnx, type HeadEngine } from '../head/train-onnx.ts';
import { blockLayerCount, buildFineTuneModel, frozenFeatures, planFineTune, type FineTunePlan } from '../head/fine-tune.ts';
import { fineTuneStage, type FineTuneSummary } from '../fine-tune/train-stage.ts';
import { lrRangeTest, type LrRangeResult } from '../head/lr-range.ts';
import type { Variant } from '../data/augment.ts';
import type { OnProgress } from '../progress.ts';
import { packageVersions } from '../package.ts';
import { MIN_CALIBRATION_IMAGES, validationWarnings } from './validation-warnings.ts';
import { applyFixFile } from '../audit/fix-list.ts';
import { applyTemperature, fitTemperature, logitsFromProbabilities, logLoss } from '../metrics/index.ts';
import { FINE_TUNE_DEFAULTS, TRAIN_DEFAULTS, type Augment, type ClassWeightMode } from '../defaults.ts';

export { TRAIN_DEFAULTS, type ClassWeightMode } from '../defaults.ts';

import { openFusedSource, type BackboneChoice, type EngineSettings, type FusedSource } from '../features/source.ts';
export type { BackboneChoice, EngineSettings, FeatureSource, FusedSource } from '../features/source.ts';

export interface TrainOptions extends Omit<BackboneChoice, 'backbone' | 'weights' | 'layer' | 'preprocess' | 'inputSize' | 'trainedWith'>, EngineSettings, CacheOptions {
  /** A registry name or path; several (an array) fuse their features. */
  backbone?: string | string[];
  /** Weights file of a registry backbone; with several backbones, one entry per backbone (undefined = looked up). */
  weights?: string | (string | undefined)[];
  /** Feature layer; with several backbones, one entry per backbone (undefined = its default). */
  layer?: string | (string | undefined)[];
  preprocess?: Preprocess | (Preprocess | undefined)[];
  inputSize?: readonly [number, number] | (readonly [number, number] | undefined)[];
  layout?: Layout;
  /** A CSV of path,label[,split] (the csv layout) instead of folders. */
  labels?: string;
  valSplit?: number;
  seed?: number;
  hidden?: number;
  dropout?: number;
  /** Adam's rate; 'auto' picks it with the range test (findLearningRate). */
  lr?: number | 'auto';
  epochs?: number;
  batchSize?: number;
  patience?: number;
  classWeight?: ClassWeightMode;
  /** Train also on these variants of each training image (features cached per variant): flip, crop. */
  augment?: Augment[];
  /** Random crops per training image with augment 'crop' (default 1). */
  augmentCopies?: number;
  /** Fit a softmax temperature on the validation split (stored in the bundle, used by predict). */
  calibrate?: boolean;
  /** Heads trained with seeds seed … seed+K−1 and merged into one whose logits are their mean (default 5; 1 with fine-tuning). */
  ensemble?: number;
  /** After the head converges, also train the backbone's last N layers that have weights ('all': every one). */
  fineTune?: number | 'all';
  /** Epochs of whole-network fine-tuning on images (onnx engine; default 3). */
  fineTuneEpochs?: number;
  /** The same counted in VGG blocks (block5 first). */
  fineTuneBlocks?: number;
  /** Learning rate while fine-tuning (default lr/10). */
  fineTuneLr?: number;
  /** A fix list (`finetune audit --fix-list`): remove → left out, relabel → the suggested class, keep → as is. */
  exclude?: string;
  onProgress?: OnProgress;
  signal?: AbortSignal;
}

export interface TrainResult {
  head: tf.LayersModel;
  /** Everything of the bundle's finetune.json but the head's path (the writer adds it). */
  manifest: Omit<Manifest, 'head'>;
  classes: string[];
  history: EpochRecord[];
  counts: { train: number; valid: number; skipped: number };
  skipped: Skipped[];
  warnings: string[];
  cache: { hits: number; misses: number };
  timing: { featuresSeconds: number; trainSeconds: number; imagesPerSecond: number };
  engine: string;
  device: string;
  backend: string;
  /** What trained the head: onnxruntime (`onnx`) or tfjs (`tfjs`, on `backend`). */
  headEngine: HeadEngine;
  /** The whole-network stage, or null without one. */
  fineTune: FineTuneSummary | null;
  /** The fine-tuned backbone as ONNX, for the bundle (when fine-tuning beat the frozen start). */
  backboneOnnx?: Uint8Array;
}

function checkNumber(name: string, value: number, ok: (v: number) => boolean, rule: string): number {
  if (!Number.isFinite(value) || !ok(value)) throw new UsageError(`${name} ${value}: must be ${rule}`);
  return value;
}

const engineOf = (source: FusedSource) => [...new Set(source.parts.map((p) => p.extractor.engine))].join('+');
const deviceOf = (source: FusedSource) => [...new Set(source.parts.map((p) => p.extractor.device))].join('+');

/** What a bundle records of each backbone, so predict can rebuild exactly these features. */
export function backboneRecords(source: FusedSource): BackboneRecord[] {
  return source.parts.map(({ backbone, extractor, pooling, resize }) => ({
    id: backbone.id,
    checksum: backbone.checksum,
    layer: backbone.layer,
    pooling,
    preprocess: backbone.preprocess,
    inputSize: backbone.inputSize,
    resize,
    featureSize: extractor.featureSize,
  }));
}

function listAt<T>(value: T | (T | undefined)[] | undefined, i: number, isList: (v: unknown) => boolean = Array.isArray): T | undefined {
  return isList(value) ? (value as (T | undefined)[])[i] : i === 0 || value === undefined ? (value as T | undefined) : (value as T);
}

/** TrainOptions → one choice per backbone (a single backbone is a list of one). */
export function backboneParts(o: TrainOptions): (BackboneChoice & { backbone: string })[] {
  const names = Array.isArray(o.backbone) ? o.backbone : [o.backbone ?? TRAIN_DEFAULTS.backbone];
  if (names.length === 0) throw new UsageError('--backbone needs at least one name or path');
  const isSizeList = (v: unknown) => Array.isArray(v) && (v.length === 0 || typeof v[0] !== 'number');
  return names.map((backbone, i) => ({
    ...o,
    backbone,
    weights: listAt(o.weights, i),
    layer: listAt(o.layer, i),
    preprocess: listAt(o.preprocess, i),
    inputSize: listAt(o.inputSize as readonly [number, number] | undefined, i, isSizeList),
  }));
}

/**
 * Head first on the frozen pooled features (the unfrozen layers run once over the cached
 * maps), then the unfrozen layers and the head together at a lower rate; the second stage
 * is kept only if it beats the first on the monitored loss.
 */
async function fineTune(
  plan: FineTunePlan,
  maps: FeatureSet,
  valid: FeatureSet | undefined,
  classes: number,
  opts: HeadTrainingOptions & { pooling: Pooling; fineTuneLr: number; onProgress?: OnProgress },
): Promise<HeadTrainingResult> {
  const mapSize = maps.dim;
  const prefix = buildFineTuneModel(plan, opts.pooling);
  const pooled = (set: FeatureSet): FeatureSet => ({ ...set, ...frozenFeatures(prefix, set.x, set.n, mapSize) });
  let head: HeadTrainingResult;
  try {
    head = await trainHead(pooled(maps), valid && pooled(valid), classes, opts);
  } finally {
    prefix.dispose();
  }
  const joint = buildFineTuneModel(plan, opts.pooling, head.model);
  const unfrozen = plan.layers.filter((l) => l.trainableWeights.length > 0).map((l) => l.name);
  opts.onProgress?.({ status: 'done', task: 'train', message: `head converged (best epoch ${head.bestEpoch})` });
  opts.onProgress?.({ status: 'initiate', task: 'train', message: `fine-tuning ${unfrozen.join(', ')} with the head at lr ${opts.fineTuneLr}`, total: head.history.length + opts.epochs, unit: 'epochs' });
  try {
    const tuned = await fitModel(joint, maps, valid, classes, { ...opts, lr: opts.fineTuneLr, firstEpoch: head.history.length + 1 });
    const history = [...head.history, ...tuned.history];
    if (tuned.bestLoss < head.bestLoss) return { model: joint, history, bestEpoch: tuned.bestEpoch, bestLoss: tuned.bestLoss };
    // Fine-tuning did not help: the joint model with the first stage's weights.
    joint.dispose();
    return { model: buildFineTuneModel(plan, opts.pooling, head.model), history, bestEpoch: head.bestEpoch, bestLoss: head.bestLoss };
  } catch (err) {
    joint.dispose();
    throw err;
  } finally {
    head.model.dispose();
  }
}

function appendRows(a: FeatureSet, b: FeatureSet): FeatureSet {
  const x = new Float32Array(a.x.length + b.x.length);
  x.set(a.x);
  x.set(b.x, a.x.length);
  const y = new Int32Array(a.n + b.n);
  y.set(a.y);
  y.set(b.y, a.n);
  return { x, y, n: a.n + b.n, dim: a.dim };
}

/**
 * Temperature scaling (Guo et al. 2017): one scalar T fitted on the validation split so that
 * softmax(log p / T) minimises log loss, within TEMPERATURE_RANGE. Accuracy is unchanged;
 * confidence becomes honest.
 */
function calibrate(head: tf.Sequential, valid: FeatureSet): { temperature: number; valLoss: number } {
  const probs = tf.tidy(() => (head.predict(tf.tensor2d(valid.x, [valid.n, valid.dim])) as tf.Tensor2D).arraySync());
  const logits = probs.map((row) => logitsFromProbabilities(row));
  const temperature = fitTemperature(valid.y, logits);
  const scaled = logits.map((row) => applyTemperature(row, temperature));
  return { temperature, valLoss: logLoss(valid.y, scaled) };
}

function toFeatureSet(samples: Sample[], result: ExtractResult, offset: number): FeatureSet {
  const rows: number[] = [];
  for (let i = 0; i < samples.length; i++) if (result.ok[offset + i]) rows.push(i);
  const x = new Float32Array(rows.length * result.dim);
  const y = new Int32Array(rows.length);
  rows.forEach((i, r) => {
    x.set(result.features.subarray((offset + i) * result.dim, (offset + i + 1) * result.dim), r * result.dim);
    y[r] = samples[i].label;
  });
  return { x, y, n: rows.length, dim: result.dim };
}

/** Keras's "balanced": n / (classes × count of the class). */
export function classWeights(y: Int32Array, classes: number, mode: ClassWeightMode): number[] | undefined {
  const counts = new Array(classes).fill(0);
  for (const label of y) counts[label]++;
  const present = counts.filter((c) => c > 0);
  const imbalanced = Math.max(...present) > 1.5 * Math.min(...present);
  if (mode === 'none' || (mode === 'auto' && !imbalanced)) return undefined;
  return counts.map((c) => (c > 0 ? y.length / (classes * c) : 0));
}

function leakageWarnings(dataset: Dataset, result: ExtractResult): string[] {
  const trainHashes = new Map<string, string>();
  dataset.train.forEach((s, i) => result.hashes[i] && trainHashes.set(result.hashes[i], s.path));
  const warnings: string[] = [];
  dataset.valid.forEach((s, i) => {
    const twin = trainHashes.get(result.hashes[dataset.train.length + i]);
    if (twin) warnings.push(`leakage: ${s.path} (validation) is the same file as ${twin} (training)`);
  });
  return warnings;
}

async function readDataset(dataDir: string, o: TrainOptions & typeof TRAIN_DEFAULTS): Promise<Dataset> {
  o.onProgress?.({ status: 'initiate', task: 'dataset', message: `reading ${dataDir}` });
  const dataset = await loadDataset(dataDir, { layout: o.layout, labels: o.labels, valSplit: o.valSplit, seed: o.seed });
  if (o.exclude) dataset.warnings.push(...(await applyFixFile(dataset, o.exclude)));
  const ignored = dataset.ignored?.length ? `; ignored: ${dataset.ignored.map((f) => `${f}/`).join(', ')}` : '';
  o.onProgress?.({ status: 'done', task: 'dataset', message: `${dataset.layout} layout: ${dataset.classes.length} classes (${dataset.classes.join(', ')}), ${dataset.train.length} train, ${dataset.valid.length} valid${ignored}` });
  for (const message of dataset.warnings) o.onProgress?.({ status: 'warn', task: 'dataset', message });
  return dataset;
}

/** Features of the training (with augmented copies) and validation images, in rows. */
async function featureSets(dataset: Dataset, source: FusedSource, o: TrainOptions & typeof TRAIN_DEFAULTS) {
  const { onProgress, signal } = o;
  const paths = [...dataset.train, ...dataset.valid].map((s) => s.path);
  const extracted = await source.extract(paths, { onProgress, signal });
  const warnings = [...dataset.warnings, ...leakageWarnings(dataset, extracted)];
  for (const message of warnings.slice(dataset.warnings.length)) onProgress?.({ status: 'warn', task: 'dataset', message });
  let trainSet = toFeatureSet(dataset.train, extracted, 0);
  const trainImages = trainSet.n;
  const trainPaths = dataset.train.map((s) => s.path);
  const variants: Variant[] = [
    ...(o.augment.includes('flip') ? [{ flip: true }] : []),
    ...(o.augment.includes('crop') ? Array.from({ length: o.augmentCopies }, (_, k) => ({ crop: { copy: k + 1, seed: o.seed } })) : []),
  ];
  for (const variant of variants) {
    const features = await source.extract(trainPaths, { variant, onProgress, signal });
    trainSet = appendRows(trainSet, toFeatureSet(dataset.train, features, 0));
  }
  const validSet = toFeatureSet(dataset.valid, extracted, dataset.train.length);
  if (new Set(trainSet.y).size < 2) throw new UsageError(`${dataset.root}: fewer than 2 classes have readable training images; nothing to learn`);
  return { extracted, warnings, trainSet, trainImages, validSet };
}

/** `finetune lr-find`: the learning-rate range test on the training features (cached like any). */
export async function findLearningRate(dataDir: string, options: TrainOptions = {}): Promise<LrRangeResult> {
  const o = withDefaults(options);
  const dataset = await readDataset(dataDir, o);
  const source = await openFusedSource(backboneParts(o), o, o.onProgress);
  try {
    const { trainSet } = await featureSets(dataset, source, o);
    return await rangeTest(trainSet, dataset.classes.length, o, await resolveHeadEngine(o.engine));
  } finally {
    await source.close();
  }
}

/** The range test on a fresh head shaped as training would shape it. */
function rangeTest(trainSet: FeatureSet, classes: number, o: TrainOptions & typeof TRAIN_DEFAULTS, engine: HeadEngine): Promise<LrRangeResult> {
  return lrRangeTest(trainSet, classes, { hidden: o.hidden, dropout: o.dropout, seed: o.seed, batchSize: o.batchSize, engine });
}

const isFineTuning = (o: TrainOptions) => o.fineTune === 'all' || (o.fineTune ?? 0) > 0 || (o.fineTuneBlocks ?? 0) > 0;

function withDefaults(options: TrainOptions) {
  const defaults = isFineTuning(options) ? { ...TRAIN_DEFAULTS, ...FINE_TUNE_DEFAULTS } : TRAIN_DEFAULTS;
  return { ...defaults, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as typeof TRAIN_DEFAULTS & TrainOptions;
}

/** Learns a head on frozen backbone features of a folder of images. Writes nothing: see saveModel. */
export async function train(dataDir: string, options: TrainOptions = {}): Promise<TrainResult> {
  const o = withDefaults(options);
  checkNumber('--epochs', o.epochs, (v) => Number.isInteger(v) && v >= 1, 'a whole number ≥ 1');
  checkNumber('--batch-size', o.batchSize, (v) => Number.isInteger(v) && v >= 1, 'a whole number ≥ 1');
  checkNumber('--hidden', o.hidden, (v) => Number.isInteger(v) && v >= 0, 'a whole number ≥ 0 (0 = linear head)');
  checkNumber('--dropout', o.dropout, (v) => v >= 0 && v < 1, 'at least 0 and below 1');
  if (o.lr !== 'auto') checkNumber('--lr', o.lr, (v) => v > 0, 'above 0 (or auto)');
  checkNumber('--patience', o.patience, (v) => Number.isInteger(v) && v >= 1, 'a whole number ≥ 1');
  checkNumber('--seed', o.seed, (v) => Number.isInteger(v), 'a whole number');
  checkNumber('--augment-copies', o.augmentCopies, (v) => Number.isInteger(v) && v >= 1 && v <= 20, 'a whole number from 1 to 20');
  checkNumber('--ensemble', o.ensemble, (v) => Number.isInteger(v) && v >= 1 && v <= 20, 'a whole number from 1 to 20');
  const onProgress = o.onProgress;

  const dataset = await readDataset(dataDir, o);

  const parts = backboneParts(o);
  const fineTuning = isFineTuning(o);
  // The whole network trains on onnxruntime; --engine tfjs keeps the tfjs path (pointwise layers on wasm, all on tfjs-node).
  const wholeNetwork = fineTuning && o.engine !== 'tfjs' && (await resolveHeadEngine(o.engine)) === 'onnx';
  if (!wholeNetwork && o.augment.some((a) => a === 'vflip' || a === 'rot90')) throw new UsageError('--augment vflip and rot90 act while fine-tuning the whole network: add --fine-tune all (onnx engine), or use flip and crop');
  if (fineTuning && !wholeNetwork && o.fineTune === 'all') throw new UsageError('--fine-tune all runs on the onnx engine: leave out --engine tfjs, or give a number of layers');
  const fineTuneEpochs = o.fineTuneEpochs ?? FINE_TUNE_DEFAULTS.fineTuneEpochs;
  if (wholeNetwork) checkNumber('--fine-tune-epochs', fineTuneEpochs, (v) => Number.isInteger(v) && v >= 1, 'a whole number ≥ 1');
  let plan: FineTunePlan | undefined;
  let planOwner: Backbone | undefined;
  if (fineTuning) {
    if (parts.length > 1) throw new UsageError('--fine-tune works with one backbone, not fused ones');
    if (isOnnxPath(parts[0].backbone)) throw onnxFeaturesOnly(parts[0].backbone);
    if (o.pooling === 'avgmax') throw new UsageError('--fine-tune works with --pooling avg, max or flatten, not avgmax');
    if (o.ensemble > 1) throw new UsageError('--ensemble works on frozen features; leave it out with --fine-tune');
  }
  if (fineTuning && !wholeNetwork) {
    // The frozen part ends at the cut: that is the layer whose output is extracted and cached.
    const backend = await initBackend(o.backend);
    planOwner = await loadBackbone(parts[0].backbone, { ...parts[0], onProgress });
    try {
      plan = planFineTune(planOwner.model, planOwner.layer, { layers: o.fineTune === 'all' ? undefined : o.fineTune, blocks: o.fineTuneBlocks, backend });
    } catch (err) {
      planOwner.model.dispose();
      throw err;
    }
    parts[0] = { ...parts[0], layer: plan.cutLayer, pooling: 'flatten' };
  }
  const source = await openFusedSource(parts, o, onProgress).catch((err) => {
    planOwner?.model.dispose();
    throw err;
  });
  try {
    const { extracted, warnings, trainSet, trainImages, validSet } = await featureSets(dataset, source, o);
    for (const message of validationWarnings(dataset, validSet.y, o)) {
      warnings.push(message);
      onProgress?.({ status: 'warn', task: 'dataset', message });
    }
    const weights = classWeights(trainSet.y, dataset.classes.length, o.classWeight);
    let lr = o.lr === 'auto' ? 0 : o.lr;
    let lrFind: LrRangeResult | undefined;
    if (o.lr === 'auto') {
      if (plan) throw new UsageError('--lr auto works on frozen features; give --lr with --fine-tune');
      lrFind = await rangeTest(trainSet, dataset.classes.length, o, await resolveHeadEngine(o.engine));
      lr = lrFind.suggested;
      onProgress?.({ status: 'done', task: 'lr-find', message: `learning rate ${lr.toPrecision(2)} (steepest descent of the range test; lowest loss at ${lrFind.minimum.toPrecision(2)})` });
    }

    const started = performance.now();
    onProgress?.({ status: 'initiate', task: 'train', message: `training ${o.ensemble > 1 ? `${o.ensemble} heads` : 'the head'} on ${trainSet.n} images`, total: o.epochs * o.ensemble, unit: 'epochs' });
    const headOptions = {
      hidden: o.hidden,
      dropout: o.dropout,
      seed: o.seed,
      epochs: o.epochs,
      batchSize: o.batchSize,
      lr,
      patience: o.patience,
      classWeights: weights,
      signal: o.signal,
      onEpoch: (record: EpochRecord, total: number) => onProgress?.({ status: 'progress', task: 'train', current: record.epoch, total, unit: 'epochs', info: { ...record, heads: o.ensemble } }),
    };
    const valid = validSet.n > 0 ? validSet : undefined;
    // Fine-tuning trains backbone layers with the head, on tfjs.
    const headEngine: HeadEngine = plan ? 'tfjs' : await resolveHeadEngine(o.engine);
    const trained = plan
      ? await fineTune(plan, trainSet, valid, dataset.classes.length, { ...headOptions, pooling: o.pooling, fineTuneLr: o.fineTuneLr ?? lr / 10, onProgress })
      : headEngine === 'onnx'
        ? await trainHeadsOnnx(trainSet, valid, dataset.classes.length, { ...headOptions, threads: o.threads }, o.ensemble)
        : await trainEnsemble(trainSet, valid, dataset.classes.length, headOptions, o.ensemble);
    const first = source.parts[0].backbone;
    const stage = wholeNetwork
      ? await fineTuneStage(source.parts[0], dataset.train, dataset.valid, trained.model, {
          layers: o.fineTuneBlocks && 'model' in first ? blockLayerCount(first.model, first.layer, o.fineTuneBlocks) : o.fineTune!,
          epochs: fineTuneEpochs,
          lr: o.fineTuneLr ?? lr * FINE_TUNE_DEFAULTS.fineTuneLrFactor,
          batchSize: o.batchSize,
          seed: o.seed,
          patience: o.patience,
          augments: o.augment,
          dropout: o.dropout,
          threads: o.threads,
          signal: o.signal,
          onProgress,
        })
      : undefined;
    const trainSeconds = (performance.now() - started) / 1000;
    // After fine-tuning, the temperature is fitted on features of the trained network.
    const calibrationSet = stage?.validFeatures ?? validSet;
    const calibration = o.calibrate && calibrationSet.n >= MIN_CALIBRATION_IMAGES ? calibrate(trained.model, calibrationSet) : { temperature: 1, valLoss: undefined };
    const best = trained.final ?? trained.history[trained.bestEpoch - 1] ?? trained.history[trained.history.length - 1];
    const bestEpochs = trained.members?.map((m) => m.bestEpoch);
    onProgress?.({ status: 'done', task: 'train', message: bestEpochs ? `best epochs ${bestEpochs.join(', ')} (${bestEpochs.length} heads merged)` : `best epoch ${trained.bestEpoch} of ${trained.history.length}` });

    const skipped = [...dataset.skipped, ...extracted.skipped];
    const counts = { train: trainImages, valid: validSet.n, skipped: skipped.length };
    const manifest: Omit<Manifest, 'head'> = {
      format: BUNDLE_FORMAT,
      formatVersion: BUNDLE_VERSION,
      createdAt: new Date().toISOString(),
      classes: dataset.classes,
      backbones: backboneRecords(source),
      featureSize: source.featureSize,
      temperature: calibration.temperature,
      training: {
        // Absolute, so that evaluate re-splits these very images from any working directory.
        data: path.resolve(dataset.root),
        ...(o.labels !== undefined || dataset.layout === 'csv' ? { labels: path.resolve(o.labels ?? dataDir) } : {}),
        layout: dataset.layout,
        valSplit: o.valSplit,
        seed: o.seed,
        hidden: o.hidden,
        dropout: o.dropout,
        augment: o.augment,
        augmentCopies: o.augment.includes('crop') ? o.augmentCopies : undefined,
        calibrate: o.calibrate,
        ensemble: o.ensemble,
        fineTune: plan
          ? { layers: plan.layers.map((l) => l.name), lr: o.fineTuneLr ?? lr / 10, pooling: o.pooling }
          : stage
            ? { engine: 'onnx' as const, layers: stage.summary.layers, lr: o.fineTuneLr ?? lr * FINE_TUNE_DEFAULTS.fineTuneLrFactor, epochs: fineTuneEpochs, bestEpoch: stage.summary.bestEpoch, pooling: o.pooling }
            : null,
        lr,
        lrFind: lrFind ? { suggested: lrFind.suggested, minimum: lrFind.minimum } : null,
        epochs: o.epochs,
        batchSize: o.batchSize,
        patience: o.patience,
        classWeights: weights ?? null,
        engine: engineOf(source),
        device: deviceOf(source),
        backend: source.backend,
        headEngine,
      },
      counts,
      metrics: {
        valAccuracy: stage?.backboneOnnx ? (stage.summary.valAccuracyAfter ?? undefined) : best.valAccuracy,
        valLoss: calibration.valLoss ?? (stage?.backboneOnnx ? (stage.summary.valLossAfter ?? undefined) : best.valLoss),
        valLossUncalibrated: stage?.backboneOnnx ? (stage.summary.valLossAfter ?? undefined) : best.valLoss,
        trainAccuracy: best.accuracy,
        trainLoss: best.loss,
        epochs: trained.history.length,
        bestEpoch: trained.bestEpoch,
        ...(bestEpochs && { bestEpochs }),
      },
      history: trained.history,
      versions: packageVersions(),
    };
    return {
      head: trained.model,
      manifest,
      classes: dataset.classes,
      history: trained.history,
      counts,
      skipped,
      warnings,
      cache: extracted.cache,
      timing: { featuresSeconds: extracted.seconds, trainSeconds, imagesPerSecond: extracted.imagesPerSecond },
      engine: engineOf(source),
      device: deviceOf(source),
      backend: source.backend,
      headEngine,
      fineTune: stage?.summary ?? null,
      backboneOnnx: stage?.backboneOnnx,
    };
  } finally {
    await source.close();
    planOwner?.model.dispose();
  }
}
