/**
 * Labels from a CSV (`--labels FILE.csv`, columns path,label[,split] with a header): a layout
 * beside the folder ones, with their checks. Quoted fields and commas in names are parsed by
 * csv-parse; paths are relative to the CSV's folder or to DATA.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXIT, UsageError } from '../src/errors.ts';
import { loadDataset } from '../src/data/layout.ts';
import { TINY_LAYER, noisy, writeTinyBackbone } from './fixtures/bad-inputs.ts';
import { errorLines, runFinetune, show } from './fixtures/models-cli.ts';

let root = '';
let data = '';
let backbone = '';

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'finetune-csv-'));
  data = path.join(root, 'photos');
  await mkdir(path.join(data, 'flat'), { recursive: true });
  for (let i = 0; i < 6; i++) {
    await writeFile(path.join(data, 'flat', `img-${i}.jpg`), await noisy(40, 40, 20 + i * 7));
    await writeFile(path.join(data, 'flat', `pic, ${i}.jpg`), await noisy(40, 40, 200 - i * 7));
  }
  backbone = await writeTinyBackbone(path.join(root, 'backbone'));
});
after(() => rm(root, { recursive: true, force: true }));

async function csv(name: string, text: string): Promise<string> {
  const file = path.join(root, name);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  return file;
}

const rows = (split: (i: number) => string = (i) => (i < 4 ? 'train' : 'valid')) =>
  Array.from({ length: 6 }, (_, i) => [`flat/img-${i}.jpg,plain cat,${split(i)}`, `"flat/pic, ${i}.jpg","big, ""dog""",${split(i)}`]).flat();

const rejects = (promise: Promise<unknown>, pattern: RegExp) =>
  assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof UsageError, String(err));
    assert.match((err as Error).message, pattern);
    return true;
  });

describe('the csv layout (library)', () => {
  test('quoted fields, commas and quotes in names, paths relative to DATA, the split column', async () => {
    const file = await csv('labels.csv', ['path,label,split', ...rows()].join('\n') + '\n');
    const ds = await loadDataset(data, { labels: file });
    assert.equal(ds.layout, 'csv');
    assert.deepEqual(ds.classes, ['big, "dog"', 'plain cat']);
    assert.equal(ds.train.length, 8);
    assert.equal(ds.valid.length, 4);
    assert.ok(ds.train.some((s) => s.path === path.join(data, 'flat/pic, 0.jpg') && s.label === 0));
    assert.deepEqual(ds.skipped, []);
  });

  test('paths relative to the CSV; without a split column the validation split is seeded and stratified', async () => {
    const lines = Array.from({ length: 6 }, (_, i) => [`a,../photos/flat/img-${i}.jpg`, `b,"../photos/flat/pic, ${i}.jpg"`]).flat();
    const file = await csv('lists/labels-nosplit.csv', ['label,path', ...lines].join('\r\n'));
    const ds = await loadDataset(path.join(root, 'backbone'), { labels: file, valSplit: 0.5, seed: 3 });
    assert.deepEqual(ds.classes, ['a', 'b']);
    assert.equal(ds.valid.length, 6);
    assert.equal(ds.valid.filter((s) => s.label === 0).length, 3);
    assert.ok(ds.train.every((s) => s.path.startsWith(path.join(data, 'flat'))));
  });

  test('a missing file is named and skipped; an empty label too', async () => {
    const file = await csv('with-missing.csv', ['path,label', 'flat/img-0.jpg,a', 'flat/img-1.jpg,a', 'flat/gone.jpg,a', '"flat/pic, 0.jpg",', '"flat/pic, 1.jpg",b', '"flat/pic, 2.jpg",b'].join('\n'));
    const ds = await loadDataset(data, { labels: file, valSplit: 0 });
    assert.deepEqual(ds.skipped, [
      { path: path.join(data, 'flat/gone.jpg'), reason: `file not found (${file} line 4)` },
      { path: path.join(data, 'flat/pic, 0.jpg'), reason: `no label (${file} line 5)` },
    ]);
    assert.equal(ds.train.length, 4);
  });

  test('refused: an unknown split value (line named), one class, no header with path and label, a row of the wrong width', async () => {
    await rejects(loadDataset(data, { labels: await csv('bad-split.csv', 'path,label,split\nflat/img-0.jpg,a,train\nflat/img-1.jpg,b,holdout\n') }), /bad-split\.csv line 3: split "holdout" is not one of train, valid, test \(also val, validation, training\)/);
    await rejects(loadDataset(data, { labels: await csv('one-class.csv', 'path,label\nflat/img-0.jpg,a\nflat/img-1.jpg,a\n') }), /only one class \("a"\)/);
    await rejects(loadDataset(data, { labels: await csv('no-header.csv', 'flat/img-0.jpg,a\nflat/img-1.jpg,b\n') }), /no-header\.csv: the first line must be a header with the columns path and label \(and optionally split\); it is "flat\/img-0\.jpg,a"/);
    await rejects(loadDataset(data, { labels: await csv('ragged.csv', 'path,label\nflat/img-0.jpg,a,extra\n') }), /ragged\.csv: .*line 2/);
    await rejects(loadDataset(data, { labels: path.join(root, 'nope.csv') }), /--labels .*nope\.csv: no such file or folder/);
  });
});

describe('--labels through the CLI', () => {
  const home = () => path.join(root, 'home');
  const tiny = () => ['--backbone', backbone, '--layer', TINY_LAYER, '--engine', 'tfjs', '--epochs', '2', '--hidden', '8', '--ensemble', '1', '--no-cache'];

  test('train DATA --labels FILE.csv, evaluate with the same labels, and `train FILE.csv` alone', async () => {
    const file = await csv('photos/labels.csv', ['path,label,split', ...rows()].join('\n'));
    const model = path.join(root, 'model');
    const t = await runFinetune(['train', data, '--labels', file, ...tiny(), '--out', model, '--json'], { home: home(), cwd: root });
    assert.equal(t.code, EXIT.ok, show(t));
    const result = JSON.parse(t.stdout);
    assert.deepEqual(result.classes, ['big, "dog"', 'plain cat']);
    assert.deepEqual(result.counts, { train: 8, valid: 4, skipped: 0 });
    const e = await runFinetune(['evaluate', data, '--labels', file, '--model', model, '--no-cache', '--json'], { home: home(), cwd: root });
    assert.equal(e.code, EXIT.ok, show(e));
    assert.equal(JSON.parse(e.stdout).counts.evaluated, 4, 'the valid rows of the CSV');
    const direct = await runFinetune(['train', file, ...tiny(), '--out', path.join(root, 'model2'), '--json'], { home: home(), cwd: root });
    assert.equal(direct.code, EXIT.ok, show(direct));
    assert.deepEqual(JSON.parse(direct.stdout).counts, { train: 8, valid: 4, skipped: 0 });
  });

  test('an unknown split value is exit 2 with one line', async () => {
    const file = await csv('bad-cli.csv', 'path,label,split\nflat/img-0.jpg,a,train\nflat/img-1.jpg,b,dev\n');
    const r = await runFinetune(['train', data, '--labels', file, ...tiny(), '--out', path.join(root, 'model3')], { home: home(), cwd: root });
    assert.equal(r.code, EXIT.usage, show(r));
    assert.equal(errorLines(r).length, 1);
    assert.match(errorLines(r)[0], /line 3: split "dev"/);
  });
});
