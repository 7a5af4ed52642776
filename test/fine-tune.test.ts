/**
 * Fine-tuning: the last layers of the backbone train with the head; the frozen part runs once
 * (its output is what gets cached), and the saved head carries the unfrozen layers.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../src/errors.ts';
import { saveModel } from '../src/bundle/save-model.ts';
import { loadModel, predict } from '../src/pipeline/predict.ts';
import { train } from '../src/pipeline/train.ts';
import { makeImageDataset } from './fixtures/images.ts';
import { saveTfjsFolder } from './fixtures/tiny-backbone.ts';

let tmp: string;
let data: string;
let backbone: string;

/** conv 3×3 → conv 3×3 → pool → pointwise conv → BN → LeakyReLU (feature layer) → global pool → dense. */
function pointwiseBackbone(): tf.LayersModel {
  const seed = 7;
  const input = tf.input({ shape: [32, 32, 3], name: 'input_1' });
  let x = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv0', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 2 }) }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv1', kernelInitializer: tf.initializers.glorotUniform({ seed }) }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 16, kernelSize: 1, useBias: false, name: 'pw', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }) }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ name: 'pw_bn' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.leakyReLU({ alpha: 0.1, name: 'feat' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 10, activation: 'softmax', name: 'top' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-ft-'));
  data = (await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 2, perClass: 20, validPerClass: 8, size: 48 })).root;
  backbone = path.join(tmp, 'backbone');
  const model = pointwiseBackbone();
  await saveTfjsFolder(model, backbone);
  model.dispose();
});
after(() => rm(tmp, { recursive: true, force: true }));

test('--engine tfjs --fine-tune 2 trains pw + pw_bn with the head; the bundle starts at the cut and predicts as trained', { timeout: 120_000 }, async () => {
  const result = await train(data, { backbone, engine: 'tfjs', fineTune: 2, epochs: 4, cacheDir: path.join(tmp, 'cache'), seed: 3 });
  const training = result.manifest.training as { fineTune: { layers: string[] } };
  assert.deepEqual(training.fineTune.layers, ['pw', 'pw_bn', 'feat']);
  assert.equal(result.manifest.backbones[0].layer, 'pool1', 'the frozen part ends before the unfrozen layers');
  assert.equal(result.manifest.backbones[0].pooling, 'flatten');
  assert.equal(result.manifest.featureSize, 16 * 16 * 8);
  assert.ok(result.history.length > 4, 'a second stage followed the head');
  assert.ok((result.manifest.metrics.valAccuracy ?? 0) >= 0.9, `val accuracy ${result.manifest.metrics.valAccuracy}`);
  const out = path.join(tmp, 'model');
  await saveModel(out, result, { remember: false });
  const headJson = JSON.parse(await readFile(path.join(out, JSON.parse(await readFile(path.join(out, 'finetune.json'), 'utf8')).head), 'utf8'));
  const classNames = headJson.modelTopology.config.layers.map((l: { class_name: string }) => l.class_name);
  assert.ok(classNames.includes('BatchNormalization') && classNames.includes('LeakyReLU'), `head layers: ${classNames.join(', ')}`);
  const image = path.join(data, 'valid', result.classes[0]);
  const model = await loadModel(out);
  const [first] = await predict(model, [image], { cacheDir: false });
  assert.ok('label' in first);
  model.head.dispose();
  result.head.dispose();
});

test('--fine-tune through a 3×3 convolution on the wasm backend is refused with what to do', async () => {
  await assert.rejects(train(data, { backbone, engine: 'tfjs', layer: 'feat', fineTune: 3, backend: 'wasm', epochs: 1, cacheDir: false }), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.match(err.message, /conv1 \(Conv2D\) needs tfjs-node/);
    return true;
  });
  await assert.rejects(train(data, { backbone, engine: 'tfjs', layer: 'feat', fineTune: 4, epochs: 1, cacheDir: false }), /preceded by 4 layers with weights, and one must stay frozen; fine-tune at most 3/);
});

test('--fine-tune defaults to one head on average pooling, and refuses avgmax or an ensemble when asked for', async () => {
  await assert.rejects(train(data, { backbone, fineTune: 2, pooling: 'avgmax', epochs: 1, cacheDir: false }), /--fine-tune works with --pooling avg, max or flatten, not avgmax/);
  await assert.rejects(train(data, { backbone, fineTune: 2, ensemble: 3, epochs: 1, cacheDir: false }), /--ensemble works on frozen features; leave it out with --fine-tune/);
});
