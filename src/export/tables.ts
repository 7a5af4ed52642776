import path from 'node:path';
import { UsageError } from '../errors.ts';
import type { Prediction } from '../predict.ts';

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

/**
 * The Kaggle dogs-vs-cats submission: `id,label` with id from the file name (`123.jpg` → 123)
 * and label = P(dog), clipped because log loss punishes a confident mistake without bound.
 */
export function kaggleSubmission(predictions: Prediction[], classes: string[], clip: [number, number]): string {
  const dog = classes.find((c) => /^dogs?$/i.test(c));
  if (!dog) throw new UsageError(`--kaggle needs a class named "dog" or "dogs"; this model's classes are ${classes.join(', ')}`);
  const rows: { id: string; p: number }[] = [];
  for (const p of predictions) {
    if ('error' in p) continue;
    const id = path.basename(p.path).replace(/\.[^.]+$/, '').replace(/^(cat|dog)s?\./i, '');
    rows.push({ id, p: Math.min(clip[1], Math.max(clip[0], p.probabilities[dog])) });
  }
  rows.sort((a, b) => (Number(a.id) - Number(b.id)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return ['id,label', ...rows.map((r) => `${r.id},${r.p.toFixed(5)}`)].join('\n') + '\n';
}
