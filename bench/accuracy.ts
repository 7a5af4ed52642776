/**
 * npm run bench:accuracy — recipe → accuracy, log loss, ECE, time on ../shared/data/dogscats
 * (train on train/, measure on valid/), each recipe from a clean feature cache so its time is
 * the honest first-run time. Each recipe is also scored on three seeded 80/20 splits of train/
 * alone: that hold-out score, never valid/, is what chooses a recipe. The model trained on
 * train/ is also scored on ../shared/data/kaggle-flat (3000 other photos, never trained on): an
 * independent check with about a third of valid/'s sampling error. Writes bench/accuracy.json.
 * Not a test: minutes, real photos. `--only 1,5` runs some recipes.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { evaluate } from '../src/pipeline/evaluate.ts';
import { saveModel } from '../src/bundle/save-model.ts';
import { loadModel } from '../src/pipeline/predict.ts';
import { train, type TrainOptions } from '../src/pipeline/train.ts';

const shared = path.resolve('..', 'shared');
const data = path.join(shared, 'data', 'dogscats');
const independent = path.join(shared, 'data', 'kaggle-flat');
const darknet = path.join(shared, 'backbones', 'darknet-tiny');
const mobilenet = path.join(shared, 'backbones', 'keras-mobilenet-0.25', 'mobilenet_v1_0.25_224.h5');
const eurosat = path.join(shared, 'data', 'eurosat');
// The ≈ 71% / 70% top-1 networks, converted weights (../shared/README.md), through the registry path.
const V2_WEIGHTS = path.join(shared, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');
const V1_WEIGHTS = path.join(shared, 'backbones', 'keras-mobilenet-1.0', 'mobilenet_1_0_224_tf_no_top.h5');
const MOBILENET_V2 = { backbone: 'mobilenet_v2', weights: V2_WEIGHTS } satisfies TrainOptions;
const MOBILENET_V1 = { backbone: 'mobilenet', weights: V1_WEIGHTS } satisfies TrainOptions;
const FUSED_MOBILENETS = { backbone: ['mobilenet_v2', 'mobilenet'], weights: [V2_WEIGHTS, V1_WEIGHTS] } satisfies TrainOptions;

interface Recipe {
  name: string;
  options: TrainOptions;
  tta?: boolean;
  /** ../shared/data/eurosat in a seeded 80/20 train/valid split instead of dogscats (no independent set). */
  eurosat?: boolean;
  /** Recipes naming the same group share one feature cache (their times are then not first-run times). */
  cacheGroup?: string;
}

const PREVIOUS_DEFAULTS: TrainOptions = { pooling: 'avg', ensemble: 1 };

