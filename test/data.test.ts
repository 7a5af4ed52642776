import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadDataset, UsageError, type Dataset } from '../src/index.ts';
import { makeImageDataset, writeClassImage } from './fixtures/images.ts';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-data-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let serial = 0;
const fresh = () => path.join(tmp, `d${serial++}`);

/** Every sample's label is the class whose name its file carries (the fixture names files after their class). */
function assertLabelsMatchFiles(ds: Dataset): void {
  for (const s of [...ds.train, ...ds.valid]) {
    const name = path.basename(s.path);
    assert.ok(name.startsWith(ds.classes[s.label]), `${s.path} labelled ${ds.classes[s.label]}`);
  }
}

function countByClass(ds: Dataset, split: 'train' | 'valid'): number[] {
  const counts = ds.classes.map(() => 0);
  for (const s of ds[split]) counts[s.label]++;
  return counts;
}

async function rejectsUsage(promise: Promise<unknown>, ...patterns: (string | RegExp)[]): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    for (const p of patterns) {
      if (typeof p === 'string') assert.ok(err.message.includes(p), `message "${err.message}" should mention ${p}`);
      else assert.match(err.message, p);
    }
    assert.ok(!err.message.includes('\n'), 'one-line message');
    return true;
  });
}

describe('layout detection', () => {
  test('fastai: train/<class> + valid/<class>, counts and labels as on disk', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'fastai', classes: 3, perClass: 4, validPerClass: 2, size: 16 });
    const ds = await loadDataset(root);
    assert.equal(ds.layout, 'fastai');
    assert.deepEqual(ds.classes, ['checker', 'circle', 'stripes']);
    assert.deepEqual(countByClass(ds, 'train'), [4, 4, 4]);
    assert.deepEqual(countByClass(ds, 'valid'), [2, 2, 2]);
    assert.ok(ds.valid.every((s) => s.path.includes(`${path.sep}valid${path.sep}`)));
    assert.deepEqual(ds.skipped, []);
    assertLabelsMatchFiles(ds);
  });

  test('fastai with val/ instead of valid/', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'fastai', classes: 2, perClass: 3, validPerClass: 2, size: 16 });
    await rename(path.join(root, 'valid'), path.join(root, 'val'));
    const ds = await loadDataset(root);
    assert.equal(ds.layout, 'fastai');
    assert.deepEqual(countByClass(ds, 'valid'), [2, 2]);
    assert.ok(ds.valid.every((s) => s.path.includes(`${path.sep}val${path.sep}`)));
  });

  test('folders: <class>/ only, stratified validation split by valSplit', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'folders', classes: 2, perClass: 10, size: 16 });
    const ds = await loadDataset(root, { valSplit: 0.2, seed: 1 });
    assert.equal(ds.layout, 'folders');
    assert.deepEqual(ds.classes, ['circle', 'stripes']);
    assert.deepEqual(countByClass(ds, 'train'), [8, 8]);
    assert.deepEqual(countByClass(ds, 'valid'), [2, 2]);
    const all = [...ds.train, ...ds.valid].map((s) => s.path);
    assert.equal(new Set(all).size, 20, 'no file in both splits');
    assertLabelsMatchFiles(ds);
  });

  test('folders: the same seed gives the same split, another seed another one', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'folders', classes: 2, perClass: 12, size: 16 });
    const validOf = async (seed: number) => (await loadDataset(root, { valSplit: 0.25, seed })).valid.map((s) => s.path);
    const a = await validOf(3);
    assert.deepEqual(await validOf(3), a);
    assert.notDeepEqual(await validOf(4), a);
  });

  test('kaggle: train/<class>.<id>.jpg, class from the name before the first dot', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'kaggle', classes: 2, perClass: 10, size: 16 });
    const ds = await loadDataset(root, { valSplit: 0.2 });
    assert.equal(ds.layout, 'kaggle');
    assert.deepEqual(ds.classes, ['circle', 'stripes']);
    assert.deepEqual(countByClass(ds, 'train'), [8, 8]);
    assert.deepEqual(countByClass(ds, 'valid'), [2, 2]);
    assertLabelsMatchFiles(ds);
  });

  test('kaggle flat files in the folder itself (no train/) are detected too', async () => {
    const root = fresh();
    await mkdir(root, { recursive: true });
    for (let i = 0; i < 3; i++) {
      await writeClassImage(path.join(root, `cat.${i}.jpg`), 0, { seed: i, size: 16 });
      await writeClassImage(path.join(root, `dog.${i}.jpg`), 1, { seed: 10 + i, size: 16 });
    }
    const ds = await loadDataset(root, { valSplit: 0.34 });
    assert.equal(ds.layout, 'kaggle');
    assert.deepEqual(ds.classes, ['cat', 'dog']);
    assert.equal(ds.train.length + ds.valid.length, 6);
  });

  test('--layout forces a layout the detection would not pick', async () => {
    // Kaggle files plus a stray sub-folder: detection sees a class folder; forcing kaggle reads the files.
    const root = fresh();
    await mkdir(path.join(root, 'thumbnails'), { recursive: true });
    await writeClassImage(path.join(root, 'thumbnails', 'x.jpg'), 0, { seed: 99, size: 16 });
    for (let i = 0; i < 4; i++) {
      await writeClassImage(path.join(root, `cat.${i}.jpg`), 0, { seed: i, size: 16 });
      await writeClassImage(path.join(root, `dog.${i}.jpg`), 1, { seed: 10 + i, size: 16 });
    }
    await rejectsUsage(loadDataset(root), 'only one class', root);
    const ds = await loadDataset(root, { layout: 'kaggle', valSplit: 0.25 });
    assert.equal(ds.layout, 'kaggle');
    assert.deepEqual(ds.classes, ['cat', 'dog']);
    assert.deepEqual(countByClass(ds, 'train'), [3, 3]);

    // And forcing fastai on class folders says which folder is missing.
    const folders = fresh();
    await makeImageDataset(folders, { layout: 'folders', classes: 2, perClass: 2, size: 16 });
    await rejectsUsage(loadDataset(folders, { layout: 'fastai' }), path.join(folders, 'train'));
  });
});

