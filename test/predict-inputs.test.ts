/**
 * predict with nothing it can read, and Kaggle submission ids: what a user sees on the
 * terminal, in --json and in the submission file.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let tmp: string;
let data: string;
let model: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function finetune(args: string[]): Promise<Run> {
  const env = { ...process.env, FINETUNE_HOME: path.join(tmp, 'home'), CI: '1', NO_COLOR: '1', FINETUNE_OFFLINE: '1', FINETUNE_DEBUG: '' };
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'finetune.js'), ...args], { env, cwd: tmp });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-predict-'));
  data = (await makeImageDataset(path.join(tmp, 'dogscats'), { layout: 'fastai', classes: 2, perClass: 10, validPerClass: 4, size: 32 })).root;
  for (const split of ['train', 'valid']) {
    await rename(path.join(data, split, 'stripes'), path.join(data, split, 'cats'));
    await rename(path.join(data, split, 'circle'), path.join(data, split, 'dogs'));
  }
  const { folder } = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 9 });
  model = path.join(tmp, 'model');
  const trained = await finetune(['train', data, '--backbone', folder, '--layer', 'block2_pool', '--engine', 'tfjs', '--out', model, '--epochs', '3', '--ensemble', '1', '-q']);
  assert.equal(trained.code, 0, show(trained));
  const junk = path.join(tmp, 'junk');
  await mkdir(junk);
  for (let i = 0; i < 30; i++) await writeFile(path.join(junk, `note-${i}.txt`), 'not an image\n');
  await writeFile(path.join(junk, 'fake.jpg'), 'not a jpeg either');
});
after(() => rm(tmp, { recursive: true, force: true }));

describe('predict with nothing to predict', () => {
  test('a folder of non-images: exit 2, one line', async () => {
    const r = await finetune(['predict', 'junk', '--model', model, '--engine', 'tfjs']);
    assert.equal(r.code, 2, show(r));
    assert.equal(r.stdout, '', show(r));
    // Progress lines aside, one line: no list of the 31 files, no warning per file.
    assert.doesNotMatch(r.stderr, /note-\d+\.txt|fake\.jpg|warning/, show(r));
    const err = lines(r.stderr).filter((l) => l.startsWith('finetune: error:'));
    assert.equal(err.length, 1, show(r));
    assert.match(err[0], /^finetune: error: nothing to predict: none of the 31 input\(s\)/, show(r));
    assert.match(err[0], /--verbose/, show(r));
  });

  test('--verbose lists every input left out and why', async () => {
    const r = await finetune(['predict', 'junk', '--model', model, '--engine', 'tfjs', '--verbose']);
    assert.equal(r.code, 2, show(r));
    assert.ok(r.stderr.includes(path.join('junk', 'note-7.txt')), show(r));
    assert.ok(r.stderr.includes(path.join('junk', 'fake.jpg')), show(r));
  });

  test('--json: one record per input left out, then the error object', async () => {
    const r = await finetune(['predict', 'junk', 'missing.jpg', '--model', model, '--engine', 'tfjs', '--json']);
    assert.equal(r.code, 2, show(r));
    const records = lines(r.stdout).map((l) => JSON.parse(l));
    const last = records.pop();
    assert.equal(last.exitCode, 2);
    assert.match(last.error, /nothing to predict/);
    assert.ok(records.some((x) => x.path === 'missing.jpg' && /not found/.test(x.error)), show(r));
    assert.ok(records.some((x) => x.path === path.join('junk', 'fake.jpg') && x.error), show(r));
  });

  test('one readable image among junk is a normal run with exit 3', async () => {
    const image = path.join(data, 'valid', 'dogs', 'circle-0.jpg');
    const r = await finetune(['predict', image, 'missing.jpg', '--model', model, '--engine', 'tfjs']);
    assert.equal(r.code, 3, show(r));
    assert.equal(lines(r.stdout).length, 1, show(r));
  });
});

describe('predict --kaggle ids', () => {
  test('warns about non-numeric and duplicate ids; stdout in the order of the CSV', async () => {
    const test1 = path.join(tmp, 'test1');
    await mkdir(path.join(test1, 'more'), { recursive: true });
    const source = path.join(data, 'valid', 'dogs', 'circle-0.jpg');
    for (const name of ['10.jpg', '2.jpg', '1.jpg', 'photo.jpg', path.join('more', '2.jpg')]) await copyFile(source, path.join(test1, name));
    const submission = path.join(tmp, 'submission.csv');
    const r = await finetune(['predict', 'test1', '--model', model, '--engine', 'tfjs', '--kaggle', submission]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, /warning: .*non-numeric id.*photo/, show(r));
    assert.match(r.stderr, /warning: .*id 2 .*twice|warning: .*duplicate id.*2/, show(r));
    const ids = (await readFile(submission, 'utf8')).trim().split('\n').slice(1).map((l) => l.split(',')[0]);
    const printed = lines(r.stdout).map((l) => path.basename(l.split('\t')[0]).replace(/\.jpg$/, ''));
    assert.deepEqual(printed, ids, show(r));
    assert.deepEqual(ids.slice(0, 4), ['1', '2', '2', '10']);
  });

  test('numeric, distinct ids: no warning', async () => {
    const clean = path.join(tmp, 'clean');
    await mkdir(clean);
    const source = path.join(data, 'valid', 'dogs', 'circle-0.jpg');
    for (const name of ['3.jpg', '1.jpg']) await copyFile(source, path.join(clean, name));
    const r = await finetune(['predict', 'clean', '--model', model, '--engine', 'tfjs', '--kaggle', path.join(tmp, 'clean.csv')]);
    assert.equal(r.code, 0, show(r));
    assert.doesNotMatch(r.stderr, /warning/, show(r));
  });
});
