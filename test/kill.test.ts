/**
 * `finetune train` killed with SIGKILL at 20 seeded random moments, from start-up to after the
 * bundle save (several aimed at the save itself), with a model already at --out. After every
 * kill the model at --out is whole: the previous one, unchanged, or — when the kill came after
 * the new finetune.json was renamed in — the new one; and the feature cache serves only
 * correct vectors.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadModel, predict, type Prediction } from '../src/index.ts';
import { seededRandom } from './fixtures/images.ts';
import {
  cliEnv,
  makeTwoClassImages,
  maxAbsDiff,
  readCache,
  runFinetune,
  sha256File,
  show,
  startFinetune,
  trainArgs,
  writeConvBackbone,
  type Running,
} from './fixtures/interrupt-fixture.ts';

const KILLS = 20;
const SEED = 20240611;

let tmp: string;
let data: string;
let backbone: string;
let hashes: string[];
let probe: string[];
/** A bundle trained before (seed 1), copied to --out before each kill. */
let pristine: string;
let pristineManifest: string;
let previousPredictions: Prediction[];
let newPredictions: Prediction[];
let referenceFeatures: Map<string, Float32Array>;
/** From an undisturbed run: ms after spawn of the start and end of extraction, of the end of training, of exit. */
let timing: { extract: number; extracted: number; trained: number; exit: number };

// Batches of 2: many small cache appends, so kills land between and inside them.
const args = (out: string) => trainArgs(data, backbone, out, '--engine', 'onnx', '--extract-batch-size', '2', '--epochs', '20');

async function predictAt(dir: string): Promise<Prediction[]> {
  const model = await loadModel(dir);
  try {
    return await predict(model, probe, { engine: 'onnx', cacheDir: false });
  } finally {
    model.head.dispose();
  }
}

