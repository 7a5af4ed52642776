/**
 * evaluate re-splits a folders-layout data set exactly as train split it (same seed and
 * fraction), from any working directory: `valid` is the images the head never saw, no more,
 * no fewer. Train and evaluate here run in different working directories with relative paths,
 * as a user who trains in one shell and evaluates in another does.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MANIFEST_FILE } from '../src/bundle/manifest.ts';
import { saveModel } from '../src/bundle/save-model.ts';
import { loadDataset } from '../src/data/layout.ts';
import { evaluate } from '../src/pipeline/evaluate.ts';
import { loadModel } from '../src/pipeline/predict.ts';
import { train } from '../src/pipeline/train.ts';
import { makeImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

const startDir = process.cwd();
let tmp: string;
let model: string;
let heldOut: string[];
let trainedValid: number;
const VAL_SPLIT = 0.25;
const SEED = 5;

/** Image names relative to the data folder, sorted; `cwd` is where relative paths start. */
const names = (root: string, paths: string[], cwd = startDir) => paths.map((p) => path.relative(root, path.resolve(cwd, p))).sort();

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-evalsplit-'));
  await makeImageDataset(path.join(tmp, 'shots'), { layout: 'folders', classes: 2, perClass: 12, size: 24, format: 'png' });
  const { folder } = await writeTinyBackbone(path.join(tmp, 'backbone'), { inputSize: 16 });
  await mkdir(path.join(tmp, 'elsewhere'));
  // The split train makes, read with the data folder's absolute path (no working directory involved).
  const split = await loadDataset(path.join(tmp, 'shots'), { layout: 'folders', valSplit: VAL_SPLIT, seed: SEED });
  heldOut = names(path.join(tmp, 'shots'), split.valid.map((s) => s.path));
  process.chdir(tmp);
  try {
    const result = await train('shots', { backbone: folder, engine: 'tfjs', valSplit: VAL_SPLIT, seed: SEED, epochs: 2, hidden: 0, ensemble: 1, threads: 1, cacheDir: false });
    trainedValid = result.counts.valid;
    model = path.join(tmp, 'model');
    await saveModel(model, result, { remember: false });
    result.head.dispose();
  } finally {
    process.chdir(startDir);
  }
});
after(async () => {
  process.chdir(startDir);
  await rm(tmp, { recursive: true, force: true });
});

async function evaluateFrom(cwd: string, data: string) {
  const loaded = await loadModel(model);
  process.chdir(cwd);
  try {
    return await evaluate(loaded, data, { engine: 'tfjs', cacheDir: false });
  } finally {
    process.chdir(startDir);
    loaded.head.dispose();
  }
}

test('the manifest records the data folder as an absolute path', async () => {
  const manifest = JSON.parse(await readFile(path.join(model, MANIFEST_FILE), 'utf8'));
  assert.equal(manifest.training.data, path.join(tmp, 'shots'));
  assert.equal(manifest.training.layout, 'folders');
  assert.equal(manifest.training.valSplit, VAL_SPLIT);
  assert.equal(manifest.training.seed, SEED);
});

test('evaluate from another working directory scores exactly the images train held out', async () => {
  assert.ok(heldOut.length > 0 && heldOut.length < 24, `a real split: ${heldOut.length} of 24 held out`);
  assert.equal(trainedValid, heldOut.length, 'train validated on the held-out images');
  const elsewhere = path.join(tmp, 'elsewhere');
  const result = await evaluateFrom(elsewhere, path.join('..', 'shots'));
  assert.equal(result.split, 'valid');
  assert.equal(result.counts.evaluated, heldOut.length);
  assert.deepEqual(names(path.join(tmp, 'shots'), result.items.map((i) => i.path), elsewhere), heldOut);
});

test('an older bundle, its data path as given (relative), still re-splits from the directory it was trained in', async () => {
  const file = path.join(model, MANIFEST_FILE);
  const manifest = JSON.parse(await readFile(file, 'utf8'));
  const current = JSON.stringify(manifest, null, 2);
  manifest.training.data = 'shots';
  await writeFile(file, JSON.stringify(manifest, null, 2));
  try {
    const result = await evaluateFrom(tmp, 'shots');
    assert.equal(result.split, 'valid');
    assert.deepEqual(names(path.join(tmp, 'shots'), result.items.map((i) => i.path), tmp), heldOut);
  } finally {
    await writeFile(file, current);
  }
});
