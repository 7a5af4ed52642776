import { loadDataset, type Dataset, type Layout, type Sample } from '../data/layout.ts';
import type { Skipped } from '../data/files.ts';
import type { TrainingRecord } from '../bundle/manifest.ts';
import { TRAIN_DEFAULTS } from '../defaults.ts';
import { UsageError } from '../errors.ts';
import type { FusedSource } from '../features/source.ts';
import { openFusedSource } from '../features/source.ts';
import type { FeatureSet } from '../head/train.ts';
import type { FinetuneModel } from '../pipeline/predict.ts';
import type { OnProgress } from '../progress.ts';
import { backboneParts, classWeights, type TrainOptions } from '../pipeline/train.ts';
import { resolveHeadEngine } from '../head/train-onnx.ts';
import { applyFixFile } from './fix-list.ts';
import { judgeLabels, LABEL_SCORES, type LabelScore } from './label-issues.ts';
import { centredUnitRows, nearestOfClass, searchNeighbours, type NeighbourTable } from './neighbours.ts';
import { outOfFoldProbabilities } from './out-of-fold.ts';
import { outlierCut, outlierScores } from './outliers.ts';
import { AUDIT_DEFAULTS } from './defaults.ts';

export { AUDIT_DEFAULTS } from './defaults.ts';


export interface AuditOptions extends Omit<TrainOptions, 'epochs' | 'ensemble' | 'calibrate' | 'augment' | 'augmentCopies' | 'fineTune' | 'fineTuneBlocks' | 'fineTuneLr' | 'lr'> {
  /** Audit with the backbone and head recipe of this trained model (its features are cached already). */
  model?: FinetuneModel;
  lr?: number;
  epochs?: number;
  folds?: number;
  labelScore?: LabelScore;
  duplicateThreshold?: number;
  outlierK?: number;
  neighbours?: number;
}

export type SplitName = 'train' | 'valid';

export interface AuditImage {
  path: string;
  split: SplitName;
  label: string;
}

export interface Neighbour {
  path: string;
  similarity: number;
}

export interface LabelIssue {
  path: string;
  split: SplitName;
  given: string;
  suggested: string;
  /** Label quality (labelScore): low means the given label is probably wrong. */
  score: number;
  /** Out-of-fold probability of the given and of the suggested class. */
  givenProbability: number;
  suggestedProbability: number;
  /** Nearest images labelled with the given class, and with the suggested one. */
  nearestGiven: Neighbour[];
  nearestSuggested: Neighbour[];
}

export interface DuplicatePair {
  a: string;
  b: string;
  splitA: SplitName;
  splitB: SplitName;
  labelA: string;
  labelB: string;
  similarity: number;
  /** CSLS score (2·cos − r_a − r_b): how much closer the two are than each is to its 10 nearest; ≥ duplicateThreshold. */
  score: number;
  /** The same bytes (equal sha256), not only similar features. */
  exact: boolean;
  /** One in train, one in valid: validation scores the model on an image it trained on. */
  leakage: boolean;
}

export interface Outlier {
  path: string;
  split: SplitName;
  label: string;
  /** Distance (1 − cosine similarity) to the k-th nearest image of the nearest class. */
  score: number;
  /** The nearest images of any class. */
  nearest: Neighbour[];
}

export interface AuditResult {
  root: string;
  layout: Layout;
  classes: string[];
  /** The readable images audited, in the order of every per-image array below. */
  images: AuditImage[];
  /** Flagged by the confident joint, most suspicious first. */
  labelIssues: LabelIssue[];
  duplicates: DuplicatePair[];
  outliers: Outlier[];
  /** Per image: label quality, outlier score, and n × classes out-of-fold probabilities. */
  scores: { label: Float32Array; outlier: Float32Array; outOfFold: Float32Array };
  settings: { folds: number; epochs: number; labelScore: LabelScore; duplicateThreshold: number; outlierK: number; outlierCut: number; backbone: string; featureSize: number };
  counts: { images: number; train: number; valid: number; skipped: number; labelIssues: number; duplicates: number; leakage: number; outliers: number };
  skipped: Skipped[];
  warnings: string[];
  cache: { hits: number; misses: number };
  timing: { featuresSeconds: number; outOfFoldSeconds: number; searchSeconds: number };
}

