/**
 * The head trained on onnxruntime: its backward pass against tfjs's tf.grads, the whole
 * training run against the tfjs loop it replaces, repeatability, and no session left open.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { headGradientGraph, paramShapes, type HeadGraphShape } from '../src/engines/onnx-head-graph.ts';
import { openHeadSessions } from '../src/engines/onnx-head.ts';
import { createRng } from '../src/data/random.ts';
import { InterruptedError } from '../src/errors.ts';
import { trainEnsemble } from '../src/head/ensemble.ts';
import { lrRangeTest } from '../src/head/lr-range.ts';
import { trainHeadsOnnx } from '../src/head/train-onnx.ts';
import type { FeatureSet, HeadTrainingOptions } from '../src/head/train.ts';
import { train as trainModel } from '../src/index.ts';
import { makeTwoClassImages, writeConvBackbone } from './fixtures/interrupt-fixture.ts';

/** max |a − b| / max |b|: the relative error the gradient checks bound. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

function randoms(n: number, rng: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
}

for (const hidden of [0, 5]) {
  test(`the ${hidden ? 'hidden-layer' : 'linear'} head's gradients for 2 heads at once equal tf.grads within 1e-4`, async () => {
    const shape: HeadGraphShape = { heads: 2, dim: 7, hidden, classes: 3, dropout: hidden > 0 };
    const rows = 6;
    const rng = createRng(11);
    const params = paramShapes(shape).map((p) => ({ ...p, data: randoms(p.dims.reduce((a, b) => a * b, 1), rng, 0.8) }));
    const x = randoms(shape.heads * rows * shape.dim, rng, 2);
    const labels = Array.from({ length: shape.heads * rows }, () => Math.floor(rng() * shape.classes));
    const onehot = new Float32Array(labels.length * shape.classes);
    labels.forEach((label, r) => (onehot[r * shape.classes + label] = 1));
    // Class weights 1, 2, 0.5: each row's weight over its head's batch total.
    const classWeight = [1, 2, 0.5];
    const rowWeight = new Float32Array(labels.length);
    for (let k = 0; k < shape.heads; k++) {
      const batch = labels.slice(k * rows, (k + 1) * rows);
      const total = batch.reduce((s, l) => s + classWeight[l], 0);
      batch.forEach((l, b) => (rowWeight[k * rows + b] = classWeight[l] / total));
    }
    const mask = Float32Array.from({ length: shape.heads * rows * hidden }, () => (rng() < 0.5 ? 2 : 0));

    const session = await ort.InferenceSession.create(headGradientGraph(shape));
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', x, [shape.heads, rows, shape.dim]),
      onehot: new ort.Tensor('float32', onehot, [shape.heads, rows, shape.classes]),
      row_weight: new ort.Tensor('float32', rowWeight, [shape.heads, rows, 1]),
    };
    if (hidden) feeds.dropout_mask = new ort.Tensor('float32', mask, [shape.heads, rows, hidden]);
    for (const p of params) feeds[p.name] = new ort.Tensor('float32', p.data, p.dims);
    const out = await session.run(feeds);
    await session.release();

    // The oracle: each head on its own, with tfjs's loss (train.ts's weightedLoss) and tf.grads.
    for (let k = 0; k < shape.heads; k++) {
      const expected = tf.tidy(() => {
        const per = params.map((p) => tf.tensor(p.data.subarray((k * p.data.length) / shape.heads, ((k + 1) * p.data.length) / shape.heads), p.dims.slice(1)));
        const xk = tf.tensor2d(x.subarray(k * rows * shape.dim, (k + 1) * rows * shape.dim), [rows, shape.dim]);
        const yk = tf.tensor1d(labels.slice(k * rows, (k + 1) * rows), 'int32');
        const maskK = hidden ? tf.tensor2d(mask.subarray(k * rows * hidden, (k + 1) * rows * hidden), [rows, hidden]) : undefined;
        const loss = (...w: tf.Tensor[]) => {
          let h: tf.Tensor = xk;
          if (hidden) h = tf.mul(tf.relu(tf.add(tf.matMul(xk, w[0] as tf.Tensor2D), tf.reshape(w[1], [-1]))), maskK!);
          const probs = tf.softmax(tf.add(tf.matMul(h as tf.Tensor2D, w[hidden ? 2 : 0] as tf.Tensor2D), tf.reshape(w[hidden ? 3 : 1], [-1])));
          const picked = tf.sum(tf.mul(tf.oneHot(yk, shape.classes), probs), 1);
          const sw = tf.gather(tf.tensor1d(classWeight), yk);
          return tf.div(tf.sum(tf.mul(tf.neg(tf.log(tf.clipByValue(picked, 1e-7, 1))), sw)), tf.sum(sw)) as tf.Scalar;
        };
        return tf.grads(loss)(per).map((g) => g.dataSync() as Float32Array);
      });
      params.forEach((p, i) => {
        const size = p.data.length / shape.heads;
        const got = (out[`grad_${p.name}`].data as Float32Array).subarray(k * size, (k + 1) * size);
        const error = relativeError(got, expected[i]);
        assert.ok(error < 1e-4, `head ${k + 1} ${p.name}: relative error ${error.toExponential(2)}`);
      });
    }
  });
}

/** Three classes a hidden layer separates; a few hundred rows. */
function synthetic(n: number, dim: number, seed: number): FeatureSet {
  const rng = createRng(seed);
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % 3;
    for (let j = 0; j < dim; j++) x[i * dim + j] = rng() * 2 - 1 + (j % 3 === y[i] ? 0.6 : 0) + 5 * (j === 4 ? 1 : 0);
  }
  return { x, y, n, dim };
}

