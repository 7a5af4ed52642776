import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { registerPredict } from '../src/cli/predict.ts';
import { registerTrain } from '../src/cli/train.ts';
import { TRAIN_DEFAULTS } from '../src/defaults.ts';
import { makeHeldOutImages, makeImageDataset, type HeldOutImage } from './fixtures/images.ts';
import { writeTinyBackbone, type TinyBackboneFiles } from './fixtures/tiny-backbone.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'finetune.js');

let tmp: string;
let home: string;
let dataDir: string;
let heldOut: HeldOutImage[];
let tiny: TinyBackboneFiles;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `finetune ARGS` as a user runs it: a separate process, not a TTY, CI set (no bars or colour). */
function finetune(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: tmp,
      env: { ...process.env, FINETUNE_HOME: home, CI: '1', NO_COLOR: '1', FINETUNE_DEBUG: '', FINETUNE_OFFLINE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

/** Flags of a command as declared (hidden ones left out): what its --help must mention. */
function declaredFlags(name: 'train' | 'predict'): string[] {
  const program = new Command('finetune');
  registerTrain(program, TRAIN_DEFAULTS);
  registerPredict(program, TRAIN_DEFAULTS);
  const cmd = program.commands.find((c) => c.name() === name)!;
  return cmd.options.filter((o) => !o.hidden).map((o) => o.long!);
}

function trainArgs(data: string, ...extra: string[]): string[] {
  return ['train', data, '--backbone', tiny.folder, '--layer', 'block2_pool', '--engine', 'tfjs', '--epochs', '15', '--lr', '0.01', '--cache-dir', path.join(tmp, 'cache'), ...extra];
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-cli-'));
  home = path.join(tmp, 'home');
  dataDir = path.join(tmp, 'shapes');
  await makeImageDataset(dataDir, { layout: 'folders', classes: 2, perClass: 16, size: 48, seed: 11 });
  heldOut = await makeHeldOutImages(path.join(tmp, 'held-out'), { classes: 2, count: 4, seed: 12 });
  tiny = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 13 });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('help', () => {
  test('finetune --help exits 0 and lists the commands', async () => {
    const r = await finetune('--help');
    assert.equal(r.code, 0, show(r));
    for (const word of ['train', 'predict', '--version', '--help', 'Exit codes']) assert.ok(r.stdout.includes(word), `help mentions ${word}\n${r.stdout}`);
  });

  for (const name of ['train', 'predict'] as const) {
    test(`finetune ${name} --help exits 0 and mentions every flag`, async () => {
      const r = await finetune(name, '--help');
      assert.equal(r.code, 0, show(r));
      const flags = declaredFlags(name);
      assert.ok(flags.length >= (name === 'train' ? 20 : 10), `declared flags: ${flags.join(' ')}`);
      for (const flag of flags) assert.ok(r.stdout.includes(flag), `${name} --help mentions ${flag}`);
      assert.equal(r.stderr, '');
    });
  }

  test('defaults shown in train --help are the library defaults', async () => {
    const r = await finetune('train', '--help');
    // Help wraps to the terminal width: compare each flag's entry as one line.
    const flat = r.stdout.replace(/\s+/g, ' ');
    const entry = (flag: string) => flat.slice(flat.indexOf(`${flag} `)).split(/ (?=--|-q,)/)[0];
    assert.match(entry('--epochs'), new RegExp(`default: ${TRAIN_DEFAULTS.epochs}\\)`));
    assert.match(entry('--hidden'), new RegExp(`default: ${TRAIN_DEFAULTS.hidden}\\)`));
    assert.match(entry('--val-split'), new RegExp(`default: ${TRAIN_DEFAULTS.valSplit}\\)`));
    assert.match(entry('--backbone'), /default: "vgg16"/);
  });
});

describe('train then predict', () => {
  const modelDir = () => path.join(tmp, 'model');

  test('train --json prints exactly one JSON object and writes the bundle at --out', async () => {
    const r = await finetune(...trainArgs(dataDir, '--out', modelDir(), '--json'));
    assert.equal(r.code, 0, show(r));
    assert.equal(lines(r.stdout).length, 1, show(r));
    const result = JSON.parse(r.stdout);
    assert.equal(result.model, modelDir());
    assert.deepEqual(result.classes, ['circle', 'stripes']);
    assert.deepEqual(result.counts, { train: 26, valid: 6, skipped: 0 });
    for (const key of ['valAccuracy', 'valLoss', 'epochs']) assert.equal(typeof result.metrics[key], 'number', `metrics.${key}`);
    assert.ok(result.metrics.valAccuracy >= 0.8, `val accuracy ${result.metrics.valAccuracy}`);
    for (const key of ['featuresSeconds', 'trainSeconds', 'imagesPerSecond']) assert.equal(typeof result.timing[key], 'number', `timing.${key}`);
    assert.equal(result.engine, 'tfjs');
    assert.equal(typeof result.backend, 'string');
    assert.ok(existsSync(path.join(modelDir(), 'finetune.json')), 'finetune.json written');
    const manifest = JSON.parse(await readFile(path.join(modelDir(), 'finetune.json'), 'utf8'));
    assert.ok(existsSync(path.join(modelDir(), manifest.head)), 'head written');
  });

  test('predict without --model uses the model trained last; one line per image', async () => {
    const r = await finetune('predict', ...heldOut.map((h) => h.path), '--engine', 'tfjs');
    assert.equal(r.code, 0, show(r));
    const out = lines(r.stdout);
    assert.equal(out.length, heldOut.length, show(r));
    let correct = 0;
    out.forEach((line, i) => {
      const [file, label, probability] = line.split('\t');
      assert.equal(file, heldOut[i].path);
      assert.ok(Number(probability) >= 0.5 && Number(probability) <= 1, line);
      if (label === heldOut[i].className) correct++;
    });
    assert.ok(correct >= heldOut.length - 1, `${correct}/${heldOut.length} correct\n${r.stdout}`);
  });

  test('predict --json prints ndjson; a missing file gets an error line and exit code 3', async () => {
    const missing = path.join(tmp, 'no-such.jpg');
    const r = await finetune('predict', '--model', modelDir(), '--json', '--engine', 'tfjs', heldOut[0].path, missing);
    assert.equal(r.code, 3, show(r));
    const records = lines(r.stdout).map((l) => JSON.parse(l));
    assert.equal(records.length, 2, show(r));
    const ok = records.find((x) => x.path === heldOut[0].path);
    assert.deepEqual(Object.keys(ok).sort(), ['label', 'path', 'probabilities', 'probability']);
    assert.deepEqual(Object.keys(ok.probabilities).sort(), ['circle', 'stripes']);
    assert.equal(ok.label, heldOut[0].className);
    const bad = records.find((x) => x.path === missing);
    assert.deepEqual(Object.keys(bad).sort(), ['error', 'path']);
    assert.match(bad.error, /not found/);
  });

  test('a corrupt image in the data: training finishes, exit code 3, the path named on stderr', async () => {
    const root = path.join(tmp, 'with-broken');
    const ds = await makeImageDataset(root, { layout: 'folders', classes: 2, perClass: 8, size: 32, seed: 14 });
    const good = await readFile(ds.train.circle[0]);
    const broken = path.join(root, 'circle', 'broken.jpg');
    await writeFile(broken, good.subarray(0, Math.floor(good.length / 3)));
    const r = await finetune(...trainArgs(root, '--epochs', '2', '--out', path.join(tmp, 'model-broken')));
    assert.equal(r.code, 3, show(r));
    assert.ok(r.stderr.includes(broken), show(r));
    assert.match(r.stdout, /1 skipped/);
    assert.ok(existsSync(path.join(tmp, 'model-broken', 'finetune.json')), 'the model is still written');
  });
});

describe('usage errors exit 2 with a one-line message', () => {
  function assertUsage(r: Run, ...mentions: string[]): void {
    assert.equal(r.code, 2, show(r));
    assert.equal(r.stdout, '', show(r));
    const first = lines(r.stderr)[0] ?? '';
    for (const m of mentions) assert.ok(first.includes(m), `first stderr line mentions ${m}\n${show(r)}`);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    assert.ok(lines(r.stderr).length <= 2, `at most the message and a hint\n${show(r)}`);
  }

  test('an unknown flag', async () => {
    assertUsage(await finetune('train', dataDir, '--bogus'), '--bogus');
  });

  test('a choice that is not allowed', async () => {
    assertUsage(await finetune('train', dataDir, '--engine', 'turbo'), 'turbo', 'onnx', 'tfjs');
  });

  test('a number flag given a word', async () => {
    assertUsage(await finetune('train', dataDir, '--epochs', 'many'), '--epochs', 'many');
  });

  test('a missing data folder names the path', async () => {
    const missing = path.join(tmp, 'no-such-data');
    assertUsage(await finetune('train', missing, '--engine', 'tfjs'), missing);
  });

  test('with --json, the error is also a JSON object on stdout', async () => {
    const missing = path.join(tmp, 'no-such-data');
    const r = await finetune('train', missing, '--engine', 'tfjs', '--json');
    assert.equal(r.code, 2, show(r));
    const out = JSON.parse(r.stdout);
    assert.equal(out.exitCode, 2);
    assert.ok(out.error.includes(missing));
  });
});
