import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { buildOnnxGraph, INPUT_NAME, OUTPUT_NAME } from '../src/engines/onnx-export.ts';
import { OnnxTrainer } from '../src/engines/onnx-trainer.ts';
import { fineTuneLoop, type ImageSource } from '../src/fine-tune/loop.ts';
import { createRng } from '../src/data/random.ts';
import { collectGarbage } from './fixtures/gc.ts';

const SIZE = 12;
/** Validation images: enough that a frozen network's chance accuracy stays well below the bar. */
const VAL = 256;

/**
 * Horizontal (class 0) or vertical (class 1) stripes of period 2, random amplitude, phase and
 * noise. A convolution whose 3×3 kernel is constant answers both orientations identically,
 * so features of the frozen network cannot tell the classes apart; an edge-like kernel can.
 */
function stripes(count: number, seed: number): ImageSource & { images: Float32Array } {
  const rng = createRng(seed);
  const images = new Float32Array(count * SIZE * SIZE);
  const labels = Array.from({ length: count }, (_, i) => i % 2);
  for (let n = 0; n < count; n++) {
    const amp = 0.5 + rng();
    const phase = rng() < 0.5 ? 0 : 1;
    for (let y = 0; y < SIZE; y++)
      for (let x = 0; x < SIZE; x++) {
        const along = labels[n] === 0 ? y : x;
        const gauss = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
        images[(n * SIZE + y) * SIZE + x] = ((along + phase) % 2 ? amp : -amp) + 0.3 * gauss;
      }
  }
  const per = SIZE * SIZE;
  return {
    images,
    count,
    labels,
    async batch(indices) {
      const out = new Float32Array(indices.length * per);
      indices.forEach((i, row) => out.set(images.subarray(i * per, (i + 1) * per), row * per));
      return out;
    },
  };
}

function blindNetwork(): tf.LayersModel {
  const input = tf.input({ shape: [SIZE, SIZE, 1] });
  const conv = tf.layers.conv2d({ name: 'conv', filters: 4, kernelSize: 3, activation: 'relu' }).apply(input) as tf.SymbolicTensor;
  const pooled = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(conv) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: pooled });
  const kernel = tf.fill([3, 3, 1, 4], 0.1);
  const bias = tf.tensor1d([0.05, -0.05, 0.1, 0]);
  model.getLayer('conv').setWeights([kernel, bias]);
  tf.dispose([kernel, bias]);
  return model;
}

function head(features: number, classes: number, seed: number) {
  const rng = createRng(seed);
  const limit = Math.sqrt(6 / (features + classes));
  return [{ kernel: Float32Array.from({ length: features * classes }, () => (2 * rng() - 1) * limit), bias: new Float32Array(classes), relu: false }];
}

async function run(trainConv: boolean) {
  const model = blindNetwork();
  const graph = buildOnnxGraph(model, { layer: 'pool', pooling: 'avg' });
  const layers = trainConv ? [graph.layerConstants.get('conv')!] : [];
  const trainer = await OnnxTrainer.create(graph, { layers, head: head(graph.featureSize, 2, 1), threads: 1, weightDecay: 0 });
  const result = await fineTuneLoop(trainer, stripes(64, 1), stripes(VAL, 2), { epochs: 12, batchSize: 16, lr: 0.05, seed: 3, spread: 1, patience: 12 });
  model.dispose();
  return { trainer, result };
}

