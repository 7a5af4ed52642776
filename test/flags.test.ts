/**
 * Flag values are checked where they are parsed: out-of-range numbers are usage errors (exit 2)
 * before any work, and every parse error, commander's own included, reads `finetune: error: …`
 * and is JSON on stdout with --json.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command, type CommanderError } from 'commander';
import { fraction, threshold } from '../src/cli/options.ts';
import { registerEvaluate } from '../src/cli/evaluate.ts';
import { registerLrFind } from '../src/cli/lr-find.ts';
import { registerPredict } from '../src/cli/predict.ts';
import { registerTrain } from '../src/cli/train.ts';
import { TRAIN_DEFAULTS } from '../src/defaults.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'finetune.js');

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-flags-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function finetune(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: tmp,
      env: { ...process.env, FINETUNE_HOME: path.join(tmp, 'home'), CI: '1', NO_COLOR: '1', FINETUNE_DEBUG: '', FINETUNE_OFFLINE: '1' },
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

function assertUsage(r: Run, ...mentions: string[]): void {
  assert.equal(r.code, 2, show(r));
  const first = r.stderr.split('\n')[0];
  assert.match(first, /^finetune: error: /, show(r));
  for (const m of mentions) assert.ok(first.includes(m), `first stderr line mentions ${m}\n${show(r)}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
}

/** Runs `cases` a few at a time (each is a separate process start). */
async function inBatches<T>(cases: T[], run: (c: T) => Promise<void>, width = 3): Promise<void> {
  for (let i = 0; i < cases.length; i += width) await Promise.all(cases.slice(i, i + width).map(run));
}

/** The commands as the CLI declares them, parsed in this process (no action runs: parsing fails first). */
function parseError(args: string[]): CommanderError | undefined {
  const program = new Command('finetune').exitOverride().configureOutput({ writeErr: () => {}, outputError: () => {} });
  registerTrain(program, TRAIN_DEFAULTS);
  registerPredict(program, TRAIN_DEFAULTS);
  registerEvaluate(program, TRAIN_DEFAULTS);
  registerLrFind(program, TRAIN_DEFAULTS);
  for (const c of program.commands) c.exitOverride().configureOutput({ writeErr: () => {}, outputError: () => {} }).action(() => {});
  try {
    program.parse(['node', 'finetune', ...args]);
    return undefined;
  } catch (err) {
    return err as CommanderError;
  }
}

describe('numeric flags out of range are refused where they are parsed', () => {
  const data = 'no-such-data';
  const cases: [string[], string][] = [
    [['evaluate', data, '--min-accuracy', '5'], '--min-accuracy'],
    [['evaluate', data, '--min-accuracy', '95'], '--min-accuracy'],
    [['evaluate', data, '--min-accuracy', '-0.1'], '--min-accuracy'],
    [['evaluate', data, '--max-log-loss', '-1'], '--max-log-loss'],
    [['train', data, '--threads', '0'], '--threads'],
    [['train', data, '--threads', '-2'], '--threads'],
    [['predict', 'x.jpg', '--threads', '0'], '--threads'],
    [['train', data, '--extract-batch-size', '0'], '--extract-batch-size'],
    [['evaluate', data, '--extract-batch-size', '-5'], '--extract-batch-size'],
    [['train', data, '--epochs', '0'], '--epochs'],
    [['train', data, '--batch-size', '0'], '--batch-size'],
    [['train', data, '--patience', '0'], '--patience'],
    [['train', data, '--hidden', '-1'], '--hidden'],
    [['train', data, '--val-split', '1'], '--val-split'],
    [['train', data, '--val-split', '-0.2'], '--val-split'],
    [['train', data, '--dropout', '1'], '--dropout'],
    [['train', data, '--lr', '0'], '--lr'],
    [['train', data, '--lr', '-0.1'], '--lr'],
    [['train', data, '--fine-tune', '-3'], '--fine-tune'],
    [['train', data, '--fine-tune-blocks', '0'], '--fine-tune-blocks'],
    [['train', data, '--fine-tune-lr', '0'], '--fine-tune-lr'],
    [['train', data, '--ensemble', '0'], '--ensemble'],
    [['train', data, '--augment-copies', '0'], '--augment-copies'],
    [['lr-find', data, '--threads', '-1'], '--threads'],
    [['predict', 'x.jpg', '--top', '0'], '--top'],
    [['predict', 'x.jpg', '--batch-size', '0'], '--batch-size'],
  ];
  for (const [args, flag] of cases) {
    test(args.join(' '), () => {
      const err = parseError(args);
      assert.ok(err, 'refused while parsing');
      assert.equal(err.code, 'commander.invalidArgument', err.message);
      assert.ok(err.message.includes(flag) && err.message.includes(args[args.length - 1]), err.message);
    });
  }
  test('values in range parse', () => {
    assert.equal(parseError(['train', data, '--threads', '2', '--val-split', '0', '--dropout', '0', '--hidden', '0', '--lr', 'auto', '--ensemble', '20']), undefined);
    assert.equal(parseError(['evaluate', data, '--min-accuracy', '95%', '--max-log-loss', '0']), undefined);
  });

  test('as the user runs them: exit 2, one line, before any work', async () => {
    const spawned: string[][] = [
      ['evaluate', data, '--min-accuracy', '95'],
      ['train', data, '--threads', '-2'],
      ['predict', 'x.jpg', '--extract-batch-size', '0'],
    ];
    // The data folder does not exist: a flag checked later than parsing would report the folder instead.
    await inBatches(spawned, async (args) => assertUsage(await finetune(...args), args[args.length - 2], args[args.length - 1]));
  });
});

describe('commander parse errors read like every other error', () => {
  test('unknown option, missing argument, invalid choice, missing option value: finetune: error:', async () => {
    const cases: string[][] = [
      ['train', 'data', '--bogus'],
      ['train'],
      ['train', 'data', '--engine', 'turbo'],
      ['train', 'data', '--epochs'],
      ['no-such-command'],
    ];
    await inBatches(cases, async (args) => assertUsage(await finetune(...args)));
  });

  test('with --json, a parse error is also one JSON object on stdout', async () => {
    for (const args of [
      ['train', 'data', '--json', '--bogus'],
      ['evaluate', 'data', '--json', '--min-accuracy', '95'],
    ]) {
      const r = await finetune(...args);
      assertUsage(r);
      const out = JSON.parse(r.stdout);
      assert.equal(out.exitCode, 2, show(r));
      assert.equal(typeof out.error, 'string');
      assert.doesNotMatch(out.error, /^finetune: error:/);
    }
  });
});

describe('threshold parsers', () => {
  test('--min-accuracy takes a fraction in [0, 1] or a percent', () => {
    const parse = fraction('--min-accuracy');
    assert.equal(parse('0.9'), 0.9);
    assert.equal(parse('1'), 1);
    assert.equal(parse('95%'), 0.95);
    assert.throws(() => parse('95'), /--min-accuracy.*95%/);
    assert.throws(() => parse('120%'), /--min-accuracy/);
  });
  test('--max-log-loss takes a number ≥ 0', () => {
    const parse = threshold('--max-log-loss');
    assert.equal(parse('0'), 0);
    assert.equal(parse('0.25'), 0.25);
    assert.throws(() => parse('-0.1'), /--max-log-loss/);
  });
});
