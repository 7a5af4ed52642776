import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { loadBackbone } from '../src/backbones/resolve.ts';
import { loadTfjsFolder } from '../src/formats/tfjs-folder.ts';
import { compareGradients, randomize } from './grad-helpers.ts';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const MOBILENET_V2 = path.join(SHARED, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');
const TOLERANCE = 1e-4;

before(async () => {
  await tf.setBackend('cpu');
});

function assertClose(t: { diagnostic(message: string): void }, name: string, errors: Map<string, number>): void {
  assert.ok(errors.size > 1, `${name}: nothing compared`);
  const worst = [...errors].sort((a, b) => b[1] - a[1])[0];
  t.diagnostic(`${name}: ${errors.size} gradients, worst ${worst[0]} ${worst[1].toExponential(2)}, images ${errors.get('images')!.toExponential(2)}`);
  assert.ok(worst[1] <= TOLERANCE, `${name}: ${worst[0]} relative error ${worst[1].toExponential(2)} > ${TOLERANCE} (of ${errors.size} gradients)`);
}

describe('whole-network gradients match tfjs autodiff', () => {
  test('a small VGG-shaped network with random weights', async (t) => {
    const input = tf.input({ shape: [20, 20, 3] });
    let x = input;
    for (const [block, filters] of [[1, 4], [2, 6], [3, 8]]) {
      for (let i = 1; i <= 2; i++) x = tf.layers.conv2d({ name: `block${block}_conv${i}`, filters, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(x) as tf.SymbolicTensor;
      x = tf.layers.maxPooling2d({ name: `block${block}_pool`, poolSize: 2 }).apply(x) as tf.SymbolicTensor;
    }
    const model = tf.model({ inputs: input, outputs: x });
    randomize(model, 3);
    const { errors } = await compareGradients(model, { layer: 'block3_pool', pooling: 'avg', batch: 2 });
    assertClose(t, 'vgg-shaped', errors);
    model.dispose();
  });

  test('darknet-tiny (../shared) at 64×64', async (t) => {
    const dir = path.join(SHARED, 'backbones', 'darknet-tiny');
    if (!existsSync(dir)) return t.skip(`${dir} is absent; real-network check skipped`);
    const { model } = await loadTfjsFolder(dir, { inputSize: [64, 64] });
    const { errors } = await compareGradients(model, { layer: 'leaky_re_lu_15', pooling: 'avg', batch: 1 });
    assertClose(t, 'darknet-tiny', errors);
    model.dispose();
  });

  test('mobilenet_v2 with its real weights (../shared) at 64×64', async (t) => {
    if (!existsSync(MOBILENET_V2)) return t.skip(`${MOBILENET_V2} is absent; real-network check skipped`);
    const backbone = await loadBackbone('mobilenet_v2', { weights: MOBILENET_V2, inputSize: [64, 64], download: false });
    const { errors } = await compareGradients(backbone.model, { layer: backbone.layer, pooling: 'avg', batch: 1 });
    assertClose(t, 'mobilenet_v2', errors);
    backbone.model.dispose();
  });
});
