/**
 * Broken model bundles: `finetune predict --model DIR img.jpg` refuses each with exit 1 (2 when
 * the folder is not there at all), one line on stderr that says what is wrong and what to do,
 * nothing on stdout and no stack trace.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXIT } from '../src/errors.ts';
import { saveModel } from '../src/bundle/save-model.ts';
import { train } from '../src/pipeline/train.ts';
import { TINY_LAYER, buildGoodData, writeTinyBackbone } from './fixtures/bad-inputs.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(repoRoot, 'bin/finetune.js');

let root = '';
let bundle = '';
let image = '';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function predictWith(model: string): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, FINETUNE_HOME: path.join(root, 'home'), CI: '1', NO_COLOR: '1' };
  delete env.FINETUNE_DEBUG;
  delete env.FINETUNE_CACHE;
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, 'predict', '--model', model, '--engine', 'tfjs', image], { cwd: repoRoot, env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

async function headDir(dir: string): Promise<string> {
  const manifest = JSON.parse(await readFile(path.join(dir, 'finetune.json'), 'utf8')) as { head: string };
  return path.join(dir, path.dirname(manifest.head));
}

async function editJson(file: string, edit: (json: Record<string, any>) => void): Promise<void> {
  const json = JSON.parse(await readFile(file, 'utf8'));
  edit(json);
  await writeFile(file, JSON.stringify(json));
}

interface BrokenBundle {
  what: string;
  /** Makes the damage in a fresh copy of a good bundle; returns the --model argument. */
  make(dir: string): Promise<string | void>;
  code: number;
  /** What is wrong and what to do, both. */
  message: RegExp;
  /** The backbone loads before this check, so its progress lines may come first. */
  afterProgress?: boolean;
}

