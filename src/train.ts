import * as tf from './tf.ts';
import { loadBackbone, type Backbone } from './backbones/resolve.ts';
import { BUNDLE_FORMAT, BUNDLE_VERSION, type Manifest } from './bundle/manifest.ts';
import type { Skipped } from './data/files.ts';
import type { ResizeMode } from './data/image.ts';
import { loadDataset, type Dataset, type Layout, type Sample } from './data/layout.ts';
import type { Preprocess } from './data/preprocess.ts';
import { initBackend, type BackendChoice } from './engines/backend.ts';
import { createExtractor, type EngineChoice } from './engines/index.ts';
import type { Device, FeatureExtractor, Pooling } from './engines/types.ts';
import { UsageError } from './errors.ts';
import { extractFeatures, type ExtractResult } from './features/extract.ts';
import { openFeatureStore, type CacheOptions } from './features/store.ts';
import type { EpochRecord, FeatureSet } from './head/train.ts';
import { trainHead } from './head/train.ts';
import type { OnProgress } from './progress.ts';
import { packageVersions } from './versions.ts';
import { TRAIN_DEFAULTS, type ClassWeightMode } from './defaults.ts';

export { TRAIN_DEFAULTS, type ClassWeightMode } from './defaults.ts';

export interface BackboneChoice {
  backbone?: string;
  weights?: string;
  layer?: string;
  /** The network's own output as features (ImageNet probabilities). */
  output?: boolean;
  /** Run a fully convolutional backbone at [height, width] instead of its declared size. */
  inputSize?: readonly [number, number];
  preprocess?: Preprocess;
  pooling?: Pooling;
  resize?: ResizeMode;
  /** Fetch missing registry weights (default yes; FINETUNE_OFFLINE=1 or false forbids it). */
  download?: boolean;
}

export interface EngineSettings {
  engine?: EngineChoice;
  backend?: BackendChoice;
  threads?: number;
  device?: Device;
  /** Images per backbone forward pass. */
  extractBatchSize?: number;
}

export interface TrainOptions extends BackboneChoice, EngineSettings, CacheOptions {
  layout?: Layout;
  valSplit?: number;
  seed?: number;
  hidden?: number;
  dropout?: number;
  lr?: number;
  epochs?: number;
  batchSize?: number;
  patience?: number;
  classWeight?: ClassWeightMode;
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
}

function checkNumber(name: string, value: number, ok: (v: number) => boolean, rule: string): number {
  if (!Number.isFinite(value) || !ok(value)) throw new UsageError(`${name} ${value}: must be ${rule}`);
  return value;
}

/** Backbone, extractor and cache for one feature spec: shared by train, predict and evaluate. */
export interface FeatureSource {
  backbone: Backbone;
  extractor: FeatureExtractor;
  pooling: Pooling;
  resize: ResizeMode;
  backend: string;
  extract(paths: string[], opts?: { flip?: boolean; onProgress?: OnProgress; signal?: AbortSignal; task?: string }): Promise<ExtractResult>;
  close(): Promise<void>;
}

