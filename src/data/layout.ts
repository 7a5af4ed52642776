import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.ts';
import { isWithin } from '../fs/reasons.ts';
import { readCsvLabels, type CsvRow } from './csv-labels.ts';
import { listImages, listSubfolders, type Skipped } from './files.ts';
import { createRng, shuffleInPlace } from './random.ts';

/**
 * The folder layouts `train` accepts (DESIGN.md):
 * fastai  DIR/train/<class>/*, DIR/valid/<class>/* (also val/, validation/), optional DIR/test/
 * folders DIR/<class>/*, validation split off by a seeded stratified split
 * kaggle  DIR/train/cat.123.jpg (or DIR/cat.123.jpg): the class is the name before the first dot
 * csv     a labels file (`labels` option, or DIR given as FILE.csv): path,label[,split] (csv-labels.ts)
 */
export { LAYOUTS, SPLITS, type Layout, type Split } from '../defaults.ts';
import type { Layout, Split } from '../defaults.ts';

export interface Sample {
  path: string;
  label: number;
}

export interface Dataset {
  root: string;
  layout: Layout;
  classes: string[];
  train: Sample[];
  valid: Sample[];
  /** Labelled test split, when DIR/test/<class>/ exists. */
  test: Sample[];
  skipped: Skipped[];
  warnings: string[];
  /** Sub-folders of the root the layout does not read (the fast.ai zip's sample/, test1/, models/). */
  ignored?: string[];
}

export interface DatasetOptions {
  layout?: Layout;
  /** Fraction held out for validation when the layout has no valid/ folder. */
  valSplit?: number;
  seed?: number;
  /** Classes in a fixed order (from a trained model): folders are mapped onto them. */
  classes?: string[];
  /** A CSV of path,label[,split] (the csv layout); paths relative to the data folder or to the CSV. */
  labels?: string;
}

const VALID_NAMES = ['valid', 'val', 'validation'];
const TRAIN_NAMES = ['train', 'training'];

export async function loadDataset(root: string, opts: DatasetOptions = {}): Promise<Dataset> {
  let labels = opts.labels;
  // `train labels.csv`: the CSV is the data set, its paths relative to its folder.
  if (!labels && path.extname(root).toLowerCase() === '.csv' && (await stat(root).catch(() => null))?.isFile()) {
    labels = root;
    root = path.dirname(root);
  }
  await requireFolder(root, 'data folder');
  if (opts.layout === 'csv' && !labels) throw new UsageError('--layout csv needs --labels FILE.csv');
  const layout = labels ? 'csv' : (opts.layout ?? (await detectLayout(root)));
  const valSplit = opts.valSplit ?? 0.2;
  if (!(valSplit >= 0 && valSplit < 1)) throw new UsageError(`--val-split must be at least 0 and below 1 (got ${valSplit})`);
  const seed = opts.seed ?? 42;
  const dataset =
    layout === 'fastai'
      ? await loadFastai(root)
      : layout === 'folders'
        ? await loadFolders(root, valSplit, seed)
        : layout === 'csv'
          ? await loadCsv(root, labels!, valSplit, seed)
          : await loadKaggle(root, valSplit, seed);
  if (opts.classes) remapClasses(dataset, opts.classes);
  return dataset;
}

async function requireFolder(dir: string, what: string): Promise<void> {
  const info = await stat(dir).catch(() => null);
  if (!info) throw new UsageError(`${what} ${dir} does not exist`);
  if (!info.isDirectory()) throw new UsageError(`${what} ${dir} is a file, not a folder of images`);
}

async function firstExisting(root: string, names: string[]): Promise<string | undefined> {
  const present = new Set(await listSubfolders(root));
  return names.find((n) => present.has(n));
}

export async function detectLayout(root: string): Promise<Layout> {
  const train = await firstExisting(root, TRAIN_NAMES);
  if (train) {
    const trainDir = path.join(root, train);
    if ((await listSubfolders(trainDir)).length > 0) return 'fastai';
    return 'kaggle';
  }
  if ((await listSubfolders(root)).length > 0) return 'folders';
  const { images } = await listImages(root, { recursive: false });
  if (images.some((p) => path.basename(p).includes('.') && path.basename(p).split('.').length > 2)) return 'kaggle';
  throw new UsageError(`${root} has no class folders and no train/ folder: put images in ${root}/<class>/ (see README, "Data layouts")`);
}

