/**
 * Inputs that cannot be read are errors about reading: a folder of the data set that cannot be
 * listed stops `train` (and evaluate, lr-find) before any extraction, naming the folder and the
 * reason; a file that cannot be read is skipped and named (exit 3). Permission bits do not stop
 * root, so the runs happen as the user nobody (setpriv); where that is impossible, they skip.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXIT } from '../src/errors.ts';
import { TINY_LAYER, buildGoodData, noisy, writeTinyBackbone } from './fixtures/bad-inputs.ts';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'finetune.js');
const NOBODY = 65534;

function whyNotAsNobody(): string | false {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) {
    // Not root: permission bits already apply to this user, but setpriv cannot switch users.
    return 'runs as another user through setpriv, which needs root';
  }
  try {
    execFileSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', '0'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'setpriv cannot run a process as nobody here';
  }
}
const skip = whyNotAsNobody();

let root = '';
let backbone = '';

before(async () => {
  if (skip) return;
  root = await mkdtemp(path.join(os.tmpdir(), 'finetune-unreadable-'));
  await chmod(root, 0o777);
  backbone = await writeTinyBackbone(path.join(root, 'backbone'));
  execFileSync('chmod', ['-R', 'a+rwX', root]);
});
after(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function asNobody(args: string[]): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, FINETUNE_HOME: path.join(root, 'home'), CI: '1', NO_COLOR: '1', HOME: root };
  delete env.FINETUNE_CACHE;
  delete env.FINETUNE_DEBUG;
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, BIN, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
const errors = (r: Run) => r.stderr.split('\n').filter((l) => l.startsWith('finetune: error:'));
const tiny = () => ['--backbone', backbone, '--layer', TINY_LAYER, '--engine', 'tfjs', '--epochs', '1', '--hidden', '8', '--ensemble', '1', '--no-cache'];

/** A fresh readable data set (3 classes, so a lost class would still train) with `lock` made unreadable. */
async function dataWith(name: string, lock: (dir: string) => Promise<string>): Promise<{ dir: string; locked: string }> {
  const dir = path.join(root, name);
  await buildGoodData(dir, 2);
  for (const split of ['train', 'valid']) {
    await mkdir(path.join(dir, split, 'c'));
    for (let i = 0; i < 2; i++) await writeFile(path.join(dir, split, 'c', `c-${i}.jpg`), await noisy(40, 40, 240 - i * 9 - (split === 'valid' ? 3 : 0)));
  }
  execFileSync('chmod', ['-R', 'a+rwX', dir]);
  return { dir, locked: await lock(dir) };
}

describe('an unreadable folder in the data set', { skip }, () => {
  for (const [what, rel] of [
    ['a class folder', 'train/c'],
    ['a folder inside a class', 'train/a/more'],
    ['the validation folder', 'valid'],
  ] as const) {
    test(`${what} (${rel}, mode 000): exit 2, one line naming it and "permission denied", nothing extracted`, async () => {
      const { dir, locked } = await dataWith(`locked-${rel.replaceAll('/', '-')}`, async (d) => {
        const folder = path.join(d, rel);
        await mkdir(folder, { recursive: true });
        await writeFile(path.join(folder, 'x.jpg'), await noisy(40, 40, 77));
        await chmod(folder, 0o000);
        return folder;
      });
      const r = await asNobody(['train', dir, ...tiny(), '--out', path.join(root, `model-${rel.replaceAll('/', '-')}`)]);
      assert.equal(r.code, EXIT.usage, show(r));
      assert.equal(errors(r).length, 1, show(r));
      assert.match(errors(r)[0], new RegExp(`cannot read the folder ${locked}: permission denied`));
      assert.doesNotMatch(r.stderr, /extracting features/, show(r));
    });
  }

  test('evaluate on such data also stops with the folder named', async () => {
    const { dir, locked } = await dataWith('locked-eval', async (d) => path.join(d, 'valid/c'));
    const model = path.join(root, 'model-eval');
    const t = await asNobody(['train', dir, ...tiny(), '--out', model]);
    assert.equal(t.code, EXIT.ok, show(t));
    await chmod(locked, 0o000);
    const r = await asNobody(['evaluate', dir, '--model', model, '--no-cache']);
    assert.equal(r.code, EXIT.usage, show(r));
    assert.match(errors(r)[0], new RegExp(`cannot read the folder ${locked}: permission denied`));
  });

  test('an unreadable file is still skipped and named, exit 3', async () => {
    const { dir, locked } = await dataWith('locked-file', async (d) => {
      const file = path.join(d, 'train/a/locked.jpg');
      await writeFile(file, await noisy(40, 40, 50));
      await chmod(file, 0o000);
      return file;
    });
    const r = await asNobody(['train', dir, ...tiny(), '--out', path.join(root, 'model-file')]);
    assert.equal(r.code, EXIT.skipped, show(r));
    assert.match(r.stderr, new RegExp(`${locked}.*cannot read`));
  });
});