export async function openFeatureSource(spec: string, choice: BackboneChoice, settings: EngineSettings & CacheOptions, onProgress?: OnProgress): Promise<FeatureSource> {
  const backend = await initBackend(settings.backend ?? TRAIN_DEFAULTS.backend);
  onProgress?.({ status: 'initiate', task: 'backbone', message: `loading backbone ${spec}` });
  const backbone = await loadBackbone(spec, { ...choice, onProgress });
  const pooling = choice.pooling ?? TRAIN_DEFAULTS.pooling;
  const resize = choice.resize ?? TRAIN_DEFAULTS.resize;
  const extractor = await createExtractor(backbone.model, {
    engine: settings.engine,
    backend: settings.backend,
    layer: backbone.layer,
    pooling,
    threads: settings.threads,
    device: settings.device,
    onFallback: (message) => onProgress?.({ status: 'warn', task: 'backbone', message }),
  });
  onProgress?.({ status: 'done', task: 'backbone', message: `${backbone.id} → ${backbone.layer} (${pooling}, ${extractor.featureSize} features) on ${extractor.engine}/${extractor.device}` });
  const caches = new Map<boolean, Awaited<ReturnType<typeof openFeatureStore>>>();
  const storeFor = async (flip: boolean) => {
    if (!caches.has(flip)) {
      const featureSpec = {
        backbone: backbone.id,
        weightsChecksum: backbone.checksum,
        layer: backbone.layer,
        pooling,
        preprocess: backbone.preprocess,
        inputSize: backbone.inputSize,
        resize,
        augment: flip ? 'flip' : 'none',
      };
      caches.set(flip, await openFeatureStore(featureSpec, extractor.featureSize, settings));
    }
    return caches.get(flip)!.store;
  };
  return {
    backbone,
    extractor,
    pooling,
    resize,
    backend,
    async extract(paths, opts = {}) {
      return extractFeatures(paths, {
        extractor,
        preprocess: backbone.preprocess,
        resize,
        batchSize: settings.extractBatchSize ?? TRAIN_DEFAULTS.extractBatchSize,
        flip: opts.flip,
        cache: await storeFor(opts.flip ?? false),
        onProgress: opts.onProgress,
        signal: opts.signal,
        task: opts.task,
      });
    },
    async close() {
      await extractor.dispose();
      for (const c of caches.values()) await c.close();
      backbone.model.dispose();
    },
  };
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

/** Learns a head on frozen backbone features of a folder of images. Writes nothing: see saveModel. */
export async function train(dataDir: string, options: TrainOptions = {}): Promise<TrainResult> {
  const o = { ...TRAIN_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as typeof TRAIN_DEFAULTS & TrainOptions;
  checkNumber('--epochs', o.epochs, (v) => Number.isInteger(v) && v >= 1, 'a whole number ≥ 1');
  checkNumber('--batch-size', o.batchSize, (v) => Number.isInteger(v) && v >= 1, 'a whole number ≥ 1');
  checkNumber('--hidden', o.hidden, (v) => Number.isInteger(v) && v >= 0, 'a whole number ≥ 0 (0 = linear head)');
  checkNumber('--dropout', o.dropout, (v) => v >= 0 && v < 1, 'at least 0 and below 1');
  checkNumber('--lr', o.lr, (v) => v > 0, 'above 0');
  checkNumber('--patience', o.patience, (v) => Number.isInteger(v) && v >= 1, 'a whole number ≥ 1');
  checkNumber('--seed', o.seed, (v) => Number.isInteger(v), 'a whole number');
  const onProgress = o.onProgress;

  onProgress?.({ status: 'initiate', task: 'dataset', message: `reading ${dataDir}` });
  const dataset = await loadDataset(dataDir, { layout: o.layout, valSplit: o.valSplit, seed: o.seed });
  onProgress?.({ status: 'done', task: 'dataset', message: `${dataset.layout} layout: ${dataset.classes.length} classes (${dataset.classes.join(', ')}), ${dataset.train.length} train, ${dataset.valid.length} valid` });
  for (const message of dataset.warnings) onProgress?.({ status: 'warn', task: 'dataset', message });

  const source = await openFeatureSource(o.backbone, o, o, onProgress);
  try {
    const paths = [...dataset.train, ...dataset.valid].map((s) => s.path);
    const extracted = await source.extract(paths, { onProgress, signal: o.signal });
    const warnings = [...dataset.warnings, ...leakageWarnings(dataset, extracted)];
    for (const message of warnings.slice(dataset.warnings.length)) onProgress?.({ status: 'warn', task: 'dataset', message });
    const trainSet = toFeatureSet(dataset.train, extracted, 0);
    const validSet = toFeatureSet(dataset.valid, extracted, dataset.train.length);
    const present = new Set(trainSet.y);
    if (present.size < 2) throw new UsageError(`${dataDir}: fewer than 2 classes have readable training images; nothing to learn`);
    const weights = classWeights(trainSet.y, dataset.classes.length, o.classWeight);

    const started = performance.now();
    onProgress?.({ status: 'initiate', task: 'train', message: `training the head on ${trainSet.n} images`, total: o.epochs, unit: 'epochs' });
    const trained = await trainHead(trainSet, validSet.n > 0 ? validSet : undefined, dataset.classes.length, {
      hidden: o.hidden,
      dropout: o.dropout,
      seed: o.seed,
      epochs: o.epochs,
      batchSize: o.batchSize,
      lr: o.lr,
      patience: o.patience,
      classWeights: weights,
      signal: o.signal,
      onEpoch: (record, total) => onProgress?.({ status: 'progress', task: 'train', current: record.epoch, total, unit: 'epochs', info: { ...record } }),
    });
    const trainSeconds = (performance.now() - started) / 1000;
    const best = trained.history[trained.bestEpoch - 1] ?? trained.history[trained.history.length - 1];
    onProgress?.({ status: 'done', task: 'train', message: `best epoch ${trained.bestEpoch} of ${trained.history.length}` });

    const skipped = [...dataset.skipped, ...extracted.skipped];
    const counts = { train: trainSet.n, valid: validSet.n, skipped: skipped.length };
    const { backbone, extractor } = source;
    const manifest: Omit<Manifest, 'head'> = {
      format: BUNDLE_FORMAT,
      formatVersion: BUNDLE_VERSION,
      createdAt: new Date().toISOString(),
      classes: dataset.classes,
      backbone: {
        id: backbone.id,
        checksum: backbone.checksum,
        layer: backbone.layer,
        pooling: source.pooling,
        preprocess: backbone.preprocess,
        inputSize: backbone.inputSize,
        resize: source.resize,
        featureSize: extractor.featureSize,
      },
      temperature: 1,
      training: {
        data: dataDir,
        layout: dataset.layout,
        valSplit: o.valSplit,
        seed: o.seed,
        hidden: o.hidden,
        dropout: o.dropout,
        lr: o.lr,
        epochs: o.epochs,
        batchSize: o.batchSize,
        patience: o.patience,
        classWeights: weights ?? null,
        engine: extractor.engine,
        device: extractor.device,
        backend: source.backend,
      },
      counts,
      metrics: {
        valAccuracy: best.valAccuracy,
        valLoss: best.valLoss,
        trainAccuracy: best.accuracy,
        trainLoss: best.loss,
        epochs: trained.history.length,
        bestEpoch: trained.bestEpoch,
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
      engine: extractor.engine,
      device: extractor.device,
      backend: source.backend,
    };
  } finally {
    await source.close();
  }
}
