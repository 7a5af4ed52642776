/**
 * The CLI on real pseudo-terminals of awkward sizes (through util-linux `script`): a run always
 * finishes, progress never draws past the right edge, NO_COLOR and TERM=dumb are honoured.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone, type TinyBackboneFiles } from './fixtures/tiny-backbone.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'finetune.js');
const LIMIT_MS = 90_000;
const MAX_BYTES = 200_000;

const hasScript = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

let tmp: string;
let dataDir: string;
let tiny: TinyBackboneFiles;

before(async () => {
  if (!hasScript) return;
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-tty-'));
  dataDir = path.join(tmp, 'shapes');
  await makeImageDataset(dataDir, { layout: 'folders', classes: 2, perClass: 12, size: 40, seed: 21 });
  tiny = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 22 });
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

interface TtyRun {
  code: number | null;
  output: string;
  ms: number;
  killed: boolean;
}

/** `finetune ARGS` on a pty of COLS×ROWS; killed (and reported) past LIMIT_MS or MAX_BYTES of output. */
function onTty(cols: number, rows: number, env: Record<string, string | undefined>, ...args: string[]): Promise<TtyRun> {
  const command = `stty cols ${cols} rows ${rows}; exec ${quote(process.execPath)} ${[BIN, ...args].map(quote).join(' ')}`;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      cwd: tmp,
      detached: true,
      env: { ...process.env, CI: '', FINETUNE_HOME: path.join(tmp, 'home'), FINETUNE_OFFLINE: '1', FINETUNE_DEBUG: '', TERM: 'xterm-256color', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let killed = false;
    const kill = () => {
      killed = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {}
    };
    const timer = setTimeout(kill, LIMIT_MS);
    const take = (d: Buffer) => {
      if (output.length < MAX_BYTES) output += d.toString();
      else kill();
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: Date.now() - started, killed });
    });
  });
}

function trainArgs(out: string, ...extra: string[]): string[] {
  return ['train', dataDir, '--backbone', tiny.folder, '--layer', 'block2_pool', '--engine', 'tfjs', '--epochs', '3', '--ensemble', '2', '--lr', '0.01', '--cache-dir', path.join(tmp, 'cache'), '--out', path.join(tmp, out), ...extra];
}

/**
 * What a terminal shows as separate rows: text between line feeds, carriage returns and
 * cursor-to-column moves, with every other escape sequence removed.
 */
function drawnSegments(output: string): string[] {
  return output
    .replace(/\u001b\[[0-9;]*G/g, '\r')
    .replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b[78]|\u001b\][^\u0007]*\u0007/g, '')
    .split(/[\r\n]/);
}

const show = (r: TtyRun) => `exit ${r.code} after ${r.ms} ms${r.killed ? ' (killed)' : ''}, ${r.output.length} bytes\n${r.output.slice(0, 3000)}`;

describe('terminals of any size', { skip: hasScript ? false : 'util-linux `script` is not installed: no pseudo-terminal to test on' }, () => {
  for (const [cols, rows] of [
    [0, 0],
    [80, 0],
  ]) {
    test(`train on a ${cols}×${rows} pseudo-terminal finishes, with bounded output`, async () => {
      const r = await onTty(cols, rows, {}, ...trainArgs(`model-${cols}x${rows}`));
      assert.equal(r.killed, false, show(r));
      assert.equal(r.code, 0, show(r));
      assert.ok(r.output.length < 50_000, show(r));
      assert.match(r.output, /model\s+\S+model-/, show(r));
    });
  }

  for (const cols of [50, 120]) {
    test(`at ${cols} columns no drawn line is wider than the terminal`, async () => {
      const r = await onTty(cols, 30, {}, ...trainArgs(`model-${cols}`));
      assert.equal(r.code, 0, show(r));
      const wide = drawnSegments(r.output).filter((s) => [...s].length > cols);
      // Result lines on stdout are data (paths, tab-separated): only progress must fit.
      const progressWide = wide.filter((s) => !/^(model|classes|images|valid|time|predict with)\b/.test(s));
      assert.deepEqual(progressWide, [], show(r));
      assert.match(r.output, /head 2\/2 · epoch \d\/3/, `the bar says which head is training\n${show(r)}`);
    });
  }

  test('NO_COLOR: not one colour code, the spinner included', async () => {
    const r = await onTty(80, 24, { NO_COLOR: '1' }, ...trainArgs('model-nocolor'));
    assert.equal(r.code, 0, show(r));
    assert.doesNotMatch(r.output, /\u001b\[[0-9;]*m/, show(r));
  });

  test('TERM=dumb: plain lines, no cursor movement', async () => {
    const r = await onTty(80, 24, { TERM: 'dumb' }, ...trainArgs('model-dumb'));
    assert.equal(r.code, 0, show(r));
    assert.doesNotMatch(r.output, /\u001b/, show(r));
  });
});