const train = synthetic(240, 24, 1);
const valid = synthetic(90, 24, 2);
const recipe: HeadTrainingOptions = { hidden: 16, dropout: 0.5, seed: 7, epochs: 6, batchSize: 32, lr: 1e-2, patience: 2, classWeights: [1, 1.5, 1] };

function weightsOf(model: tf.LayersModel): Float32Array[] {
  return model.getWeights().map((w) => w.dataSync() as Float32Array);
}

test('3 heads trained on onnx follow the tfjs run epoch by epoch and give the same merged head', async (t) => {
  const tfjs = await trainEnsemble(train, valid, 3, recipe, 3);
  const onnx = await trainHeadsOnnx(train, valid, 3, recipe, 3);
  try {
    assert.equal(onnx.history.length, tfjs.history.length, 'the same epochs, early stopping included');
    onnx.history.forEach((r, i) => {
      const o = tfjs.history[i];
      assert.equal(r.member, o.member);
      assert.equal(r.epoch, o.epoch);
      assert.ok(Math.abs(r.valLoss! - o.valLoss!) < 1e-4, `member ${r.member} epoch ${r.epoch}: val loss ${r.valLoss} vs ${o.valLoss}`);
      assert.equal(r.valAccuracy, o.valAccuracy);
    });
    assert.deepEqual(onnx.members?.map((m) => m.bestEpoch), tfjs.members?.map((m) => m.bestEpoch));
    const a = weightsOf(onnx.model);
    const b = weightsOf(tfjs.model);
    a.forEach((w, i) => assert.ok(relativeError(w, b[i]) < 1e-4, `merged weight ${i}: ${relativeError(w, b[i]).toExponential(2)}`));
    assert.ok(Math.abs(onnx.final!.valLoss! - tfjs.final!.valLoss!) < 1e-4, `merged val loss ${onnx.final!.valLoss} vs ${tfjs.final!.valLoss}`);
    assert.equal(onnx.final!.valAccuracy, tfjs.final!.valAccuracy);
    assert.ok(onnx.final!.valAccuracy! > 0.9, `val accuracy ${onnx.final!.valAccuracy}`);
    t.diagnostic(`merged val accuracy ${onnx.final!.valAccuracy}, loss ${onnx.final!.valLoss!.toFixed(4)} (tfjs ${tfjs.final!.valLoss!.toFixed(4)})`);
  } finally {
    onnx.model.dispose();
    tfjs.model.dispose();
  }
});