const RECIPES: Recipe[] = [
  { name: 'darknet-tiny, --pooling avg --ensemble 1 (the old defaults)', options: { backbone: darknet, ...PREVIOUS_DEFAULTS } },
  { name: 'darknet-tiny, defaults (avgmax, 5 heads)', options: { backbone: darknet } },
  { name: 'darknet-tiny @288, --pooling avg --ensemble 1, TTA', options: { backbone: darknet, inputSize: [288, 288], ...PREVIOUS_DEFAULTS }, tta: true },
  { name: 'darknet-tiny @288, defaults, TTA', options: { backbone: darknet, inputSize: [288, 288] }, tta: true },
  { name: 'darknet-tiny @288, defaults, --augment flip, TTA', options: { backbone: darknet, inputSize: [288, 288], augment: ['flip'] }, tta: true },
  { name: 'mobilenet-0.25, defaults', options: { backbone: mobilenet, layer: 'conv_pw_13_relu' } },
  { name: 'fused darknet + mobilenet-0.25, --pooling avg --ensemble 1', options: { backbone: [darknet, mobilenet], layer: [undefined, 'conv_pw_13_relu'], ...PREVIOUS_DEFAULTS } },
  { name: 'fused darknet + mobilenet-0.25, defaults', options: { backbone: [darknet, mobilenet], layer: [undefined, 'conv_pw_13_relu'] } },
  { name: 'darknet-tiny @224+288 (fused with itself), defaults, TTA', options: { backbone: [darknet, darknet], inputSize: [[224, 224], [288, 288]] }, tta: true },
  { name: 'fused @288, defaults, --augment flip, TTA', options: { backbone: [darknet, mobilenet], layer: [undefined, 'conv_pw_13_relu'], inputSize: [[288, 288], [288, 288]], augment: ['flip'] }, tta: true },
  { name: 'mobilenet_v2, defaults', options: MOBILENET_V2, cacheGroup: 'mobilenets' },
  { name: 'mobilenet, defaults', options: MOBILENET_V1, cacheGroup: 'mobilenets' },
  { name: 'fused mobilenet_v2 + mobilenet, defaults', options: FUSED_MOBILENETS, cacheGroup: 'mobilenets' },
  { name: 'fused mobilenet_v2 + mobilenet, defaults, TTA', options: FUSED_MOBILENETS, tta: true, cacheGroup: 'mobilenets' },
  { name: 'eurosat: mobilenet_v2, defaults', options: MOBILENET_V2, eurosat: true, cacheGroup: 'eurosat' },
  { name: 'eurosat: mobilenet, defaults', options: MOBILENET_V1, eurosat: true, cacheGroup: 'eurosat' },
  { name: 'eurosat: fused mobilenet_v2 + mobilenet, defaults', options: FUSED_MOBILENETS, eurosat: true, cacheGroup: 'eurosat' },
  { name: 'eurosat: fused mobilenet_v2 + mobilenet, defaults, TTA', options: FUSED_MOBILENETS, tta: true, eurosat: true, cacheGroup: 'eurosat' },
  // Whole-network fine-tuning (defaults: 8 epochs at lr 1e-3): tiles at twice their 64², every dihedral turn (satellite
  // views have no up); photos mirrored left-right only.
  { name: 'eurosat: darknet-tiny @128, --fine-tune all --augment flip,vflip,rot90', options: { backbone: darknet, inputSize: [128, 128], fineTune: 'all', augment: ['flip', 'vflip', 'rot90'] }, eurosat: true },
  { name: 'eurosat: mobilenet_v2 @128, --fine-tune all --augment flip,vflip,rot90', options: { ...MOBILENET_V2, inputSize: [128, 128], fineTune: 'all', augment: ['flip', 'vflip', 'rot90'] }, eurosat: true },
  { name: 'darknet-tiny, --fine-tune all --augment flip', options: { backbone: darknet, fineTune: 'all', augment: ['flip'] } },
  { name: 'mobilenet_v2, --fine-tune all --augment flip', options: { ...MOBILENET_V2, fineTune: 'all', augment: ['flip'] } },
];

/** Settings are chosen on train/ alone: seeded 80/20 splits of it, scored on their held-out 20%. */
const SELECTION_SEEDS = [1, 2, 3];

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1].split(',').map(Number) : undefined;
const resultsFile = path.join('bench', 'accuracy.json');
// With --only, the other recipes keep their last measured rows.
const previous: { recipe: string }[] = only ? await readFile(resultsFile, 'utf8').then((t) => JSON.parse(t).rows, () => []) : [];
const rows: { recipe: string }[] = [];
// ACCURACY_WORK=DIR keeps models and feature caches there between runs (recipes of one cache group then reuse features).
const keptWork = process.env.ACCURACY_WORK;
const work = keptWork ? path.resolve(keptWork) : await mkdtemp(path.join(os.tmpdir(), 'finetune-accuracy-'));
const independentView = await asClassFolders(independent, path.join(work, 'independent'));
const eurosatView = RECIPES.some((r, i) => r.eurosat && (!only || only.includes(i + 1))) ? await seededSplit(eurosat, path.join(work, 'eurosat'), 0.2, 1) : '';

/** Trains on `dataDir`, saves, reloads and scores the validation split as a user would. */
async function trainAndScore(dataDir: string, recipe: Recipe, i: number, extra: TrainOptions, alsoOn?: string) {
  const cacheDir = path.join(work, `cache-${recipe.cacheGroup ?? i}`);
  const result = await train(dataDir, { ...recipe.options, ...extra, cacheDir });
  const weights = [recipe.options.weights ?? []].flat().join(',') || undefined;
  const out = path.join(work, `model-${i}`);
  await rm(out, { recursive: true, force: true });
  await saveModel(out, result, { remember: false });
  result.head.dispose();
  const model = await loadModel(out);
  try {
    const scored = await evaluate(model, dataDir, { split: 'valid', tta: recipe.tta, cacheDir, weights });
    // The independent photos' features are shared between recipes: they are not part of the timing.
    const started = performance.now();
    const other = alsoOn ? await evaluate(model, alsoOn, { split: 'all', tta: recipe.tta, cacheDir: path.join(work, 'cache-independent'), weights }) : undefined;
    return { model, scored, other: other && { evaluation: other.evaluation, seconds: (performance.now() - started) / 1000 } };
  } finally {
    model.head.dispose();
  }
}

