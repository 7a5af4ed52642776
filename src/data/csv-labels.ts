/**
 * The csv layout: labels from a CSV file (fastai's `from_csv`, and how Kaggle often ships
 * data), columns `path,label[,split]` named in a header line, in any order. Paths are relative
 * to DATA or, failing that, to the CSV's own folder. Checked like the folder layouts: missing
 * files are named and skipped, an unknown split value or a single class is refused.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { CsvError, parse } from 'csv-parse/sync';
import { UsageError } from '../errors.ts';
import { reasonOf } from '../fs/reasons.ts';
import { isImagePath, type Skipped } from './files.ts';

export type CsvSplit = 'train' | 'valid' | 'test';

export interface CsvRow {
  path: string;
  label: string;
  /** Undefined when the CSV has no split column or leaves the cell empty. */
  split?: CsvSplit;
}

const SPLIT_NAMES: Record<string, CsvSplit> = { train: 'train', training: 'train', valid: 'valid', val: 'valid', validation: 'valid', test: 'test' };

async function exists(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined)) !== undefined;
}

/** One CSV record and the line it ends on. */
export interface CsvRecord {
  info: { lines: number };
  record: string[];
}

/**
 * RFC 4180 records of a CSV file finetune reads (--labels, --exclude): a byte-order mark
 * dropped, blank lines skipped, spaces around fields trimmed (inside quotes kept); a malformed
 * file is one UsageError starting with `what` (the flag and file).
 */
export function csvRecords(text: string, what: string): CsvRecord[] {
  try {
    return parse(text, { bom: true, info: true, skip_empty_lines: true, trim: true }) as unknown as CsvRecord[];
  } catch (err) {
    if (err instanceof CsvError) throw new UsageError(`${what}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Parses `file` into rows whose image files exist; the rest go to `skipped` with the line that named them. */
export async function readCsvLabels(file: string, dataDir: string, skipped: Skipped[]): Promise<CsvRow[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--labels ${file}: ${reasonOf(err)}`, { cause: err });
  }
  const records = csvRecords(text, `--labels ${file}`);
  const header = records[0]?.record.map((name) => name.toLowerCase());
  const column = (name: string) => header?.indexOf(name) ?? -1;
  const [pathAt, labelAt, splitAt] = [column('path'), column('label'), column('split')];
  if (pathAt < 0 || labelAt < 0) {
    const firstLine = text.replace(/^\uFEFF/, '').split(/\r?\n/)[0];
    throw new UsageError(`--labels ${file}: the first line must be a header with the columns path and label (and optionally split); it is "${firstLine}"`);
  }
  const csvDir = path.dirname(path.resolve(file));
  const seen = new Map<string, number>();
  const rows: CsvRow[] = [];
  for (const { info, record } of records.slice(1)) {
    const where = `${file} line ${info.lines}`;
    const given = record[pathAt];
    const rawSplit = splitAt >= 0 ? record[splitAt].toLowerCase() : '';
    const split = rawSplit === '' ? undefined : SPLIT_NAMES[rawSplit];
    if (rawSplit !== '' && !split) throw new UsageError(`${where}: split "${record[splitAt]}" is not one of train, valid, test (also val, validation, training)`);
    if (given === '') {
      skipped.push({ path: where, reason: 'no path' });
      continue;
    }
    const inData = path.resolve(dataDir, given);
    const resolved = path.isAbsolute(given) || (await exists(inData)) ? inData : (await exists(path.resolve(csvDir, given))) ? path.resolve(csvDir, given) : undefined;
    const shown = resolved ?? path.join(dataDir, given);
    if (record[labelAt] === '') {
      skipped.push({ path: shown, reason: `no label (${where})` });
      continue;
    }
    if (!resolved) {
      skipped.push({ path: shown, reason: `file not found (${where})` });
      continue;
    }
    if (!isImagePath(resolved)) {
      skipped.push({ path: resolved, reason: `not an image file (${path.extname(resolved) || 'no extension'}; ${where})` });
      continue;
    }
    const first = seen.get(resolved);
    if (first !== undefined) {
      skipped.push({ path: resolved, reason: `listed again (${where}; first on line ${first})` });
      continue;
    }
    seen.set(resolved, info.lines);
    rows.push({ path: resolved, label: record[labelAt], split });
  }
  return rows;
}