test('a linear head without a validation set matches tfjs too', async () => {
  const opts = { ...recipe, hidden: 0, epochs: 3 };
  const tfjs = await trainEnsemble(train, undefined, 3, opts, 1);
  const onnx = await trainHeadsOnnx(train, undefined, 3, opts, 1);
  try {
    assert.equal(onnx.bestEpoch, tfjs.bestEpoch);
    onnx.history.forEach((r, i) => assert.ok(Math.abs(r.loss - tfjs.history[i].loss) < 1e-4, `epoch ${r.epoch}: ${r.loss} vs ${tfjs.history[i].loss}`));
    const a = weightsOf(onnx.model);
    weightsOf(tfjs.model).forEach((w, i) => assert.ok(relativeError(a[i], w) < 1e-4));
  } finally {
    onnx.model.dispose();
    tfjs.model.dispose();
  }
});

test('onnx head training is repeatable for a seed and differs for another', async () => {
  const runs = [recipe.seed, recipe.seed, recipe.seed + 10].map((seed) => trainHeadsOnnx(train, valid, 3, { ...recipe, seed }, 2));
  const [a, b, c] = await Promise.all(runs);
  try {
    assert.deepEqual(weightsOf(a.model), weightsOf(b.model));
    assert.deepEqual(a.history, b.history);
    assert.notDeepEqual(weightsOf(a.model), weightsOf(c.model));
  } finally {
    for (const r of [a, b, c]) r.model.dispose();
  }
});

test('no onnxruntime session or tfjs tensor outlives training, finished or interrupted', async () => {
  const tensors = tf.memory().numTensors;
  const atEpoch: number[] = [];
  const done = await trainHeadsOnnx(train, valid, 3, { ...recipe, patience: 10, onEpoch: () => atEpoch.push(openHeadSessions()) }, 2);
  done.model.dispose();
  assert.ok(atEpoch.every((n) => n === 2), `open sessions at each epoch: ${atEpoch.join(', ')}`);
  assert.equal(openHeadSessions(), 0);
  assert.equal(tf.memory().numTensors, tensors);

  const controller = new AbortController();
  const stopped = trainHeadsOnnx(train, valid, 3, { ...recipe, signal: controller.signal, onEpoch: () => controller.abort() }, 2);
  await assert.rejects(stopped, InterruptedError);
  assert.equal(openHeadSessions(), 0);
  assert.equal(tf.memory().numTensors, tensors);
});

test('the learning-rate range test on onnx follows the tfjs one point by point', async () => {
  const opts = { hidden: 16, dropout: 0.5, seed: 3, batchSize: 32, steps: 40 };
  const tfjs = await lrRangeTest(train, 3, { ...opts, engine: 'tfjs' });
  const onnx = await lrRangeTest(train, 3, { ...opts, engine: 'onnx' });
  assert.equal(onnx.points.length, tfjs.points.length);
  assert.ok(onnx.points.length > 20, `${onnx.points.length} points before the loss blew up`);
  onnx.points.forEach((p, i) => assert.ok(Math.abs(p.loss - tfjs.points[i].loss) < 1e-4 * Math.max(1, tfjs.points[i].loss), `lr ${p.lr}: ${p.loss} vs ${tfjs.points[i].loss}`));
  assert.equal(onnx.suggested, tfjs.suggested);
  assert.equal(openHeadSessions(), 0);
});

test('train: the head trains on onnx by default and on tfjs with --engine tfjs, to the same model', { timeout: 120_000 }, async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-head-engine-'));
  try {
    const data = path.join(tmp, 'data');
    await makeTwoClassImages(data, 12, 5);
    const backbone = await writeConvBackbone(path.join(tmp, 'backbone'), { inputSize: 32, filters: 8 });
    const common = { backbone, layer: 'block1_pool', cacheDir: path.join(tmp, 'cache'), ensemble: 2, epochs: 4 };
    const onnx = await trainModel(data, common);
    const tfjs = await trainModel(data, { ...common, engine: 'tfjs' });
    try {
      assert.equal(onnx.headEngine, 'onnx');
      assert.equal(onnx.manifest.training.headEngine, 'onnx');
      assert.equal(tfjs.headEngine, 'tfjs');
      assert.equal(onnx.manifest.metrics.valAccuracy, tfjs.manifest.metrics.valAccuracy);
      assert.ok(Math.abs(onnx.manifest.metrics.valLoss! - tfjs.manifest.metrics.valLoss!) < 1e-3, `val loss ${onnx.manifest.metrics.valLoss} vs ${tfjs.manifest.metrics.valLoss}`);
    } finally {
      onnx.head.dispose();
      tfjs.head.dispose();
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
