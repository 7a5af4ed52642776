import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { createRng } from '../src/data/random.ts';
import { INPUT_NAME, OUTPUT_NAME } from '../src/engines/onnx-export.ts';
import { InterruptedError } from '../src/errors.ts';
import { fileImages } from '../src/fine-tune/file-images.ts';
import { fineTuneWholeNetwork } from '../src/fine-tune/whole-network.ts';

const SIZE = 16;
let dir: string;
const files: { path: string; label: number }[] = [];

/** Horizontal (0) or vertical (1) stripes one pixel wide, as PNG files. */
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-whole-'));
  const rng = createRng(4);
  for (let i = 0; i < 96; i++) {
    const label = i % 2;
    const rgb = Buffer.alloc(SIZE * SIZE * 3);
    const phase = Math.floor(rng() * 4);
    const amp = 40 + 60 * rng();
    for (let y = 0; y < SIZE; y++)
      for (let x = 0; x < SIZE; x++) {
        const along = label === 0 ? y : x;
        const v = 128 + ((along + phase) % 2 ? amp : -amp) + 30 * (rng() - 0.5);
        rgb.fill(Math.max(0, Math.min(255, Math.round(v))), (y * SIZE + x) * 3, (y * SIZE + x) * 3 + 3);
      }
    const file = path.join(dir, `img${i}.png`);
    await sharp(rgb, { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toFile(file);
    files.push({ path: file, label });
  }
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A backbone that starts blind to orientation: constant 3×3 kernels (see onnx-fine-tune.test.ts). */
function network(): tf.LayersModel {
  const input = tf.input({ shape: [SIZE, SIZE, 3] });
  const conv = tf.layers.conv2d({ name: 'conv', filters: 4, kernelSize: 3, activation: 'relu' }).apply(input) as tf.SymbolicTensor;
  const conv2 = tf.layers.conv2d({ name: 'conv2', filters: 4, kernelSize: 1 }).apply(conv) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: conv2 });
  const k = tf.fill([3, 3, 3, 4], 0.05);
  const b = tf.tensor1d([0.05, -0.05, 0.1, 0]);
  model.getLayer('conv').setWeights([k, b]);
  tf.dispose([k, b]);
  return model;
}

function head() {
  const rng = createRng(2);
  return [{ kernel: Float32Array.from({ length: 8 }, () => rng() - 0.5), bias: new Float32Array(2), relu: false }];
}

async function sources() {
  const train = files.slice(0, 64);
  const val = files.slice(64);
  // Zero-centred pixels ('tf'), so the first ReLU is selective; on all-positive inputs it would pass everything and the net be linear, blind to orientation whatever its weights.
  const opts = { size: [SIZE, SIZE] as const, preprocess: 'tf' as const, flip: true, seed: 1 };
  return {
    train: await fileImages(train.map((f) => f.path), train.map((f) => f.label), opts),
    val: await fileImages(val.map((f) => f.path), val.map((f) => f.label), opts),
  };
}

describe('fineTuneWholeNetwork: image files → a trained backbone as ONNX', () => {
  test('learns what frozen features miss; the exported backbone reproduces its validation accuracy; --seed repeats', async () => {
    const { train, val } = await sources();
    const model = network();
    const run = () => fineTuneWholeNetwork(model, { layer: 'conv2', pooling: 'avg', layers: 'all', head: head(), train, val, epochs: 10, lr: 0.05, batchSize: 16, seed: 5, patience: 10, spread: 1, threads: 1, weightDecay: 0 });
    const result = await run();
    assert.deepEqual(result.layers, ['conv', 'conv2']);
    assert.ok(result.before!.accuracy < 0.7, `blind start: ${JSON.stringify(result.before)}`);
    assert.ok(result.after!.accuracy >= 0.9, `after: ${JSON.stringify({ ...result, backboneOnnx: undefined })}`);
    assert.match(result.backboneSha256, /^[0-9a-f]{64}$/);

    // The exported ONNX backbone + the returned head classify the validation images as well.
    const session = await ort.InferenceSession.create(result.backboneOnnx);
    const images = await val.batch(Array.from({ length: val.count }, (_, i) => i), -1);
    const out = await session.run({ [INPUT_NAME]: new ort.Tensor('float32', images, [val.count, SIZE, SIZE, 3]) });
    const features = out[OUTPUT_NAME].data as Float32Array;
    await session.release();
    const [{ kernel, bias }] = result.head;
    let correct = 0;
    for (let n = 0; n < val.count; n++) {
      const z = [0, 1].map((k) => bias[k] + [0, 1, 2, 3].reduce((s, j) => s + features[n * 4 + j] * kernel[j * 2 + k], 0));
      if ((z[1] > z[0] ? 1 : 0) === val.labels[n]) correct++;
    }
    assert.equal(correct / val.count, result.after!.accuracy);

    const again = await run();
    assert.equal(again.backboneSha256, result.backboneSha256, 'same seed, same machine: the same trained weights');
    model.dispose();
  });

  test('--fine-tune 1 trains only the last layer; too many layers is a usage error', async () => {
    const { train, val } = await sources();
    const model = network();
    const result = await fineTuneWholeNetwork(model, { layer: 'conv2', pooling: 'avg', layers: 1, head: head(), train, val, epochs: 1, lr: 0.01, batchSize: 32, seed: 1, threads: 1 });
    assert.deepEqual(result.layers, ['conv2']);
    await assert.rejects(
      fineTuneWholeNetwork(model, { layer: 'conv2', pooling: 'avg', layers: 3, head: head(), train, val, epochs: 1, lr: 0.01, batchSize: 32, seed: 1 }),
      /--fine-tune 3: conv2 is preceded by 2 layers with weights/,
    );
    model.dispose();
  });

  test('an abort during an epoch stops within a step with InterruptedError', async () => {
    const { train, val } = await sources();
    const model = network();
    const controller = new AbortController();
    let steps = 0;
    let abortedAt = 0;
    await assert.rejects(
      fineTuneWholeNetwork(model, {
        layer: 'conv2', pooling: 'avg', layers: 'all', head: head(), train, val, epochs: 50, lr: 0.01, batchSize: 8, seed: 1, threads: 1,
        signal: controller.signal,
        onProgress: (e) => {
          if (e.status === 'progress' && ++steps === 3) {
            controller.abort();
            abortedAt = performance.now();
          }
        },
      }),
      (err: unknown) => err instanceof InterruptedError && err.exitCode === 130,
    );
    assert.ok(performance.now() - abortedAt < 2000, `stopped ${performance.now() - abortedAt} ms after the abort`);
    assert.ok(steps < 10, `${steps} steps ran`);
    model.dispose();
  });
});
