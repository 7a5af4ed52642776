/**
 * Ctrl-C while `finetune train` works: the process stops promptly with exit 130 and one line
 * saying so, the model already at --out is untouched, and the features computed before the
 * signal are kept in the cache (a re-run serves them as hits).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadModel, predict, type Prediction } from '../src/index.ts';
import {
  cliEnv,
  indexedRecords,
  makeTwoClassImages,
  pollUntil,
  readCache,
  runFinetune,
  sha256File,
  show,
  snapshotFolder,
  startFinetune,
  trainArgs,
  writeConvBackbone,
  type CliEnv,
} from './fixtures/interrupt-fixture.ts';

const INTERRUPT_DEADLINE_MS = 2000;

let tmp: string;
let env: CliEnv;
let data: string;
let probeImages: string[];
let allImages: string[];
/** 160² input and 16 filters: ~1–2 s of extraction on 2 cores, the window to interrupt. */
let backbone: string;
let out: string;
let before0: Map<string, string>;
let predictionsBefore: Prediction[];

async function predictOut(): Promise<Prediction[]> {
  const model = await loadModel(out);
  try {
    return await predict(model, probeImages, { engine: 'tfjs', cacheDir: false });
  } finally {
    model.head.dispose();
  }
}

function assertSamePredictions(actual: Prediction[], expected: Prediction[]): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((p, i) => {
    const e = expected[i];
    assert.ok('label' in p && 'label' in e, `both predicted ${p.path}`);
    assert.equal(p.label, e.label, p.path);
    for (const [name, v] of Object.entries(e.probabilities)) assert.ok(Math.abs(p.probabilities[name] - v) < 1e-6, `${p.path} ${name}: ${p.probabilities[name]} vs ${v}`);
  });
}

async function assertPreviousModelIntact(): Promise<void> {
  assert.deepEqual(await snapshotFolder(out), before0, 'every file of the previous bundle is unchanged, nothing added');
  assertSamePredictions(await predictOut(), predictionsBefore);
}

function interruptedLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => /\binterrupted\b/i.test(l));
}

