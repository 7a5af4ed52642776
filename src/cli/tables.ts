import path from 'node:path';
import { UsageError } from '../index.ts';
import type { Prediction } from '../index.ts';

function csvField(value: string | number): string {
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** path,label,probability,<one column per class>; unreadable images get an error column instead. */
export function predictionsCsv(predictions: Prediction[], classes: string[]): string {
  const rows = [['path', 'label', 'probability', ...classes, 'error'].map(csvField).join(',')];
  for (const p of predictions) {
    if ('error' in p) rows.push([p.path, '', '', ...classes.map(() => ''), p.error].map(csvField).join(','));
    else rows.push([p.path, p.label, p.probability, ...classes.map((c) => p.probabilities[c]), ''].map(csvField).join(','));
  }
  return rows.join('\n') + '\n';
}

/** Parses --clip: "0.02" (→ 0.02…0.98) or "0.02,0.98". */
export function parseClip(text: string): [number, number] {
  const parts = text.split(',').map((s) => Number(s.trim()));
  const [lo, hi] = parts.length === 1 ? [parts[0], 1 - parts[0]] : parts;
  if (parts.length > 2 || !(lo >= 0 && hi <= 1 && lo < hi)) throw new UsageError(`--clip ${text}: give "LOW,HIGH" with 0 ≤ LOW < HIGH ≤ 1, or one number c for c…1−c`);
  return [lo, hi];
}

export interface KaggleSubmission {
  csv: string;
  /** Indices into the predictions, in the file's row order (numeric ids ascending). */
  order: number[];
  /** Ids Kaggle would not match: non-numeric, or the same id from two files. */
  warnings: string[];
}

/** `123.jpg`, `dog.123.jpg` → `123`: the id Kaggle's test set gives each photo. */
export function kaggleId(file: string): string {
  return path.basename(file).replace(/\.[^.]+$/, '').replace(/^(cat|dog)s?\./i, '');
}

/**
 * The Kaggle dogs-vs-cats submission: `id,label` with id from the file name (`123.jpg` → 123)
 * and label = P(dog), clipped because log loss punishes a confident mistake without bound.
 */
export function kaggleSubmission(predictions: Prediction[], classes: string[], clip: [number, number]): KaggleSubmission {
  const dog = classes.find((c) => /^dogs?$/i.test(c));
  if (!dog) throw new UsageError(`--kaggle needs a class named "dog" or "dogs"; this model's classes are ${classes.join(', ')}`);
  const rows: { id: string; p: number; index: number }[] = [];
  predictions.forEach((p, index) => {
    if ('error' in p) return;
    rows.push({ id: kaggleId(p.path), p: Math.min(clip[1], Math.max(clip[0], p.probabilities[dog])), index });
  });
  rows.sort((a, b) => Number(a.id) - Number(b.id) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) || a.index - b.index);
  const warnings: string[] = [];
  const named = (list: typeof rows) => list.slice(0, 3).map((r) => predictions[r.index].path).join(', ') + (list.length > 3 ? `, … (${list.length} in all)` : '');
  const odd = rows.filter((r) => !/^\d+$/.test(r.id));
  if (odd.length > 0) warnings.push(`--kaggle: ${odd.length} file(s) give a non-numeric id (${named(odd)}); Kaggle's test images are named 1.jpg … 12500.jpg`);
  const byId = new Map<string, typeof rows>();
  for (const r of rows) byId.set(r.id, [...(byId.get(r.id) ?? []), r]);
  for (const [id, same] of byId) if (same.length > 1) warnings.push(`--kaggle: duplicate id ${id} from ${same.length} files (${named(same)}); Kaggle scores one row per id`);
  const csv = ['id,label', ...rows.map((r) => `${csvField(r.id)},${r.p.toFixed(5)}`)].join('\n') + '\n';
  return { csv, order: rows.map((r) => r.index), warnings };
}
