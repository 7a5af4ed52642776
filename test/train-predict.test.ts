import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { loadModel, predict, saveModel, train, type FinetuneModel, type Prediction, type ProgressEvent, type TrainOptions, type TrainResult } from '../src/index.ts';
import { makeHeldOutImages, makeImageDataset, writeClassImage, type HeldOutImage, type ImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone, type TinyBackboneFiles } from './fixtures/tiny-backbone.ts';

let tmp: string;
let data: ImageDataset;
let heldOut: HeldOutImage[];
let tiny: TinyBackboneFiles;
let options: TrainOptions;
const savedHome = process.env.FINETUNE_HOME;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-train-'));
  process.env.FINETUNE_HOME = path.join(tmp, 'home');
  data = await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 3, perClass: 24, validPerClass: 8, size: 64, seed: 1 });
  heldOut = await makeHeldOutImages(path.join(tmp, 'held-out'), { classes: 3, count: 8, seed: 2 });
  tiny = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 5 });
  options = { backbone: tiny.folder, layer: 'block2_pool', engine: 'tfjs', backend: 'cpu', cacheDir: false, epochs: 20, lr: 0.01, patience: 5, seed: 42 };
});
after(async () => {
  if (savedHome === undefined) delete process.env.FINETUNE_HOME;
  else process.env.FINETUNE_HOME = savedHome;
  await rm(tmp, { recursive: true, force: true });
});

/** A trained result as predict takes it, without writing it anywhere. */
function inMemoryModel(result: TrainResult): FinetuneModel {
  return { dir: '(not saved)', manifest: { ...result.manifest, head: 'model.json' }, head: result.head, classes: result.classes };
}

function accuracyOn(predictions: Prediction[]): number {
  const correct = predictions.filter((p, i) => 'label' in p && p.label === heldOut[i].className).length;
  return correct / heldOut.length;
}

const predictOptions = { engine: 'tfjs', backend: 'cpu', cacheDir: false } as const;

