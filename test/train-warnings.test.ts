/**
 * What training cannot measure is said once, before it starts, in text and in --json's
 * `warnings`; the data summary names the folders it ignored; the predict hint is shell-quoted.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { train } from '../src/pipeline/train.ts';
import type { ProgressEvent } from '../src/progress.ts';
import { makeImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone, type TinyBackboneFiles } from './fixtures/tiny-backbone.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let tmp: string;
let tiny: TinyBackboneFiles;
let folders: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-warn-'));
  tiny = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 5 });
  folders = (await makeImageDataset(path.join(tmp, 'shapes'), { layout: 'folders', classes: 2, perClass: 10, size: 32, seed: 3 })).root;
});
after(() => rm(tmp, { recursive: true, force: true }));

function quick(data: string, extra: Parameters<typeof train>[1] = {}) {
  const events: ProgressEvent[] = [];
  const run = train(data, { backbone: [tiny.folder], layer: ['block2_pool'], engine: 'tfjs', epochs: 2, ensemble: 1, cacheDir: path.join(tmp, 'cache'), onProgress: (e) => events.push(e), ...extra });
  return run.then((result) => {
    result.head.dispose();
    return { result, events, warned: events.filter((e) => e.status === 'warn').map((e) => (e as { message: string }).message) };
  });
}

describe('validation warnings', () => {
  test('fewer than 30 validation images: calibration skipped, said once', async () => {
    const { result, warned } = await quick(folders, { valSplit: 0.2 });
    const lines = result.warnings.filter((w) => /calibration skipped: 4 validation image\(s\), at least 30/.test(w));
    assert.equal(lines.length, 1, result.warnings.join('\n'));
    assert.deepEqual(warned.filter((w) => /calibration skipped/.test(w)).length, 1);
  });

  test('--val-split 0: no validation set, one line, no calibration line besides', async () => {
    const { result } = await quick(folders, { valSplit: 0 });
    assert.equal(result.counts.valid, 0);
    assert.equal(result.warnings.filter((w) => /no validation images \(--val-split 0\)/.test(w)).length, 1, result.warnings.join('\n'));
    assert.ok(!result.warnings.some((w) => /calibration skipped/.test(w)), result.warnings.join('\n'));
  });

  test('10 of one class and 1 of another: the class without validation images is named', async () => {
    const root = path.join(tmp, 'lopsided');
    const ds = await makeImageDataset(path.join(tmp, 'lopsided-src'), { layout: 'folders', classes: 2, perClass: 10, size: 32, seed: 4 });
    await mkdir(path.join(root, 'cats'), { recursive: true });
    await mkdir(path.join(root, 'dogs'), { recursive: true });
    for (const f of ds.train.stripes) await copyFile(f, path.join(root, 'cats', path.basename(f)));
    await copyFile(ds.train.circle[0], path.join(root, 'dogs', 'only.jpg'));
    const { result } = await quick(root, { valSplit: 0.2 });
    assert.ok(result.warnings.some((w) => /no validation images of class "dogs"/.test(w)), result.warnings.join('\n'));
  });
});

describe('data summary', () => {
  test('the fast.ai zip\'s sample/, test1/ and models/ are named as ignored', async () => {
    const root = (await makeImageDataset(path.join(tmp, 'fastai'), { layout: 'fastai', classes: 2, perClass: 8, validPerClass: 3, size: 32, seed: 6 })).root;
    for (const extra of ['sample', 'test1', 'models']) {
      await mkdir(path.join(root, extra), { recursive: true });
      await writeFile(path.join(root, extra, 'README'), 'x');
    }
    const { events } = await quick(root);
    const summary = events.find((e) => e.status === 'done' && e.task === 'dataset') as { message: string } | undefined;
    assert.ok(summary, 'a data summary');
    assert.match(summary.message, /ignored: models\/, sample\/, test1\//, summary.message);
  });
});

describe('the CLI', () => {
  test('warnings as text lines and in --json; the predict hint is shell-quoted', async () => {
    const odd = path.join(tmp, "it's data");
    await makeImageDataset(odd, { layout: 'folders', classes: 2, perClass: 6, size: 32, seed: 8 });
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'finetune.js'), ...args], { cwd: tmp, env: { ...process.env, CI: '1', NO_COLOR: '1', FINETUNE_HOME: path.join(tmp, 'home'), FINETUNE_OFFLINE: '1' } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const args = ['train', odd, '--backbone', tiny.folder, '--layer', 'block2_pool', '--engine', 'tfjs', '--epochs', '2', '--ensemble', '1', '--cache-dir', path.join(tmp, 'cache')];
    const text = await run([...args, '--out', path.join(tmp, 'models', "it's data")]);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stderr.split('\n').filter((l) => /^warning: calibration skipped/.test(l)).length, 1, text.stderr);
    const hint = text.stderr.split('\n').find((l) => l.startsWith('predict with:'));
    assert.equal(hint, `predict with: finetune predict --model '${path.join(tmp, 'models')}/it'\\''s data' IMAGE...`, text.stderr);
    const json = await run([...args, '--out', path.join(tmp, 'models', 'j'), '--json']);
    assert.equal(json.code, 0, json.stderr);
    const result = JSON.parse(json.stdout);
    assert.equal(result.warnings.filter((w: string) => /calibration skipped/.test(w)).length, 1, json.stdout);
  });
});