function samePredictions(actual: Prediction[], expected: Prediction[], tolerance: number): boolean {
  return actual.every((p, i) => {
    const e = expected[i];
    if (!('label' in p) || !('label' in e) || p.label !== e.label) return false;
    return Object.entries(e.probabilities).every(([k, v]) => Math.abs(p.probabilities[k] - v) <= tolerance);
  });
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-kill-'));
  data = path.join(tmp, 'data');
  const files = await makeTwoClassImages(data, 24, 31);
  hashes = await Promise.all(files.map(sha256File));
  probe = [files[0], files[1], files[24], files[25]];
  backbone = await writeConvBackbone(path.join(tmp, 'backbone'), { inputSize: 32, filters: 8 });

  pristine = path.join(tmp, 'pristine');
  const first = await runFinetune(cliEnv(tmp, path.join(tmp, 'cache-first')), [...args(pristine), '--seed', '1', '--epochs', '5']);
  assert.equal(first.code, 0, show(first));
  pristineManifest = await readFile(path.join(pristine, 'finetune.json'), 'utf8');
  previousPredictions = await predictAt(pristine);

  // An undisturbed run: the timeline the kills are spread over, the new model, the true features.
  const refCache = path.join(tmp, 'cache-ref');
  const refOut = path.join(tmp, 'reference');
  const t0 = performance.now();
  const ref = startFinetune(cliEnv(tmp, refCache), args(refOut));
  const [extract, extracted, trained, { code, at }] = await Promise.all([
    ref.waitFor(/^extracting features/m),
    ref.waitFor(/^extract: \d+ computed/m),
    ref.waitFor(/^train: best epoch/m),
    ref.exited,
  ]);
  assert.equal(code, 0, show({ code, stdout: ref.stdout(), stderr: ref.stderr() }));
  timing = { extract: extract - t0, extracted: extracted - t0, trained: trained - t0, exit: at - t0 };
  newPredictions = await predictAt(refOut);
  assert.ok(!samePredictions(newPredictions, previousPredictions, 1e-6), 'the old and the new model are told apart by their predictions');
  const { specs } = await readCache(refCache, hashes);
  assert.equal(specs.length, 1);
  assert.equal(specs[0].vectors.size, hashes.length);
  referenceFeatures = specs[0].vectors;
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

type Aim = 'anywhere' | 'extraction' | 'end of training' | 'head folder written';
/** Of every 10 kills: 3 anywhere from start-up to a little past the usual exit, 2 during extraction, 5 aimed at the save. */
const AIMS: Aim[] = ['anywhere', 'anywhere', 'anywhere', 'extraction', 'extraction', 'end of training', 'end of training', 'head folder written', 'head folder written', 'head folder written'];

/** Waits for the moment a kill is aimed at; resolves when it is time to kill. */
async function aim(run: Running, how: Aim, delay: number, out: string): Promise<void> {
  if (how === 'extraction') await run.waitFor(/^extracting features/m).catch(() => undefined);
  if (how === 'end of training') await run.waitFor(/^train: best epoch/m).catch(() => undefined);
  if (how === 'head folder written') {
    // The new head-<id>/ appears just before the manifest is replaced: the heart of the save.
    const started = performance.now();
    while (performance.now() - started < 30_000 && run.child.exitCode === null) {
      const heads = (await readdir(out).catch(() => [] as string[])).filter((n) => n.startsWith('head-'));
      if (heads.length > 1) break;
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  await new Promise((r) => setTimeout(r, delay));
}

test(`SIGKILL at ${KILLS} random moments never leaves a broken model or a wrong cached vector`, { timeout: 150_000 }, async (t) => {
  const rand = seededRandom(SEED);
  const saveWindow = Math.max(20, timing.exit - timing.trained);
  const outcomes: { when: string; model: 'previous' | 'new'; cached: number; corrupt: number }[] = [];
  let leftovers = 0;
  for (let k = 0; k < KILLS; k++) {
    const out = path.join(tmp, 'out');
    await rm(out, { recursive: true, force: true });
    await cp(pristine, out, { recursive: true });
    const cache = path.join(tmp, 'caches', String(k));
    const how = AIMS[k % AIMS.length];
    const window = { anywhere: timing.exit * 1.1, extraction: timing.extracted - timing.extract, 'end of training': saveWindow, 'head folder written': 40 }[how];
    const delay = rand() * window;
    const run = startFinetune(cliEnv(tmp, cache), args(out));
    const t0 = performance.now();
    await aim(run, how, delay, out);
    const killedAt = performance.now() - t0;
    run.child.kill('SIGKILL');
    const { code, signal } = await run.exited;
    const finished = signal === null;
    if (finished) assert.equal(code, 0, show({ code, stdout: run.stdout(), stderr: run.stderr() }));

    // The bundle: whole, and either the old model or the new one.
    const manifest = await readFile(path.join(out, 'finetune.json'), 'utf8');
    const which = manifest === pristineManifest ? 'previous' : 'new';
    if (which === 'new') assert.equal(JSON.parse(manifest).training.seed, 5, `kill ${k}: finetune.json is the new run's`);
    const predictions = await predictAt(out).catch((err: Error) => assert.fail(`kill ${k} (${how}, ${killedAt.toFixed(0)} ms): the model at --out does not load: ${err.message}`));
    if (which === 'previous') assert.ok(samePredictions(predictions, previousPredictions, 1e-6), `kill ${k}: the previous model predicts as before`);
    else assert.ok(samePredictions(predictions, newPredictions, 1e-4), `kill ${k}: the new model predicts as an undisturbed run's`);
    if (finished) assert.equal(which, 'new', `kill ${k}: a run that finished left its model`);
    const names = await readdir(out);
    leftovers += names.filter((n) => n.endsWith('.tmp')).length + names.filter((n) => n.startsWith('head-')).length - 1;

    // The cache: every vector it serves is the true one.
    const { specs } = await readCache(cache, hashes);
    let cached = 0;
    let corrupt = 0;
    for (const spec of specs) {
      for (const [hash, vector] of spec.vectors) {
        const diff = maxAbsDiff(vector, referenceFeatures.get(hash)!);
        assert.ok(diff < 1e-4, `kill ${k}: cached vector ${hash.slice(0, 8)} differs from the true one by ${diff}`);
      }
      cached += spec.vectors.size;
      corrupt += spec.corrupt;
    }
    outcomes.push({ when: `${how} ${killedAt.toFixed(0)} ms${finished ? ' (had exited)' : ''}`, model: which, cached, corrupt });
  }
  const intact = outcomes.length;
  t.diagnostic(`timeline of an undisturbed run: extraction ${timing.extract.toFixed(0)}–${timing.extracted.toFixed(0)} ms, training done ${timing.trained.toFixed(0)} ms, exit ${timing.exit.toFixed(0)} ms`);
  for (const [k, o] of outcomes.entries()) t.diagnostic(`kill ${k}: ${o.when} → ${o.model} model; cache ${o.cached}/${hashes.length} vectors, ${o.corrupt} corrupt dropped`);
  t.diagnostic(`${KILLS} kills, ${intact} intact (${outcomes.filter((o) => o.model === 'new').length} with the new model); ${leftovers} leftover head/tmp files`);
  assert.ok(outcomes.some((o) => o.model === 'previous') && outcomes.some((o) => o.model === 'new'), 'kills landed both before and after the manifest rename');
});

test(
  'after a kill mid-save, the next successful save leaves only the head its finetune.json names',
  {
    timeout: 60_000,
  },
  async () => {
    const out = path.join(tmp, 'out-orphans');
    await cp(pristine, out, { recursive: true });
    const run = startFinetune(cliEnv(tmp, path.join(tmp, 'cache-ref')), args(out));
    await aim(run, 'head folder written', 0, out);
    run.child.kill('SIGKILL');
    await run.exited;
    const orphans = (await readdir(out)).filter((n) => n.startsWith('head-')).length - 1;
    const again = await runFinetune(cliEnv(tmp, path.join(tmp, 'cache-ref')), args(out));
    assert.equal(again.code, 0, show(again));
    const manifest = JSON.parse(await readFile(path.join(out, 'finetune.json'), 'utf8')) as { head: string };
    const names = (await readdir(out)).sort();
    assert.deepEqual(names, ['finetune.json', path.dirname(manifest.head)].sort(), `${orphans} orphan head folder(s) after the kill; --out holds ${names.join(', ')}`);
  },
);
