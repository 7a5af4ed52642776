/**
 * Recipe flags whose effect a user relies on without seeing it: class weights on an imbalanced
 * data set, the temperature's bounds on a perfectly separated validation split, and
 * `--fine-tune-blocks` counting VGG blocks.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { saveModel } from '../src/bundle/save-model.ts';
import { UsageError } from '../src/errors.ts';
import { blockLayerCount } from '../src/head/fine-tune.ts';
import { applyTemperature, fitTemperature, TEMPERATURE_RANGE } from '../src/metrics/index.ts';
import { loadModel, predict } from '../src/pipeline/predict.ts';
import { classWeights, train } from '../src/pipeline/train.ts';
import { makeImageDataset } from './fixtures/images.ts';
import { buildTinyBackbone, writeTinyBackbone } from './fixtures/tiny-backbone.ts';

let tmp: string;
let backbone: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-recipe-'));
  backbone = (await writeTinyBackbone(path.join(tmp, 'backbone'), { inputSize: 16, seed: 5 })).folder;
});
after(() => rm(tmp, { recursive: true, force: true }));

describe('class weights', () => {
  test('balanced is n / (classes × count); auto weighs only a real imbalance (over 1.5×); none never', () => {
    const y = Int32Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
    assert.deepEqual(classWeights(y, 2, 'balanced'), [15 / 24, 15 / 6]);
    assert.deepEqual(classWeights(y, 2, 'auto'), [15 / 24, 15 / 6]);
    assert.equal(classWeights(y, 2, 'none'), undefined);
    const even = Int32Array.from([0, 0, 0, 1, 1]);
    assert.equal(classWeights(even, 2, 'auto'), undefined, '3 vs 2 is not imbalanced');
    assert.deepEqual(classWeights(even, 2, 'balanced'), [5 / 6, 5 / 4]);
  });

  for (const engine of ['tfjs', 'onnx'] as const) {
    test(`train (${engine} head) records the weights and trains with them: the rare class gains probability`, { timeout: 120_000 }, async () => {
      const data = path.join(tmp, `imbalanced-${engine}`);
      await makeImageDataset(data, { layout: 'fastai', classes: 2, perClass: 12, validPerClass: 4, size: 16, format: 'png' });
      // 12 circles, 3 stripes in train/.
      const stripes = path.join(data, 'train', 'stripes');
      for (const f of (await readdir(stripes)).sort().slice(3)) await rm(path.join(stripes, f));
      const recipe = { backbone, engine, hidden: 0, epochs: 3, lr: 3e-3, ensemble: 1, seed: 11, threads: 1, calibrate: false, cacheDir: false as const };
      /** Trains, and returns the manifest's training block and the mean P(stripes) predict gives the stripes images. */
      const run = async (classWeight: 'none' | 'balanced') => {
        const result = await train(data, { ...recipe, classWeight });
        const out = path.join(tmp, `model-${engine}-${classWeight}`);
        await saveModel(out, result, { remember: false });
        result.head.dispose();
        const model = await loadModel(out);
        try {
          const predictions = await predict(model, [stripes, path.join(data, 'valid', 'stripes')], { engine, threads: 1, cacheDir: false });
          const p = predictions.map((r) => ('probabilities' in r ? r.probabilities.stripes : NaN));
          return { training: result.manifest.training, firstLoss: result.history[0].loss, rare: p.reduce((a, b) => a + b, 0) / p.length };
        } finally {
          model.head.dispose();
        }
      };
      const plain = await run('none');
      const weighted = await run('balanced');
      assert.equal(plain.training.classWeights, null);
      assert.deepEqual(weighted.training.classWeights, [15 / 24, 15 / 6]);
      // Same seed, same start: the loss that weighs each stripe 4× a circle is another number.
      assert.notEqual(weighted.firstLoss, plain.firstLoss);
      assert.ok(weighted.rare > plain.rare, `mean P(stripes) on stripes: balanced ${weighted.rare} vs none ${plain.rare}`);
    });
  }
});

describe('temperature', () => {
  test('a fit stays within TEMPERATURE_RANGE, [0.5, 10]', () => {
    assert.deepEqual(TEMPERATURE_RANGE, [0.5, 10]);
    // Perfectly separated: the loss falls as T → 0; the fit stops at the floor.
    const labels = Array.from({ length: 40 }, (_, i) => i % 2);
    const separated = labels.map((y) => (y === 0 ? [3, -3] : [-3, 3]));
    assert.equal(fitTemperature(labels, separated), 0.5);
    // Confident logits, random labels: the loss falls as T → ∞; the fit stops at the ceiling.
    const confused = labels.map((_, i) => (Math.floor(i / 2) % 2 === 0 ? [3, -3] : [-3, 3]));
    assert.equal(fitTemperature(labels, confused), 10);
    // Inside the range, the optimum itself: logits that are 2× too confident.
    const calibrated = labels.map((y, i) => (i % 5 === 0 ? [-1, 1] : [1, -1]).map((z) => (y === 0 ? z : -z)));
    const t = fitTemperature(labels, calibrated.map((row) => row.map((z) => 2 * z)));
    const tOne = fitTemperature(labels, calibrated);
    assert.ok(Math.abs(t / tOne - 2) < 1e-6, `T ${t} vs ${tOne}`);
    assert.ok(applyTemperature([1, -1], 0.5)[0] > applyTemperature([1, -1], 1)[0]);
  });

  test('train on a perfectly separated validation split stores the floor, not a temperature near 0', { timeout: 120_000 }, async () => {
    const data = (await makeImageDataset(path.join(tmp, 'separable'), { layout: 'fastai', classes: 2, perClass: 12, validPerClass: 16, size: 16, format: 'png' })).root;
    const result = await train(data, { backbone, engine: 'tfjs', hidden: 0, epochs: 8, lr: 1e-2, ensemble: 1, seed: 2, threads: 1, cacheDir: false });
    result.head.dispose();
    assert.equal(result.counts.valid, 32, 'enough validation images to calibrate');
    assert.equal(result.manifest.metrics.valAccuracy, 1, 'the split this test needs: every validation image right');
    assert.equal(result.manifest.temperature, TEMPERATURE_RANGE[0]);
  });
});

describe('--fine-tune-blocks', () => {
  test('counts the layers with weights in the last N blocks up to the feature layer', () => {
    const model = buildTinyBackbone({ inputSize: 16 });
    try {
      assert.equal(blockLayerCount(model, 'block2_pool', 1), 1, 'block2_conv1');
      assert.equal(blockLayerCount(model, 'block2_pool', 2), 2, 'block1_conv1, block2_conv1');
      assert.equal(blockLayerCount(model, 'block1_pool', 1), 1, 'block1_conv1 (block2 is past the feature layer)');
      assert.throws(() => blockLayerCount(model, 'input_1', 1), UsageError);
    } finally {
      model.dispose();
    }
  });

  test('train --fine-tune-blocks 1 trains block2 only (whole network on onnxruntime)', { timeout: 180_000 }, async () => {
    const data = (await makeImageDataset(path.join(tmp, 'blocks'), { layout: 'fastai', classes: 2, perClass: 8, validPerClass: 4, size: 16, format: 'png' })).root;
    const result = await train(data, { backbone, fineTuneBlocks: 1, fineTuneEpochs: 1, hidden: 0, epochs: 2, seed: 3, threads: 1, cacheDir: false });
    result.head.dispose();
    assert.deepEqual(result.fineTune?.layers, ['block2_conv1']);
    assert.deepEqual(result.manifest.training.fineTune?.layers, ['block2_conv1']);
  });
});