describe('fine-tuning on onnxruntime', () => {
  test('gradients reach the backbone: a trained convolution separates what frozen features cannot', async () => {
    const frozen = await run(false);
    await frozen.trainer.dispose();
    const tuned = await run(true);
    await tuned.trainer.dispose();
    assert.ok(frozen.result.after === null || frozen.result.after.accuracy < 0.75, `frozen features should not separate the stripes: ${JSON.stringify(frozen.result.after)}`);
    assert.ok(tuned.result.after && tuned.result.after.accuracy >= 0.95, `fine-tuned: ${JSON.stringify(tuned.result)}`);
    assert.ok(tuned.result.after.loss < tuned.result.before!.loss);
    assert.ok(tuned.result.bestEpoch >= 1);
  });

  test('the exported backbone carries the trained weights: its features + the head give the trainer’s logits', async () => {
    const { trainer } = await run(true);
    try {
      const val = stripes(8, 9);
      const expected = await trainer.logits(val.images, 8);
      const session = await ort.InferenceSession.create(trainer.backboneBytes());
      const out = await session.run({ [INPUT_NAME]: new ort.Tensor('float32', val.images, [8, SIZE, SIZE, 1]) });
      const features = out[OUTPUT_NAME].data as Float32Array;
      await session.release();
      const [{ kernel, bias }] = trainer.headLayers();
      const f = features.length / 8;
      for (let n = 0; n < 8; n++)
        for (let k = 0; k < 2; k++) {
          let z = bias[k];
          for (let j = 0; j < f; j++) z += features[n * f + j] * kernel[j * 2 + k];
          assert.ok(Math.abs(z - expected[n * 2 + k]) < 1e-4, `image ${n} class ${k}: ${z} vs ${expected[n * 2 + k]}`);
        }
      // And the untrained export differs (the weights really moved).
      const fresh = blindNetwork();
      const untrained = buildOnnxGraph(fresh, { layer: 'pool', pooling: 'avg' });
      const kernelName = untrained.layerConstants.get('conv')![0];
      const before = untrained.g.constants.get(kernelName)!.data as Float32Array;
      const after = trainer.params.find((p) => p.name === kernelName)!.data;
      assert.ok(before.some((v, i) => Math.abs(v - after[i]) > 1e-3));
      fresh.dispose();
    } finally {
      await trainer.dispose();
    }
    await assert.rejects(trainer.logits(new Float32Array(SIZE * SIZE), 1), /disposed/);
  });

  test('dropout after the hidden head layer acts in training steps only, seeded', async () => {
    const model = blindNetwork();
    const graph = () => buildOnnxGraph(model, { layer: 'pool', pooling: 'avg' });
    const rng = createRng(5);
    const dense = (inputs: number, units: number, relu: boolean) => ({ kernel: Float32Array.from({ length: inputs * units }, () => rng() - 0.5), bias: new Float32Array(units), relu });
    const f = graph().featureSize;
    const hiddenHead = [dense(f, 16, true), dense(16, 2, false)];
    const data = stripes(32, 4);
    const indices = Array.from({ length: 32 }, (_, i) => i);
    const images = await data.batch(indices, 0);
    const labels = Array.from(data.labels);
    // Cross-entropy of the eval graph's logits: the loss a step reports when nothing is dropped.
    const evalLoss = (logits: Float32Array) =>
      labels.reduce((sum, label, n) => {
        const z = logits.subarray(n * 2, n * 2 + 2);
        const max = Math.max(...z);
        return sum - (z[label] - max - Math.log(Math.exp(z[0] - max) + Math.exp(z[1] - max)));
      }, 0) / labels.length;
    const firstLosses = async (dropout: number, seed: number) => {
      const trainer = await OnnxTrainer.create(graph(), { layers: [], head: hiddenHead, threads: 1, dropout, seed });
      try {
        const before = evalLoss(await trainer.logits(images, 32));
        const losses = [];
        // A zero learning rate: the weights stay, so only the masks can change the loss.
        for (let i = 0; i < 3; i++) losses.push((await trainer.step(images, labels, 32, [0])).loss);
        const after = evalLoss(await trainer.logits(images, 32));
        return { before, after, losses };
      } finally {
        await trainer.dispose();
      }
    };
    const plain = await firstLosses(0, 1);
    for (const loss of plain.losses) assert.ok(Math.abs(loss - plain.before) < 1e-5, `no dropout: step loss ${loss} vs eval ${plain.before}`);
    const dropped = await firstLosses(0.5, 1);
    assert.ok(Math.abs(dropped.after - plain.before) < 1e-5, 'evaluation runs without dropout');
    assert.ok(dropped.losses.every((loss) => Math.abs(loss - plain.before) > 1e-4), `masks change the training loss: ${dropped.losses} vs ${plain.before}`);
    assert.ok(new Set(dropped.losses.map((l) => l.toFixed(6))).size === 3, 'a fresh mask each step');
    assert.deepEqual((await firstLosses(0.5, 1)).losses, dropped.losses, 'the same seed gives the same masks');
    await assert.rejects(OnnxTrainer.create(graph(), { layers: [], head: hiddenHead, dropout: 1 }), /dropout 1/);
    model.dispose();
  });

  test('memory stays flat across epochs: no onnxruntime tensors or sessions left behind', async () => {
    const input = tf.input({ shape: [SIZE, SIZE, 1] });
    const a = tf.layers.conv2d({ name: 'a', filters: 32, kernelSize: 3, activation: 'relu' }).apply(input) as tf.SymbolicTensor;
    const b = tf.layers.conv2d({ name: 'b', filters: 64, kernelSize: 3, activation: 'relu' }).apply(a) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(b) as tf.SymbolicTensor });
    const graph = buildOnnxGraph(model, { layer: 'pool', pooling: 'avg' });
    model.dispose();
    const trainer = await OnnxTrainer.create(graph, { layers: [graph.layerConstants.get('a')!, graph.layerConstants.get('b')!], head: head(graph.featureSize, 2, 1), threads: 1 });
    const data = stripes(64, 1);
    const batch = await data.batch(Array.from({ length: 64 }, (_, i) => i), 0);
    const labels = Array.from(data.labels);
    const epoch = async () => {
      for (let i = 0; i < 50; i++) {
        await trainer.step(batch, labels, 64, [1e-4, 1e-4, 1e-4]);
        await trainer.logits(batch, 64);
      }
    };
    // Two warm-up epochs: the allocator's first growth is not a leak (one warm-up left 15 MB of noise under load).
    await epoch();
    await epoch();
    collectGarbage();
    const start = process.memoryUsage().rss;
    // Collected after each epoch: disposed outputs' native buffers are freed by their finalizers.
    for (let e = 0; e < 6; e++) {
      await epoch();
      collectGarbage();
    }
    collectGarbage();
    const grown = (process.memoryUsage().rss - start) / 2 ** 20;
    await trainer.dispose();
    // 600 runs with ≈ 75 KB of gradients each: keeping the outputs alone would add ≈ 45 MB.
    assert.ok(grown < 20, `RSS grew ${grown.toFixed(1)} MB over 6 epochs of 100 runs`);
  });
});