describe('train and predict with the library', () => {
  let first: TrainResult;

  test('a synthetic 3-class set: validation accuracy ≥ 95%, counts and classes as on disk, progress reported', async () => {
    const events: ProgressEvent[] = [];
    first = await train(data.root, { ...options, onProgress: (e) => events.push(e) });
    assert.deepEqual(first.classes, ['checker', 'circle', 'stripes']);
    assert.deepEqual(first.counts, { train: 72, valid: 24, skipped: 0 });
    assert.ok(first.manifest.metrics.valAccuracy! >= 0.95, `val accuracy ${first.manifest.metrics.valAccuracy}`);
    assert.ok(first.history.length >= 5 && first.history.length <= 5 * 20, 'five heads of at most 20 epochs (the default ensemble)');
    assert.equal(first.engine, 'tfjs');
    assert.equal(first.backend, 'cpu');
    assert.deepEqual(first.skipped, []);
    assert.ok(first.timing.featuresSeconds > 0 && first.timing.imagesPerSecond > 0);
    const trainEpochs = events.filter((e) => e.status === 'progress' && e.task === 'train');
    assert.equal(trainEpochs.length, first.history.length, 'one progress event per epoch');
    assert.ok(events.some((e) => e.status === 'initiate' && e.task === 'dataset'));
  });

  test('held-out images are classified ≥ 95% correctly', async () => {
    const predictions = await predict(inMemoryModel(first), heldOut.map((h) => h.path), predictOptions);
    assert.equal(predictions.length, heldOut.length);
    for (const p of predictions) {
      assert.ok('label' in p, JSON.stringify(p));
      const sum = Object.values(p.probabilities).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-4, 'probabilities sum to 1');
      assert.equal(p.probability, Math.max(...Object.values(p.probabilities)));
    }
    assert.ok(accuracyOn(predictions) >= 0.95, `held-out accuracy ${accuracyOn(predictions)}`);
  });

  test('the same seed gives the same training; another seed another one', async () => {
    const again = await train(data.root, options);
    assert.deepEqual(again.history, first.history);
    assert.deepEqual(again.manifest.metrics, first.manifest.metrics);
    assert.deepEqual(again.head.getWeights().map((w) => [...w.dataSync()]), first.head.getWeights().map((w) => [...w.dataSync()]));
    again.head.dispose();
    const other = await train(data.root, { ...options, seed: 7 });
    assert.notDeepEqual(other.history, first.history);
    other.head.dispose();
  });

  test('with a seeded split (folders layout) too: same seed, same run; another seed, another run', async () => {
    const root = path.join(tmp, 'folders');
    await makeImageDataset(root, { layout: 'folders', classes: 2, perClass: 12, size: 32, seed: 3 });
    const run = async (seed: number) => {
      const result = await train(root, { ...options, seed, epochs: 2 });
      result.head.dispose();
      return result;
    };
    const a = await run(1);
    const b = await run(1);
    const c = await run(2);
    assert.deepEqual(a.history, b.history);
    assert.equal(a.counts.valid, 4, '20% of 12 per class, rounded: 2 per class');
    assert.notDeepEqual(c.history, a.history);
  });

  test('with a feature cache, re-training reads every feature from it and learns the same head', async () => {
    const cacheDir = path.join(tmp, 'feature-cache');
    const cold = await train(data.root, { ...options, cacheDir });
    const warm = await train(data.root, { ...options, cacheDir });
    try {
      assert.deepEqual(cold.cache, { hits: 0, misses: 96 });
      assert.deepEqual(warm.cache, { hits: 96, misses: 0 });
      assert.deepEqual(warm.history, cold.history);
      assert.deepEqual(cold.history, first.history, 'cached or not, the same features');
    } finally {
      cold.head.dispose();
      warm.head.dispose();
    }
  });

  test('hidden: 0 trains a linear head', async () => {
    const linear = await train(data.root, { ...options, hidden: 0 });
    try {
      assert.equal(linear.head.layers.length, 1);
      assert.equal(linear.head.layers[0].getClassName(), 'Dense');
      assert.equal(linear.manifest.training.hidden, 0);
      assert.ok(linear.manifest.metrics.valAccuracy! > 0.6, `linear head val accuracy ${linear.manifest.metrics.valAccuracy}`);
      const predictions = await predict(inMemoryModel(linear), heldOut.map((h) => h.path), predictOptions);
      assert.ok(predictions.every((p) => 'label' in p));
    } finally {
      linear.head.dispose();
    }
  });

  test('ensemble: 3 heads merged into one head of 3 × hidden units; each head is reported, predictions stay sound, no tensor left behind', async () => {
    const before = tf.memory().numTensors;
    const events: ProgressEvent[] = [];
    const merged = await train(data.root, { ...options, hidden: 16, ensemble: 3, onProgress: (e) => events.push(e) });
    try {
      assert.equal(tf.memory().numTensors, before + merged.head.weights.length);
      assert.deepEqual(merged.head.layers.map((l) => l.outputShape), [[null, 48], [null, 48], [null, 3]]);
      assert.equal(merged.manifest.training.ensemble, 3);
      assert.equal(merged.manifest.metrics.bestEpochs?.length, 3);
      assert.deepEqual([...new Set(merged.history.map((r) => r.member))], [1, 2, 3]);
      assert.ok(merged.manifest.metrics.valAccuracy! >= 0.95, `ensemble val accuracy ${merged.manifest.metrics.valAccuracy}`);
      const epochs = events.filter((e) => e.status === 'progress' && e.task === 'train');
      assert.equal(epochs.length, merged.history.length, 'one progress event per epoch of every head');
      const predictions = await predict(inMemoryModel(merged), heldOut.map((h) => h.path), predictOptions);
      assert.ok(accuracyOn(predictions) >= 0.95, `held-out accuracy ${accuracyOn(predictions)}`);
    } finally {
      merged.head.dispose();
    }
    await assert.rejects(train(data.root, { ...options, ensemble: 0 }), /--ensemble 0: must be a whole number from 1 to 20/);
  });

  test('pooling avgmax: average and maximum side by side, twice the channels, recorded per backbone', async () => {
    const avg = await train(data.root, { ...options, pooling: 'avg', epochs: 1 });
    const both = await train(data.root, { ...options, pooling: 'avgmax' });
    try {
      assert.equal(both.manifest.featureSize, 2 * avg.manifest.featureSize);
      assert.equal(both.manifest.backbones[0].pooling, 'avgmax');
      assert.ok(both.manifest.metrics.valAccuracy! >= 0.95, `avgmax val accuracy ${both.manifest.metrics.valAccuracy}`);
      const predictions = await predict(inMemoryModel(both), heldOut.map((h) => h.path), predictOptions);
      assert.ok(accuracyOn(predictions) >= 0.95, `held-out accuracy ${accuracyOn(predictions)}`);
    } finally {
      avg.head.dispose();
      both.head.dispose();
    }
  });

  test('one backbone fused with itself at two input sizes (multi-scale): both parts recorded, the saved model predicts as trained', async () => {
    // The tiny backbone ends in Flatten → Dense: at another size that top is left out, and asking for it says why.
    await assert.rejects(train(data.root, { ...options, layer: 'fc1', inputSize: [48, 48] }), (err: Error) => err.name === 'UsageError' && /--layer fc1: .* at --input-size 48x48 its layers from the Flatten on are left out/.test(err.message));
    const ownSize = await train(data.root, { ...options, layer: 'fc1', inputSize: [32, 32], epochs: 1, ensemble: 1 });
    assert.equal(ownSize.manifest.backbones[0].layer, 'fc1', 'at its own size the whole network stays');
    ownSize.head.dispose();
    const result = await train(data.root, { ...options, backbone: [tiny.folder, tiny.folder], inputSize: [[32, 32], [48, 48]], ensemble: 2 });
    try {
      const parts = result.manifest.backbones;
      assert.deepEqual(parts.map((p) => p.inputSize), [[32, 32], [48, 48]]);
      assert.deepEqual(parts.map((p) => p.featureSize), [32, 32]);
      assert.equal(result.manifest.featureSize, 64, 'the two parts side by side');
      assert.ok(result.manifest.metrics.valAccuracy! >= 0.95, `multi-scale val accuracy ${result.manifest.metrics.valAccuracy}`);
      const paths = heldOut.map((h) => h.path);
      const inMemory = await predict(inMemoryModel(result), paths, { ...predictOptions, tta: true });
      assert.ok(accuracyOn(inMemory) >= 0.95, `held-out accuracy ${accuracyOn(inMemory)}`);
      const dir = path.join(tmp, 'models', 'multi-scale');
      await saveModel(dir, result, { remember: false });
      const loaded = await loadModel(dir, { backend: 'cpu' });
      try {
        const reloaded = await predict(loaded, paths, { ...predictOptions, tta: true });
        reloaded.forEach((p, i) => {
          const q = inMemory[i];
          assert.ok('label' in p && 'label' in q);
          for (const c of result.classes) assert.ok(Math.abs(p.probabilities[c] - q.probabilities[c]) <= 1e-6, `${p.path} ${c}`);
        });
      } finally {
        loaded.head.dispose();
      }
    } finally {
      result.head.dispose();
    }
  });

  test('a corrupt image and a text file are skipped with their paths; training still finishes', async () => {
    const root = path.join(tmp, 'with-broken');
    const ds = await makeImageDataset(root, { layout: 'fastai', classes: 2, perClass: 10, validPerClass: 4, size: 32, seed: 4 });
    const good = await readFile(ds.train.circle[0]);
    const broken = path.join(root, 'train', 'circle', 'broken.jpg');
    await writeFile(broken, good.subarray(0, Math.floor((good.length * 2) / 3)));
    const notes = path.join(root, 'valid', 'stripes', 'notes.txt');
    await writeFile(notes, 'not an image');
    const result = await train(root, { ...options, epochs: 3 });
    try {
      assert.deepEqual(result.skipped.map((s) => s.path).sort(), [broken, notes].sort());
      assert.match(result.skipped.find((s) => s.path === broken)!.reason, /corrupt|truncated|decode/);
      assert.deepEqual(result.counts, { train: 20, valid: 8, skipped: 2 });
      assert.ok(result.history.length >= 1);
    } finally {
      result.head.dispose();
    }
  });

  test('saveModel → loadModel → predict gives the same probabilities; finetune.json says how the model was made', async () => {
    const paths = heldOut.map((h) => h.path);
    const before = await predict(inMemoryModel(first), paths, predictOptions);
    const dir = path.join(tmp, 'models', 'shapes');
    await saveModel(dir, first);

    const loaded = await loadModel(dir, { backend: 'cpu' });
    const after = await predict(loaded, paths, predictOptions);
    assert.equal(after.length, before.length);
    after.forEach((p, i) => {
      const q = before[i];
      assert.ok('label' in p && 'label' in q);
      assert.equal(p.path, q.path);
      assert.equal(p.label, q.label);
      for (const c of first.classes) assert.ok(Math.abs(p.probabilities[c] - q.probabilities[c]) <= 1e-6, `${p.path} ${c}`);
    });

    const manifest = JSON.parse(await readFile(path.join(dir, 'finetune.json'), 'utf8'));
    assert.deepEqual(manifest.classes, ['checker', 'circle', 'stripes']);
    assert.equal(manifest.backbones[0].id, path.resolve(tiny.folder));
    assert.match(manifest.backbones[0].checksum, /^[0-9a-f]{64}$/);
    assert.equal(manifest.backbones[0].layer, 'block2_pool');
    assert.equal(manifest.backbones[0].pooling, 'avgmax', 'the default pooling');
    assert.equal(manifest.backbones[0].preprocess, 'unit');
    assert.deepEqual(manifest.backbones[0].inputSize, [32, 32]);
    assert.equal(manifest.backbones[0].featureSize, 32, '16 channels, averaged and maximised');
    assert.equal(manifest.training.ensemble, 5, 'five merged heads by default');
    for (const key of ['hidden', 'dropout', 'lr', 'epochs', 'batchSize', 'patience', 'layout', 'valSplit']) assert.ok(key in manifest.training, `training.${key}`);
    assert.equal(manifest.training.seed, 42);
    assert.equal(manifest.training.lr, 0.01);
    assert.equal(manifest.training.epochs, 20);
    assert.equal(manifest.metrics.valAccuracy, first.manifest.metrics.valAccuracy);
    assert.deepEqual(manifest.history, first.history);
    assert.ok(manifest.versions.finetune && manifest.versions.tfjs, JSON.stringify(manifest.versions));
    assert.deepEqual(manifest.counts, { train: 72, valid: 24, skipped: 0 });

    const last = await loadModel(undefined, { backend: 'cpu' });
    assert.equal(path.resolve(last.dir), path.resolve(dir), 'loadModel() with no folder opens the model saved last');
    last.head.dispose();
    loaded.head.dispose();
  });

  test('predict frees its tensors: three calls after a warm-up leave tf.memory() as it was', async () => {
    const model = inMemoryModel(first);
    const paths = heldOut.slice(0, 4).map((h) => h.path);
    await predict(model, paths, predictOptions);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await predict(model, paths, predictOptions);
    assert.equal(tf.memory().numTensors, before);
  });

  test('train frees its tensors: only the returned head remains, and disposing it restores the count', async () => {
    const before = tf.memory().numTensors;
    const result = await train(data.root, { ...options, epochs: 3 });
    assert.equal(tf.memory().numTensors, before + result.head.weights.length);
    result.head.dispose();
    assert.equal(tf.memory().numTensors, before);
    first.head.dispose();
  });

  test('predict reports a missing file and an unreadable image per file, not as a failure', async () => {
    const model = await loadModel(path.join(tmp, 'models', 'shapes'), { backend: 'cpu' });
    const missing = path.join(tmp, 'nope.jpg');
    const broken = path.join(tmp, 'broken.png');
    await writeFile(broken, 'not a png');
    const ok = await writeClassImage(path.join(tmp, 'one.jpg'), 1, { seed: 77 });
    const results = await predict(model, [ok, missing, broken], predictOptions);
    model.head.dispose();
    const byPath = new Map(results.map((r) => [r.path, r]));
    assert.equal(results.length, 3);
    assert.ok('label' in byPath.get(ok)!);
    assert.match((byPath.get(missing) as { error: string }).error, /not found/);
    assert.match((byPath.get(broken) as { error: string }).error, /corrupt|decode|format/);
  });
});
