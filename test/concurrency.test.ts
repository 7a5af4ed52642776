/**
 * Several `finetune train` processes at once: sharing one feature cache they all succeed with
 * correct results (and leave a cache a later run fully hits); writing the same --out, the
 * bundle left there is exactly one writer's, never a mix.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadModel, predict, type Prediction } from '../src/index.ts';
import { cliEnv, makeTwoClassImages, runFinetune, show, snapshotFolder, trainArgs, writeConvBackbone, type Finished } from './fixtures/interrupt-fixture.ts';

let tmp: string;
let data: string;
let backbone: string;
/** 128² input, 16 filters: extraction lasts long enough (≈ 1–2 s) for two runs' to overlap. */
let slowBackbone: string;
let probe: string[];
let cache: string;

interface TrainJson {
  model: string;
  classes: string[];
  counts: { train: number; valid: number; skipped: number };
  metrics: { valAccuracy: number | null };
  cache: { hits: number; misses: number };
}

const parse = (r: Finished): TrainJson => {
  assert.equal(r.code, 0, show(r));
  return JSON.parse(r.stdout) as TrainJson;
};

async function predictAt(dir: string): Promise<Prediction[]> {
  const model = await loadModel(dir);
  try {
    return await predict(model, probe, { cacheDir: false });
  } finally {
    model.head.dispose();
  }
}

const labels = (ps: Prediction[]) => ps.map((p) => ('label' in p ? p.label : `error: ${p.error}`));

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-concurrency-'));
  data = path.join(tmp, 'data');
  const files = await makeTwoClassImages(data, 40, 41);
  probe = [files[0], files[1], files[40], files[41]];
  backbone = await writeConvBackbone(path.join(tmp, 'backbone'), { inputSize: 32, filters: 8 });
  slowBackbone = await writeConvBackbone(path.join(tmp, 'slow-backbone'), { inputSize: 128, filters: 16 });
  cache = path.join(tmp, 'cache');
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('two trains sharing one cache folder, started together: both succeed, a third run is all hits', { timeout: 90_000 }, async (t) => {
  const env = cliEnv(tmp, cache);
  const [a, b] = await Promise.all([
    runFinetune(env, [...trainArgs(data, slowBackbone, path.join(tmp, 'a'), '--extract-batch-size', '4'), '--json']),
    runFinetune(env, [...trainArgs(data, slowBackbone, path.join(tmp, 'b'), '--extract-batch-size', '4'), '--json']),
  ]);
  const expected = probe.map((file) => path.basename(path.dirname(file)));
  for (const [name, r] of [['a', a], ['b', b]] as const) {
    const result = parse(r);
    assert.deepEqual(result.classes, ['circle', 'stripes'], name);
    assert.deepEqual(result.counts, { train: 64, valid: 16, skipped: 0 }, name);
    assert.ok((result.metrics.valAccuracy ?? 0) >= 0.9, `${name}: validation accuracy ${result.metrics.valAccuracy}`);
    assert.equal(result.cache.hits + result.cache.misses, 80, name);
    assert.deepEqual(labels(await predictAt(path.join(tmp, name))), expected, `${name} classifies held-in images right`);
  }
  const third = parse(await runFinetune(env, [...trainArgs(data, slowBackbone, path.join(tmp, 'c')), '--json']));
  assert.deepEqual(third.cache, { hits: 80, misses: 0 }, 'every feature was stored by one of the two');
  // Hits below 80 in both runs mean their extractions overlapped (under heavy load one may start late).
  t.diagnostic(`together: ${a.seconds.toFixed(1)} s and ${b.seconds.toFixed(1)} s (${parse(a).cache.hits} and ${parse(b).cache.hits} hits); third run ${third.cache.hits} hits`);
});

test('two trains writing the same --out at once: the bundle is exactly one of the two', { timeout: 90_000 }, async (t) => {
  // Two different heads (linear, seed 1 / hidden 16, seed 2), each also trained alone for reference.
  const variants = [
    ['--hidden', '0', '--seed', '1'],
    ['--hidden', '16', '--seed', '2'],
  ];
  const env = cliEnv(tmp, cache);
  const references = await Promise.all(
    variants.map(async (flags, i) => {
      const dir = path.join(tmp, `alone-${i}`);
      parse(await runFinetune(env, [...trainArgs(data, backbone, dir), ...flags, '--json']));
      const manifest = JSON.parse(await readFile(path.join(dir, 'finetune.json'), 'utf8'));
      const head = await snapshotFolder(path.join(dir, path.dirname(manifest.head)));
      return { manifest, head, predictions: await predictAt(dir) };
    }),
  );
  // The save windows overlap by chance; whichever way they fall, each writer renames in a
  // manifest that names its own complete head. More rounds = more chances (≈ 4 s each).
  const ROUNDS = 1;
  for (let round = 0; round < ROUNDS; round++) {
    const out = path.join(tmp, `shared-${round}`);
    const runs = await Promise.all(variants.map((flags) => runFinetune(env, [...trainArgs(data, backbone, out), ...flags, '--json'])));
    runs.forEach(parse);
    const manifest = JSON.parse(await readFile(path.join(out, 'finetune.json'), 'utf8'));
    const which = references.findIndex((r) => r.manifest.training.seed === manifest.training.seed);
    assert.ok(which >= 0, `finetune.json is one of the two runs' (seed ${manifest.training.seed})`);
    const ref = references[which];
    assert.equal(manifest.training.hidden, ref.manifest.training.hidden, 'manifest fields all from one run');
    assert.deepEqual(manifest.classes, ref.manifest.classes);
    assert.equal(manifest.featureSize, ref.manifest.featureSize);
    const headDir = path.join(out, path.dirname(manifest.head));
    assert.deepEqual(await snapshotFolder(headDir), ref.head, 'the head folder it names is that run’s head, byte for byte');
    const headJson = JSON.parse(await readFile(path.join(headDir, 'model.json'), 'utf8'));
    const layers = headJson.modelTopology.config.layers as { config: { batch_input_shape?: number[]; units?: number } }[];
    assert.equal(layers[0].config.batch_input_shape?.[1], manifest.featureSize, 'head input = manifest featureSize');
    assert.equal(layers[layers.length - 1].config.units, manifest.classes.length, 'head outputs = manifest classes');
    const predictions = await predictAt(out);
    assert.deepEqual(predictions, ref.predictions, 'predicts exactly as that run alone');
    t.diagnostic(`round ${round}: bundle of run ${which}; --out holds ${(await readdir(out)).join(', ')}`);
  }
});