interface ClassFiles {
  name: string;
  files: string[];
}

async function readClassFolders(dir: string, skipped: Skipped[]): Promise<ClassFiles[]> {
  const classes: ClassFiles[] = [];
  const realDir = await realpath(dir);
  for (const name of await listSubfolders(dir)) {
    const classDir = path.join(dir, name);
    // A class folder that links back to a folder above it would hold every class's images.
    if (isWithin(realDir, await realpath(classDir))) {
      skipped.push({ path: classDir, reason: 'symbolic link loop' });
      continue;
    }
    const listing = await listImages(classDir);
    skipped.push(...listing.skipped);
    classes.push({ name, files: listing.images });
  }
  return classes;
}

function dropEmpty(classes: ClassFiles[], where: string, warnings: string[]): ClassFiles[] {
  for (const c of classes.filter((c) => c.files.length === 0)) warnings.push(`class folder ${path.join(where, c.name)} has no images; class "${c.name}" left out`);
  return classes.filter((c) => c.files.length > 0);
}

function requireTwoClasses(names: string[], where: string): void {
  if (names.length < 2) {
    const found = names.length === 0 ? 'no class with images' : `only one class ("${names[0]}")`;
    throw new UsageError(`${where} has ${found}: a classifier needs images of at least 2 classes, one folder per class`);
  }
}

async function loadFastai(root: string): Promise<Dataset> {
  const warnings: string[] = [];
  const skipped: Skipped[] = [];
  const trainName = (await firstExisting(root, TRAIN_NAMES)) ?? 'train';
  const trainDir = path.join(root, trainName);
  await requireFolder(trainDir, 'training folder');
  const train = dropEmpty(await readClassFolders(trainDir, skipped), trainDir, warnings);
  const classes = train.map((c) => c.name);
  requireTwoClasses(classes, trainDir);
  const validName = await firstExisting(root, VALID_NAMES);
  if (!validName) throw new UsageError(`${root} has train/ but no valid/ folder: add ${root}/valid/<class>/ or use --layout folders on ${trainDir}`);
  const validDir = path.join(root, validName);
  const valid = dropEmpty(await readClassFolders(validDir, skipped), validDir, warnings);
  const unknown = valid.filter((c) => !classes.includes(c.name)).map((c) => c.name);
  if (unknown.length > 0) {
    throw new UsageError(`${validDir} has class folder(s) ${unknown.map((n) => `"${n}"`).join(', ')} that ${trainDir} lacks; train/ and valid/ need the same class names`);
  }
  for (const name of classes.filter((n) => !valid.some((c) => c.name === n))) warnings.push(`${validDir} has no images of class "${name}"`);
  const toSamples = (list: ClassFiles[]): Sample[] => list.flatMap((c) => c.files.map((p) => ({ path: p, label: classes.indexOf(c.name) })));
  const testDir = path.join(root, 'test');
  let test: Sample[] = [];
  if ((await listSubfolders(root)).includes('test') && (await listSubfolders(testDir)).length > 0) {
    const testClasses = (await readClassFolders(testDir, skipped)).filter((c) => classes.includes(c.name));
    test = toSamples(testClasses);
  }
  const ignored = await otherFolders(root, [trainName, validName, ...(test.length > 0 ? ['test'] : [])]);
  return { root, layout: 'fastai', classes, train: toSamples(train), valid: toSamples(valid), test, skipped, warnings, ignored };
}

async function otherFolders(root: string, used: string[]): Promise<string[]> {
  return (await listSubfolders(root)).filter((name) => !used.includes(name)).sort();
}