function check(name: string, value: number, ok: boolean, rule: string): void {
  if (!Number.isFinite(value) || !ok) throw new UsageError(`${name} ${value}: must be ${rule}`);
}

function validate(o: Required<Pick<AuditOptions, 'folds' | 'epochs' | 'duplicateThreshold' | 'outlierK' | 'neighbours' | 'labelScore'>>): void {
  check('--folds', o.folds, Number.isInteger(o.folds) && o.folds >= 2 && o.folds <= 20, 'a whole number from 2 to 20');
  check('--epochs', o.epochs, Number.isInteger(o.epochs) && o.epochs >= 1, 'a whole number ≥ 1');
  check('--duplicate-threshold', o.duplicateThreshold, o.duplicateThreshold > 0 && o.duplicateThreshold <= 2, 'above 0 and at most 2 (a CSLS score)');
  check('--outlier-k', o.outlierK, Number.isInteger(o.outlierK) && o.outlierK >= 1 && o.outlierK <= 50, 'a whole number from 1 to 50');
  if (!(LABEL_SCORES as readonly string[]).includes(o.labelScore)) throw new UsageError(`--label-score ${o.labelScore}: use ${LABEL_SCORES.join(' or ')}`);
}

/**
 * The feature columns compared for duplicates and neighbours: the average-pooled half of an
 * avgmax part, the whole of any other. Measured on planted copies (README, Audit): the maximum
 * of a feature map moves with a 5% crop, its average hardly does.
 */
function similarityColumns(source: FusedSource): [number, number][] {
  let offset = 0;
  return source.parts.map((p) => {
    const size = p.extractor.featureSize;
    const range: [number, number] = [offset, offset + (p.pooling === 'avgmax' ? size / 2 : size)];
    offset += size;
    return range;
  });
}

function pickColumns(x: Float32Array, n: number, dim: number, columns: [number, number][]): { x: Float32Array; dim: number } {
  const width = columns.reduce((w, [a, b]) => w + b - a, 0);
  if (width === dim) return { x, dim };
  const out = new Float32Array(n * width);
  for (let i = 0; i < n; i++) {
    let at = i * width;
    for (const [a, b] of columns) {
      out.set(x.subarray(i * dim + a, i * dim + b), at);
      at += b - a;
    }
  }
  return { x: out, dim: width };
}

async function openSource(o: AuditOptions, onProgress?: OnProgress): Promise<FusedSource> {
  if (!o.model) return openFusedSource(backboneParts(o), o, onProgress);
  const { openModelFeatures } = await import('../pipeline/predict.ts');
  return openModelFeatures(o.model, { ...o, weights: Array.isArray(o.weights) ? o.weights.join(',') : o.weights, backbone: undefined, onProgress });
}

/** The head recipe: train's flags, or the model's when auditing with --model. */
function headRecipe(o: AuditOptions) {
  const t: Partial<TrainingRecord> = o.model?.manifest.training ?? {};
  return {
    hidden: o.hidden ?? t.hidden ?? TRAIN_DEFAULTS.hidden,
    dropout: o.dropout ?? t.dropout ?? TRAIN_DEFAULTS.dropout,
    lr: o.lr ?? t.lr ?? (TRAIN_DEFAULTS.lr as number),
    batchSize: o.batchSize ?? t.batchSize ?? TRAIN_DEFAULTS.batchSize,
  };
}

/**
 * Finds the images that would cost accuracy: labels the other images contradict (confident
 * learning on K-fold out-of-fold probabilities), near-duplicates within and across train/valid,
 * and images far from every class. Reads train and valid; writes nothing.
 */