const CASES: BrokenBundle[] = [
  {
    what: 'finetune.json missing',
    make: (dir) => rm(path.join(dir, 'finetune.json')),
    code: EXIT.runtime,
    message: /finetune\.json is missing: .* is not a finetune model \(re-train it/,
  },
  {
    what: 'finetune.json not JSON',
    make: (dir) => writeFile(path.join(dir, 'finetune.json'), '{"format": "finetune-model", '),
    code: EXIT.runtime,
    message: /finetune\.json is not valid JSON: .*re-train it/,
  },
  {
    what: 'finetune.json holding null',
    make: (dir) => writeFile(path.join(dir, 'finetune.json'), 'null'),
    code: EXIT.runtime,
    message: /finetune\.json is not a finetune model manifest/,
  },
  {
    what: 'head weights missing',
    make: async (dir) => rm(path.join(await headDir(dir), 'weights.bin')),
    code: EXIT.runtime,
    message: /head-[^/]+\/weights\.bin is missing: .*re-train it/,
  },
  {
    what: 'head weights truncated',
    make: async (dir) => {
      const file = path.join(await headDir(dir), 'weights.bin');
      await truncate(file, (await readFile(file)).length >> 1);
    },
    code: EXIT.runtime,
    message: /model\.json: weight shards hold \d+ bytes but the manifest needs \d+; .*truncated.*re-train it/,
  },
  {
    what: 'formatVersion 99',
    make: (dir) => editJson(path.join(dir, 'finetune.json'), (m) => (m.formatVersion = 99)),
    code: EXIT.runtime,
    message: /format version 99, newer than this finetune reads \(1\): upgrade finetune/,
  },
  {
    what: 'head weight path ../x.bin (outside its folder)',
    make: async (dir) => {
      const head = await headDir(dir);
      // The file is really there: only the path check can stop it being read.
      await cp(path.join(head, 'weights.bin'), path.join(dir, 'x.bin'));
      await editJson(path.join(head, 'model.json'), (m) => (m.weightsManifest[0].paths = ['../x.bin']));
    },
    code: EXIT.runtime,
    message: /weight path "\.\.\/x\.bin" points outside its folder; refusing to read it/,
  },
  {
    what: 'head ../elsewhere/model.json (outside the bundle)',
    make: async (dir) => {
      await cp(await headDir(dir), path.join(path.dirname(dir), 'elsewhere'), { recursive: true });
      await editJson(path.join(dir, 'finetune.json'), (m) => (m.head = '../elsewhere/model.json'));
    },
    code: EXIT.runtime,
    message: /head path "\.\.\/elsewhere\/model\.json" points outside the model folder; refusing to read it/,
  },
  {
    what: 'backbone checksum differs from training',
    make: (dir) => editJson(path.join(dir, 'finetune.json'), (m) => (m.backbones[0].checksum = 'f'.repeat(64))),
    code: EXIT.runtime,
    message: /backbone weights .* differ from those .* was trained with \(ffffffffffff…\): use the same weights, or re-train/,
    afterProgress: true,
  },
  {
    what: '--model folder missing',
    make: async (dir) => {
      await rm(dir, { recursive: true });
    },
    code: EXIT.usage,
    message: /--model .* does not exist: train one with `finetune train DATA --out /,
  },
  {
    what: '--model is a file',
    make: async (dir) => {
      await rm(dir, { recursive: true });
      await writeFile(dir, '{}');
    },
    code: EXIT.usage,
    message: /--model .* is a file; give the model folder/,
  },
];

const results = new Map<string, CliResult>();
let healthy: CliResult;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'finetune-bundle-errors-'));
  const data = path.join(root, 'data');
  await buildGoodData(data, 2);
  image = path.join(data, 'valid/a/a-0.jpg');
  const backbone = await writeTinyBackbone(path.join(root, 'backbone'));
  const result = await train(data, { backbone, layer: TINY_LAYER, engine: 'tfjs', epochs: 1, hidden: 8, cacheDir: false });
  bundle = path.join(root, 'good-model');
  await saveModel(bundle, result, { remember: false });
  result.head.dispose();

  const models = await Promise.all(
    CASES.map(async (c, i) => {
      // Each copy in a folder of its own, so "../elsewhere" lands beside that copy only.
      const dir = path.join(root, `case-${i}`, 'model');
      await cp(bundle, dir, { recursive: true });
      return (await c.make(dir)) ?? dir;
    }),
  );
  // Three at a time: each run is a Node process loading tfjs, on a machine of two cores.
  const queue = [...CASES.keys()];
  const worker = async () => {
    for (let i = queue.shift(); i !== undefined; i = queue.shift()) results.set(CASES[i].what, await predictWith(models[i]));
  };
  const [h] = await Promise.all([predictWith(bundle), worker(), worker(), worker()]);
  healthy = h;
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('predict --model on a broken bundle', () => {
  test('the unbroken bundle predicts (so each failure below is the damage, not the setup)', () => {
    assert.equal(healthy.code, EXIT.ok, healthy.stderr);
    assert.match(healthy.stdout, /\t[ab]\t[01]\.\d{4}\n$/);
  });

  test('the bundle holds what the cases break', async () => {
    assert.deepEqual((await readdir(await headDir(bundle))).sort(), ['model.json', 'weights.bin']);
  });

  for (const c of CASES) {
    test(`${c.what}: exit ${c.code}, one line saying what is wrong and what to do`, () => {
      const r = results.get(c.what)!;
      assert.equal(r.code, c.code, r.stderr);
      assert.equal(r.stdout, '', 'nothing on stdout');
      const lines = r.stderr.trimEnd().split('\n');
      const last = lines[lines.length - 1];
      assert.match(last, /^finetune: error: /);
      assert.match(last, c.message);
      assert.equal(lines.filter((l) => /^finetune: error:/.test(l)).length, 1, `one error line:\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
      if (!c.afterProgress) assert.equal(lines.length, 1, `nothing but the error:\n${r.stderr}`);
    });
  }
});