/** One Ctrl-C: the run exits 130 within the deadline and says so in one line. */
async function interruptOnce(run: ReturnType<typeof startFinetune>) {
  const sent = performance.now();
  run.child.kill('SIGINT');
  const { code, at } = await run.exited;
  const ms = at - sent;
  const r = { code, stdout: run.stdout(), stderr: run.stderr() };
  assert.equal(code, 130, show(r));
  assert.ok(ms < INTERRUPT_DEADLINE_MS, `exited ${ms.toFixed(0)} ms after SIGINT`);
  assert.equal(interruptedLines(r.stderr).length, 1, `one line says it was interrupted\n${r.stderr}`);
  return { r, ms };
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-ctrl-c-'));
  env = cliEnv(tmp);
  data = path.join(tmp, 'data');
  const files = await makeTwoClassImages(data, 40, 21);
  allImages = files;
  probeImages = [files[0], files[1], files[40], files[41]];
  backbone = await writeConvBackbone(path.join(tmp, 'backbone'), { inputSize: 160, filters: 16 });
  // The previous model: fewer images, another seed and its own cache, so the runs below
  // extract from scratch and would write a different bundle.
  const small = path.join(tmp, 'small');
  await makeTwoClassImages(small, 6, 22);
  out = path.join(tmp, 'model');
  const first = await runFinetune(cliEnv(tmp, path.join(tmp, 'cache-first')), trainArgs(small, backbone, out, '--engine', 'tfjs', '--seed', '1', '--json'));
  assert.equal(first.code, 0, show(first));
  before0 = await snapshotFolder(out);
  predictionsBefore = await predictOut();
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('SIGINT during feature extraction', () => {
  const cache = () => path.join(tmp, 'cache');
  const args = (engine: string) => trainArgs(data, backbone, out, '--engine', engine, '--extract-batch-size', '4');
  /** Features durable in the cache when the last signal went. */
  let stored = 0;

  for (const engine of ['tfjs', 'onnx'] as const) {
    test(`--engine ${engine}: exit 130 within 2 s, one line, previous model intact`, { timeout: 60_000 }, async (t) => {
      const run = startFinetune(cliEnv(tmp, cache()), args(engine));
      // Interrupt once a few more batches are durable in the cache, while most are still to come.
      const target = stored + 8;
      await pollUntil(async () => (await indexedRecords(cache())) >= target, 30_000);
      stored = await indexedRecords(cache());
      const { r, ms } = await interruptOnce(run);
      assert.ok(!/\n\s+at /.test(r.stderr), `no stack trace\n${r.stderr}`);
      assert.ok(stored < 80, `interrupted mid-way (${stored} of 80 stored when the signal went)`);
      await assertPreviousModelIntact();
      t.diagnostic(`${engine}: exit 130 ${ms.toFixed(0)} ms after SIGINT; ${stored}/80 features in the cache at the signal`);
    });
  }

  test('the cache reads back, and a re-run serves the features computed before the interrupts as hits', { timeout: 60_000 }, async (t) => {
    const hashes = await Promise.all(allImages.map(sha256File));
    const { specs } = await readCache(cache(), hashes);
    assert.equal(specs.length, 1, 'one feature spec in the cache');
    assert.ok(specs[0].vectors.size >= stored, `${specs[0].vectors.size} vectors readable, ≥ ${stored} stored before the signals`);
    assert.equal(specs[0].corrupt, 0, 'no corrupt record after SIGINT (the process shut down cleanly)');
    const again = await runFinetune(cliEnv(tmp, cache()), [...args('onnx'), '--json']);
    assert.equal(again.code, 0, show(again));
    const result = JSON.parse(again.stdout) as { cache: { hits: number; misses: number } };
    assert.ok(result.cache.hits >= stored, `re-run hits ${result.cache.hits} ≥ ${stored} features stored before the interrupts`);
    assert.equal(result.cache.hits + result.cache.misses, 80);
    t.diagnostic(`re-run: ${result.cache.hits} hits, ${result.cache.misses} misses`);
    // The re-run replaced the model: the tests below start from it.
    before0 = await snapshotFolder(out);
    predictionsBefore = await predictOut();
  });
});

describe('SIGINT during head training', () => {
  test('exit 130 within 2 s, one line, previous model intact', { timeout: 60_000 }, async (t) => {
    // Features are all cached by now (the re-run above): the run goes straight to a long training.
    const run = startFinetune(cliEnv(tmp, path.join(tmp, 'cache')), trainArgs(data, backbone, out, '--engine', 'tfjs', '--epochs', '5000', '--patience', '5000', '--seed', '9'));
    await run.waitFor(/^train (head \d+\/\d+ · )?epoch 20\/\d+/m, 30_000);
    const { r, ms } = await interruptOnce(run);
    const epochs = (r.stderr.match(/^train (head \d+\/\d+ · )?epoch \d+\/\d+/gm) ?? []).length;
    assert.ok(epochs < 5000, 'stopped before the last epoch');
    await assertPreviousModelIntact();
    t.diagnostic(`training: exit 130 ${ms.toFixed(0)} ms after SIGINT, in epoch ${epochs + 1}`);
  });

  test('SIGINT twice in a row (the second quits at once): exit 130, previous model intact', { timeout: 60_000 }, async () => {
    const run = startFinetune(cliEnv(tmp, path.join(tmp, 'cache')), trainArgs(data, backbone, out, '--engine', 'tfjs', '--epochs', '5000', '--patience', '5000', '--seed', '9'));
    await run.waitFor(/^train (head \d+\/\d+ · )?epoch 5\/\d+/m, 30_000);
    run.child.kill('SIGINT');
    run.child.kill('SIGINT');
    const { code } = await run.exited;
    assert.equal(code, 130, show({ code, stdout: run.stdout(), stderr: run.stderr() }));
    await assertPreviousModelIntact();
  });
});

describe('SIGINT while a long backbone batch runs', () => {
  test(
    'exit 130 within 2 s even when one batch takes several seconds (both engines)',
    {
      timeout: 90_000,
    },
    async (t) => {
      // 224², 64 filters, one batch of all 80 images: seconds of backbone work for two runs on 2 cores.
      const heavy = await writeConvBackbone(path.join(tmp, 'heavy-backbone'), { inputSize: 224, filters: 64 });
      const timings = await Promise.all(
        (['tfjs', 'onnx'] as const).map(async (engine) => {
          const run = startFinetune(env, trainArgs(data, heavy, path.join(tmp, `heavy-${engine}`), '--engine', engine, '--extract-batch-size', '80', '--no-cache'));
          await run.waitFor(/^extracting features/m, 30_000);
          // Past decoding (80 images), into the one batch.
          await new Promise((r) => setTimeout(r, 1000));
          const sent = performance.now();
          run.child.kill('SIGINT');
          const { code, at } = await run.exited;
          assert.equal(code, 130, show({ code, stdout: run.stdout(), stderr: run.stderr() }));
          return { engine, ms: at - sent };
        }),
      );
      t.diagnostic(timings.map((x) => `${x.engine}: exit ${x.ms.toFixed(0)} ms after SIGINT`).join('; '));
      for (const { engine, ms } of timings) assert.ok(ms < INTERRUPT_DEADLINE_MS, `--engine ${engine}: exited ${ms.toFixed(0)} ms after SIGINT`);
    },
  );
});
