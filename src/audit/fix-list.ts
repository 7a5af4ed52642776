import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { csvRecords } from '../data/csv-labels.ts';
import type { Dataset, Sample } from '../data/layout.ts';
import { UsageError } from '../errors.ts';

/**
 * The fix list: `path,action,suggested[,reason]`, one image a row, for a person to edit and
 * `train --exclude` to apply. finetune never moves or deletes the files themselves.
 */
export const FIX_ACTIONS = ['relabel', 'remove', 'keep'] as const;
export type FixAction = (typeof FIX_ACTIONS)[number];

export interface FixRow {
  path: string;
  action: FixAction;
  /** The class to use instead (relabel). */
  suggested?: string;
  /** Why the audit listed it (informational). */
  reason?: string;
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) || value !== value.trim() ? `"${value.replace(/"/g, '""')}"` : value;
}

export function formatFixList(rows: FixRow[]): string {
  const lines = ['path,action,suggested,reason', ...rows.map((r) => [r.path, r.action, r.suggested ?? '', r.reason ?? ''].map(csvField).join(','))];
  return `${lines.join('\n')}\n`;
}

export async function readFixList(file: string): Promise<FixRow[]> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`--exclude ${file}: ${err.code === 'ENOENT' ? 'no such file' : `cannot read it (${err.code ?? err})`}; give the CSV that \`finetune audit --fix-list\` wrote`);
  });
  const records = csvRecords(text, `--exclude ${file}`);
  const header = records.shift()?.record.map((h) => h.toLowerCase()) ?? [];
  const col = (name: string) => header.indexOf(name);
  if (col('path') < 0 || col('action') < 0) throw new UsageError(`--exclude ${file}: the first line must name the columns path,action,suggested (as \`finetune audit --fix-list\` writes them)`);
  return records.map(({ record, info: { lines: line } }) => {
    const get = (name: string) => (col(name) >= 0 ? (record[col(name)] ?? '') : '');
    const action = get('action').toLowerCase();
    if (!(FIX_ACTIONS as readonly string[]).includes(action)) throw new UsageError(`--exclude ${file} line ${line}: action "${get('action')}" must be one of ${FIX_ACTIONS.join(', ')}`);
    const suggested = get('suggested');
    if (action === 'relabel' && !suggested) throw new UsageError(`--exclude ${file} line ${line}: relabel needs the new class in the suggested column`);
    if (!get('path')) throw new UsageError(`--exclude ${file} line ${line}: the path column is empty`);
    return { path: get('path'), action: action as FixAction, suggested: suggested || undefined, reason: get('reason') || undefined };
  });
}

export interface FixSummary {
  removed: number;
  relabelled: number;
  /** Rows whose path is not an image of the data set (the list may be older than the folder). */
  unmatched: string[];
}

/**
 * Applies a fix list to a loaded data set in memory: `remove` leaves the image out, `relabel`
 * trains it as the suggested class, `keep` changes nothing. Paths match after resolving, so a
 * list written from another working directory still applies.
 */
export function applyFixList(dataset: Dataset, rows: FixRow[], file: string): FixSummary {
  const byPath = new Map(rows.map((r) => [path.resolve(r.path), r]));
  const seen = new Set<string>();
  let removed = 0;
  let relabelled = 0;
  const fix = (samples: Sample[]): Sample[] =>
    samples.flatMap((s) => {
      const key = path.resolve(s.path);
      const row = byPath.get(key);
      if (!row) return [s];
      seen.add(key);
      if (row.action === 'remove') return removed++, [];
      if (row.action === 'keep') return [s];
      const label = dataset.classes.indexOf(row.suggested!);
      if (label < 0) throw new UsageError(`--exclude ${file}: ${row.path} is to be relabelled "${row.suggested}", which is not a class of ${dataset.root} (${dataset.classes.join(', ')})`);
      relabelled++;
      return [{ ...s, label }];
    });
  dataset.train = fix(dataset.train);
  dataset.valid = fix(dataset.valid);
  dataset.test = fix(dataset.test);
  const unmatched = rows.filter((r) => !seen.has(path.resolve(r.path))).map((r) => r.path);
  return { removed, relabelled, unmatched };
}

/** Reads and applies a fix list; returns the warnings to show (rows naming no image, the counts). */
export async function applyFixFile(dataset: Dataset, file: string): Promise<string[]> {
  const { removed, relabelled, unmatched } = applyFixList(dataset, await readFixList(file), file);
  const warnings = [`--exclude ${file}: ${removed} image(s) left out, ${relabelled} relabelled`];
  if (unmatched.length > 0) warnings.push(`--exclude ${file}: ${unmatched.length} row(s) name no image of ${dataset.root} (first: ${unmatched[0]})`);
  return warnings;
}

/**
 * The audit's candidates as a fix list, one row per image, for a person to decide: only a
 * byte-identical copy is removed by default; every other row says `keep` with the suggestion
 * and the reason beside it. On the untouched dogscats most flagged images are hard but rightly
 * labelled photos (README, Audit), so applying the suggestions unseen would do harm.
 */
export function fixRows(result: {
  labelIssues: { path: string; suggested: string; score: number; given: string }[];
  duplicates: { a: string; b: string; similarity: number; score: number; exact: boolean; leakage: boolean }[];
  outliers: { path: string; score: number }[];
}): FixRow[] {
  const rows = new Map<string, FixRow>();
  for (const d of result.duplicates) {
    if (rows.has(d.b) || rows.has(d.a)) continue;
    const what = d.exact ? 'same bytes as' : `near-duplicate (score ${d.score.toFixed(3)}, cosine ${d.similarity.toFixed(3)}) of`;
    rows.set(d.b, { path: d.b, action: d.exact ? 'remove' : 'keep', reason: `${what} ${d.a}${d.leakage ? ' (train/valid leakage)' : ''}` });
  }
  for (const l of result.labelIssues) if (!rows.has(l.path)) rows.set(l.path, { path: l.path, action: 'keep', suggested: l.suggested, reason: `label issue: given ${l.given}, score ${l.score.toFixed(3)}; relabel to ${l.suggested}?` });
  for (const o of result.outliers) if (!rows.has(o.path)) rows.set(o.path, { path: o.path, action: 'keep', reason: `outlier (distance ${o.score.toFixed(3)}): remove?` });
  return [...rows.values()];
}