function stratifiedSplit(byClass: ClassFiles[], valSplit: number, seed: number): { train: Sample[]; valid: Sample[] } {
  const rng = createRng(seed);
  const train: Sample[] = [];
  const valid: Sample[] = [];
  byClass.forEach((c, label) => {
    const files = shuffleInPlace([...c.files], rng);
    const nValid = valSplit > 0 && files.length >= 2 ? Math.max(1, Math.round(files.length * valSplit)) : 0;
    files.forEach((p, i) => (i < nValid ? valid : train).push({ path: p, label }));
  });
  const byPath = (a: Sample, b: Sample) => (a.path < b.path ? -1 : 1);
  return { train: train.sort(byPath), valid: valid.sort(byPath) };
}

async function loadFolders(root: string, valSplit: number, seed: number): Promise<Dataset> {
  const warnings: string[] = [];
  const skipped: Skipped[] = [];
  const byClass = dropEmpty(await readClassFolders(root, skipped), root, warnings);
  const classes = byClass.map((c) => c.name);
  requireTwoClasses(classes, root);
  return { root, layout: 'folders', classes, ...stratifiedSplit(byClass, valSplit, seed), test: [], skipped, warnings };
}

async function loadKaggle(root: string, valSplit: number, seed: number): Promise<Dataset> {
  const warnings: string[] = [];
  const trainName = await firstExisting(root, TRAIN_NAMES);
  const dir = trainName ? path.join(root, trainName) : root;
  const listing = await listImages(dir, { recursive: false });
  const skipped = [...listing.skipped];
  const groups = new Map<string, string[]>();
  for (const file of listing.images) {
    const base = path.basename(file);
    const dot = base.indexOf('.');
    if (dot <= 0 || dot === base.lastIndexOf('.')) {
      skipped.push({ path: file, reason: 'no class prefix in the file name (expected <class>.<id>.<ext>)' });
      continue;
    }
    const name = base.slice(0, dot).toLowerCase();
    groups.set(name, [...(groups.get(name) ?? []), file]);
  }
  const byClass = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, files]) => ({ name, files }));
  const classes = byClass.map((c) => c.name);
  requireTwoClasses(classes, dir);
  const ignored = trainName ? await otherFolders(root, [trainName]) : [];
  return { root, layout: 'kaggle', classes, ...stratifiedSplit(byClass, valSplit, seed), test: [], skipped, warnings, ignored };
}

async function loadCsv(root: string, labels: string, valSplit: number, seed: number): Promise<Dataset> {
  const skipped: Skipped[] = [];
  const rows = await readCsvLabels(labels, root, skipped);
  const classes = [...new Set(rows.map((r) => r.label))].sort();
  requireTwoClasses(classes, labels);
  const sample = (r: CsvRow): Sample => ({ path: r.path, label: classes.indexOf(r.label) });
  const test = rows.filter((r) => r.split === 'test').map(sample);
  const rest = rows.filter((r) => r.split !== 'test');
  let split: { train: Sample[]; valid: Sample[] };
  if (rest.some((r) => r.split === 'valid')) {
    // The CSV chose the validation rows; rows without a split train.
    split = { train: rest.filter((r) => r.split !== 'valid').map(sample), valid: rest.filter((r) => r.split === 'valid').map(sample) };
  } else {
    split = stratifiedSplit(classes.map((name) => ({ name, files: rest.filter((r) => r.label === name).map((r) => r.path) })), valSplit, seed);
  }
  return { root, layout: 'csv', classes, ...split, test, skipped, warnings: [] };
}

/** Re-labels samples by a trained model's class order; samples of unknown classes are an error. */
function remapClasses(dataset: Dataset, classes: string[]): void {
  const extra = dataset.classes.filter((c) => !classes.includes(c));
  if (extra.length > 0) {
    throw new UsageError(`${dataset.root} has class(es) ${extra.map((c) => `"${c}"`).join(', ')} that the model does not know (it knows ${classes.join(', ')})`);
  }
  const map = dataset.classes.map((c) => classes.indexOf(c));
  for (const split of [dataset.train, dataset.valid, dataset.test]) for (const s of split) s.label = map[s.label];
  dataset.classes = [...classes];
}

export function samplesOf(dataset: Dataset, split: Split): Sample[] {
  if (split === 'all') return [...dataset.train, ...dataset.valid, ...dataset.test];
  return dataset[split];
}
