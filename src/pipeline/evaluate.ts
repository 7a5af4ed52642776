import path from 'node:path';
import { loadDataset, samplesOf, SPLITS, type Layout, type Split } from '../data/layout.ts';
import { UsageError } from '../errors.ts';
import { evaluatePredictions, type Evaluation } from '../metrics/index.ts';
import { openModelFeatures, scoreImages, type FinetuneModel, type PredictOptions } from './predict.ts';
import type { GalleryItem } from '../report/index.ts';

export interface EvaluateOptions extends PredictOptions {
  /** Which images: valid (default where the data has a validation split), train, test, all. */
  split?: Split;
  layout?: Layout;
  /** A CSV of path,label[,split] (the csv layout), as in training. */
  labels?: string;
}

export interface EvaluateResult {
  split: Split;
  evaluation: Evaluation;
  /** Log loss and ECE without the bundle's temperature (present when it has one ≠ 1). */
  uncalibrated?: { temperature: number; logLoss: number; ece: number };
  /** One entry per evaluated image (for reports and mistake lists). */
  items: GalleryItem[];
  counts: { evaluated: number; skipped: number };
  skipped: { path: string; reason: string }[];
  cache: { hits: number; misses: number };
  seconds: number;
}

/**
 * Scores a labelled folder with a trained model. A folders-layout data set is split exactly
 * as in training (same seed and fraction), so `valid` means the images the head never saw;
 * any other folder of class folders is evaluated whole.
 */
export async function evaluate(model: FinetuneModel, dataDir: string, opts: EvaluateOptions = {}): Promise<EvaluateResult> {
  if (opts.split && !(SPLITS as readonly string[]).includes(opts.split)) throw new UsageError(`--split ${opts.split}: use one of ${SPLITS.join(', ')}`);
  const training = model.manifest.training;
  // Bundles written before the path was stored absolute hold it as given: resolved here, as before.
  const same = (a: string | undefined, b: string | undefined) => (a === undefined ? b === undefined : b !== undefined && path.resolve(a) === path.resolve(b));
  const sameData = training.data !== undefined && (same(training.labels, opts.labels) ? same(training.data, dataDir) : training.labels !== undefined && same(training.labels, dataDir));
  const dataset = await loadDataset(dataDir, {
    layout: opts.layout ?? (sameData ? training.layout : undefined),
    labels: opts.labels,
    classes: model.classes,
    valSplit: sameData ? training.valSplit : 0,
    seed: training.seed,
  });
  const split = opts.split ?? (dataset.layout === 'fastai' || sameData ? 'valid' : 'all');
  const samples = samplesOf(dataset, split);
  if (samples.length === 0) throw new UsageError(`${dataDir} has no images in the ${split} split: choose another --split`);
  const source = await openModelFeatures(model, opts);
  try {
    const scored = await scoreImages(model, source, samples.map((s) => s.path), opts);
    const k = model.classes.length;
    const labels: number[] = [];
    const rows: Float32Array[] = [];
    const rawRows: Float32Array[] = [];
    const items: GalleryItem[] = [];
    samples.forEach((sample, i) => {
      if (!scored.ok[i]) return;
      const row = scored.probabilities.slice(i * k, (i + 1) * k);
      let best = 0;
      for (let c = 1; c < k; c++) if (row[c] > row[best]) best = c;
      labels.push(sample.label);
      rows.push(row);
      rawRows.push(scored.uncalibrated.slice(i * k, (i + 1) * k));
      items.push({
        path: sample.path,
        trueLabel: model.classes[sample.label],
        predictedLabel: model.classes[best],
        probability: row[best],
        probabilities: Object.fromEntries(model.classes.map((c, j) => [c, row[j]])),
      });
    });
    if (labels.length === 0) throw new UsageError(`${dataDir}: none of the ${samples.length} images could be read`);
    const skipped = [...dataset.skipped, ...scored.skipped];
    const temperature = model.manifest.temperature || 1;
    const raw = temperature !== 1 ? evaluatePredictions(labels, rawRows, model.classes) : undefined;
    return {
      split,
      evaluation: evaluatePredictions(labels, rows, model.classes),
      uncalibrated: raw && { temperature, logLoss: raw.logLoss, ece: raw.ece },
      items,
      counts: { evaluated: labels.length, skipped: skipped.length },
      skipped,
      cache: scored.cache,
      seconds: scored.seconds,
    };
  } finally {
    await source.close();
  }
}