export async function audit(dataDir: string, options: AuditOptions = {}): Promise<AuditResult> {
  const set = <T>(v: T | undefined, d: T): T => (v === undefined ? d : v);
  const folds = set(options.folds, AUDIT_DEFAULTS.folds);
  const epochs = set(options.epochs, AUDIT_DEFAULTS.epochs);
  const labelScore = set(options.labelScore, AUDIT_DEFAULTS.labelScore);
  const duplicateThreshold = set(options.duplicateThreshold, AUDIT_DEFAULTS.duplicateThreshold);
  const outlierK = set(options.outlierK, AUDIT_DEFAULTS.outlierK);
  const neighbours = set(options.neighbours, AUDIT_DEFAULTS.neighbours);
  validate({ folds, epochs, labelScore, duplicateThreshold, outlierK, neighbours });
  const seed = set(options.seed, TRAIN_DEFAULTS.seed);
  const { onProgress, signal } = options;
  const recipe = headRecipe(options);

  onProgress?.({ status: 'initiate', task: 'dataset', message: `reading ${dataDir}` });
  const dataset: Dataset = await loadDataset(dataDir, { layout: options.layout, valSplit: options.valSplit, seed, classes: options.model?.classes });
  const warnings = [...dataset.warnings, ...(options.exclude ? await applyFixFile(dataset, options.exclude) : [])];
  onProgress?.({ status: 'done', task: 'dataset', message: `${dataset.layout} layout: ${dataset.classes.length} classes, ${dataset.train.length} train, ${dataset.valid.length} valid` });
  for (const message of warnings) onProgress?.({ status: 'warn', task: 'dataset', message });

  const samples: (Sample & { split: SplitName })[] = [...dataset.train.map((s) => ({ ...s, split: 'train' as const })), ...dataset.valid.map((s) => ({ ...s, split: 'valid' as const }))];
  const k = dataset.classes.length;
  const source = await openSource(options, onProgress);
  let extracted;
  let backbone: string;
  let columns: [number, number][];
  try {
    extracted = await source.extract(samples.map((s) => s.path), { onProgress, signal });
    backbone = source.parts.map((p) => `${p.backbone.id} → ${p.backbone.layer} (${p.pooling})`).join(' + ');
    columns = similarityColumns(source);
  } finally {
    await source.close();
  }
  const rows: number[] = [];
  samples.forEach((_, i) => extracted.ok[i] && rows.push(i));
  const n = rows.length;
  const dim = extracted.dim;
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  rows.forEach((i, r) => {
    x.set(extracted.features.subarray(i * dim, (i + 1) * dim), r * dim);
    y[r] = samples[i].label;
  });
  const present = new Set(y).size;
  if (present < 2) throw new UsageError(`${dataDir}: fewer than 2 classes have readable images; nothing to audit`);
  if (n < folds * 2) throw new UsageError(`${dataDir}: ${n} readable images are too few for ${folds} folds; use --folds ${Math.max(2, Math.floor(n / 2))} or add images`);
  const images: AuditImage[] = rows.map((i) => ({ path: samples[i].path, split: samples[i].split, label: dataset.classes[samples[i].label] }));
  const hashes = rows.map((i) => extracted.hashes[i]);

  const oofStarted = performance.now();
  onProgress?.({ status: 'initiate', task: 'audit', message: `out-of-fold probabilities: ${folds} heads on ${n} images`, total: folds, unit: 'folds' });
  const features: FeatureSet = { x, y, n, dim };
  const engine = await resolveHeadEngine(options.engine);
  const probabilities = await outOfFoldProbabilities(features, k, {
    folds,
    engine,
    threads: options.threads,
    seed,
    epochs,
    patience: epochs,
    ...recipe,
    classWeights: classWeights(y, k, options.classWeight ?? TRAIN_DEFAULTS.classWeight),
    signal,
    onFold: (fold, total) => onProgress?.({ status: 'progress', task: 'audit', current: fold, total, unit: 'folds' }),
  });
  onProgress?.({ status: 'done', task: 'audit', message: 'out-of-fold probabilities' });
  const outOfFoldSeconds = (performance.now() - oofStarted) / 1000;

  const searchStarted = performance.now();
  onProgress?.({ status: 'initiate', task: 'search', message: `nearest neighbours of ${n} images`, total: n, unit: 'images' });
  const view = pickColumns(x, n, dim, columns);
  const table = await searchNeighbours(centredUnitRows(view.x, n, view.dim), n, view.dim, y, k, {
    k: Math.max(outlierK, neighbours),
    threshold: duplicateThreshold,
    engine,
    threads: options.threads,
    signal,
    onBlock: (done, total) => onProgress?.({ status: 'progress', task: 'search', current: done, total, unit: 'images' }),
  });
  onProgress?.({ status: 'done', task: 'search' });
  const searchSeconds = (performance.now() - searchStarted) / 1000;

  const near = (list: { index: number; similarity: number }[]): Neighbour[] => list.slice(0, neighbours).map((m) => ({ path: images[m.index].path, similarity: m.similarity }));
  const verdicts = judgeLabels(probabilities, y, k, labelScore);
  const labelIssues: LabelIssue[] = verdicts
    .map((v, i) => ({ v, i }))
    .filter(({ v }) => v.flagged)
    .sort((a, b) => a.v.score - b.v.score || (images[a.i].path < images[b.i].path ? -1 : 1))
    .map(({ v, i }) => ({
      path: images[i].path,
      split: images[i].split,
      given: images[i].label,
      suggested: dataset.classes[v.suggested],
      score: v.score,
      givenProbability: probabilities[i * k + y[i]],
      suggestedProbability: probabilities[i * k + v.suggested],
      nearestGiven: near(nearestOfClass(table, i, y[i])),
      nearestSuggested: near(nearestOfClass(table, i, v.suggested)),
    }));

  const duplicates: DuplicatePair[] = table.pairs.map(({ a, b, similarity, score }) => ({
    a: images[a].path,
    b: images[b].path,
    splitA: images[a].split,
    splitB: images[b].split,
    labelA: images[a].label,
    labelB: images[b].label,
    similarity,
    score,
    exact: hashes[a] !== undefined && hashes[a] === hashes[b],
    leakage: images[a].split !== images[b].split,
  }));

  const outlier = outlierScores(table, n, outlierK);
  const cut = outlierCut(outlier);
  const outliers: Outlier[] = [...outlier.keys()]
    .filter((i) => outlier[i] > cut)
    .sort((a, b) => outlier[b] - outlier[a] || (images[a].path < images[b].path ? -1 : 1))
    .map((i) => ({
      path: images[i].path,
      split: images[i].split,
      label: images[i].label,
      score: outlier[i],
      nearest: near(
        Array.from({ length: k }, (_, c) => nearestOfClass(table, i, c))
          .flat()
          .sort((p, q) => q.similarity - p.similarity),
      ),
    }));

  const skipped = [...dataset.skipped, ...extracted.skipped];
  return {
    root: dataDir,
    layout: dataset.layout,
    classes: dataset.classes,
    images,
    labelIssues,
    duplicates,
    outliers,
    scores: { label: Float32Array.from(verdicts, (v) => v.score), outlier, outOfFold: probabilities },
    settings: { folds, epochs, labelScore, duplicateThreshold, outlierK, outlierCut: cut, backbone, featureSize: dim },
    counts: {
      images: n,
      train: images.filter((i) => i.split === 'train').length,
      valid: images.filter((i) => i.split === 'valid').length,
      skipped: skipped.length,
      labelIssues: labelIssues.length,
      duplicates: duplicates.length,
      leakage: duplicates.filter((d) => d.leakage).length,
      outliers: outliers.length,
    },
    skipped,
    warnings,
    cache: extracted.cache,
    timing: { featuresSeconds: extracted.seconds, outOfFoldSeconds, searchSeconds },
  };
}