try {
  for (const [i, recipe] of RECIPES.entries()) {
    if (only && !only.includes(i + 1)) continue;
    // The full run first, from a clean cache: its time is the honest first-run time.
    const started = performance.now();
    const root = recipe.eurosat ? eurosatView : data;
    const { model, scored, other } = await trainAndScore(root, recipe, i, {}, recipe.eurosat ? undefined : independentView);
    const seconds = (performance.now() - started) / 1000 - (other?.seconds ?? 0);
    const held = [];
    for (const seed of SELECTION_SEEDS) held.push((await trainAndScore(path.join(root, 'train'), recipe, i, { layout: 'folders', valSplit: 0.2, seed })).scored.evaluation);
    const holdOut = { accuracy: mean(held.map((h) => h.accuracy)), logLoss: mean(held.map((h) => h.logLoss)), images: held.reduce((a, h) => a + h.count, 0) };
    const e = scored.evaluation;
    const o = other?.evaluation ?? { accuracy: NaN, logLoss: NaN, ece: NaN, count: 0 };
    const independentScore = other ? { accuracy: o.accuracy, logLoss: o.logLoss, ece: o.ece, images: o.count } : null;
    const row = { recipe: recipe.name, holdOut, independent: independentScore, accuracy: e.accuracy, logLoss: e.logLoss, ece: e.ece, temperature: model.manifest.temperature, seconds, valid: e.count };
    rows.push(row);
    process.stdout.write(
      `${String(i + 1).padStart(2)}. ${recipe.name.padEnd(58)} train/ hold-out ${(holdOut.accuracy * 100).toFixed(2).padStart(6)}% ${holdOut.logLoss.toFixed(4)} | kaggle-flat ${other ? `${(o.accuracy * 100).toFixed(2).padStart(6)}% ${o.logLoss.toFixed(4)}` : '       —      '} | valid/ ${(e.accuracy * 100).toFixed(2).padStart(6)}%  log loss ${e.logLoss.toFixed(4)}  ECE ${e.ece.toFixed(4)}  ${seconds.toFixed(0).padStart(4)} s\n`,
    );
  }
} finally {
  if (!keptWork) await rm(work, { recursive: true, force: true });
}
const merged = RECIPES.map((r) => rows.find((row) => row.recipe === r.name) ?? previous.find((row) => row.recipe === r.name)).filter((row) => row !== undefined);
await writeFile(resultsFile, JSON.stringify({ date: new Date().toISOString(), data, selection: { splitOf: 'train/', heldOut: 0.2, seeds: SELECTION_SEEDS }, independent, rows: merged }, null, 2) + '\n');

/** kaggle-flat names its classes cat/dog; the models know cats/dogs: links in class folders under those names. */
async function asClassFolders(flat: string, dir: string): Promise<string> {
  const files = (await readdir(path.join(flat, 'train'))).filter((f) => /\.jpe?g$/i.test(f));
  for (const cls of ['cat', 'dog']) {
    await mkdir(path.join(dir, `${cls}s`), { recursive: true });
    for (const f of files.filter((name) => name.startsWith(`${cls}.`))) await linkOnce(path.join(flat, 'train', f), path.join(dir, `${cls}s`, f));
  }
  return dir;
}

/**
 * Class folders → DIR/train/<class>, DIR/valid/<class> as links: per class, a seeded
 * shuffle puts `fraction` of the files in valid/ (the "seeded split" the figures are on).
 */
async function seededSplit(folders: string, dir: string, fraction: number, seed: number): Promise<string> {
  let s = seed >>> 0;
  const random = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (const cls of (await readdir(folders, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort()) {
    const files = (await readdir(path.join(folders, cls))).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort();
    for (let i = files.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [files[i], files[j]] = [files[j], files[i]];
    }
    const cut = Math.round(files.length * fraction);
    for (const [k, f] of files.entries()) {
      const target = path.join(dir, k < cut ? 'valid' : 'train', cls);
      await mkdir(target, { recursive: true });
      await linkOnce(path.join(folders, cls, f), path.join(target, f));
    }
  }
  return dir;
}

/** A link left by an earlier run in ACCURACY_WORK is the same link. */
async function linkOnce(target: string, at: string): Promise<void> {
  await symlink(target, at).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}