describe('what is in the folders', () => {
  test('hidden files, .DS_Store, Thumbs.db and hidden folders are ignored without a word', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'folders', classes: 2, perClass: 3, size: 16 });
    const classDir = path.join(root, 'circle');
    await writeFile(path.join(classDir, '.DS_Store'), 'junk');
    await writeFile(path.join(classDir, 'Thumbs.db'), 'junk');
    await writeFile(path.join(classDir, '._circle-0.jpg'), 'AppleDouble resource fork');
    await mkdir(path.join(root, '.git'));
    await writeClassImage(path.join(root, '.git', 'x.jpg'), 0, { seed: 1, size: 16 });
    const ds = await loadDataset(root, { valSplit: 0 });
    assert.deepEqual(ds.classes, ['circle', 'stripes']);
    assert.equal(ds.train.length, 6);
    assert.deepEqual(ds.skipped, []);
    assert.deepEqual(ds.warnings, []);
  });

  test('a file that is not an image is skipped and listed with its path', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'fastai', classes: 2, perClass: 3, validPerClass: 1, size: 16 });
    const notes = path.join(root, 'train', 'stripes', 'notes.txt');
    await writeFile(notes, 'not a picture');
    const ds = await loadDataset(root);
    assert.equal(ds.train.length, 6);
    assert.equal(ds.skipped.length, 1);
    assert.equal(ds.skipped[0].path, notes);
    assert.match(ds.skipped[0].reason, /not an image/);
  });

  test('an empty class folder is left out with a warning naming it', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'folders', classes: 2, perClass: 3, size: 16 });
    await mkdir(path.join(root, 'empty'));
    const ds = await loadDataset(root);
    assert.deepEqual(ds.classes, ['circle', 'stripes']);
    assert.ok(ds.warnings.some((w) => w.includes(path.join(root, 'empty'))), ds.warnings.join('; '));
  });
});

describe('data a classifier cannot learn from', () => {
  test('only one class is a UsageError', async () => {
    const folders = fresh();
    await mkdir(path.join(folders, 'cats'), { recursive: true });
    await writeClassImage(path.join(folders, 'cats', 'a.jpg'), 0, { seed: 1, size: 16 });
    await writeClassImage(path.join(folders, 'cats', 'b.jpg'), 0, { seed: 2, size: 16 });
    await rejectsUsage(loadDataset(folders), 'only one class', '"cats"', 'at least 2 classes');

    const fastai = fresh();
    await mkdir(path.join(fastai, 'train', 'cats'), { recursive: true });
    await mkdir(path.join(fastai, 'valid', 'cats'), { recursive: true });
    await writeClassImage(path.join(fastai, 'train', 'cats', 'a.jpg'), 0, { seed: 1, size: 16 });
    await rejectsUsage(loadDataset(fastai), 'only one class');
  });

  test('fastai: a class in valid/ that train/ lacks is a UsageError naming both', async () => {
    const root = fresh();
    await makeImageDataset(root, { layout: 'fastai', classes: 2, perClass: 2, validPerClass: 1, size: 16 });
    await mkdir(path.join(root, 'valid', 'zebra'));
    await writeClassImage(path.join(root, 'valid', 'zebra', 'z.jpg'), 2, { seed: 3, size: 16 });
    await rejectsUsage(loadDataset(root), '"zebra"', path.join(root, 'valid'), path.join(root, 'train'));
  });

  test('a missing data folder is a UsageError naming the path', async () => {
    const missing = path.join(tmp, 'no-such-folder');
    await rejectsUsage(loadDataset(missing), missing, 'does not exist');
  });

  test('a file instead of a folder is a UsageError naming the path', async () => {
    const file = path.join(tmp, 'photo.jpg');
    await writeClassImage(file, 0, { seed: 5, size: 16 });
    await rejectsUsage(loadDataset(file), file, 'not a folder');
  });
});
