import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { compareGradients, finiteDifferenceErrors, randomize } from './grad-helpers.ts';

const TOLERANCE = 1e-4;

before(async () => {
  // The oracle: tfjs's own autodiff on the pure-JS cpu backend (it has every gradient).
  await tf.setBackend('cpu');
});

type Build = (x: tf.SymbolicTensor) => tf.SymbolicTensor;

async function check(name: string, inputShape: number[], build: Build, opts: { pooling?: 'flatten' | 'avg' | 'max' | 'avgmax'; batch?: number } = {}): Promise<void> {
  const input = tf.input({ shape: inputShape });
  const output = build(input);
  const model = tf.model({ inputs: input, outputs: output });
  randomize(model, name.length);
  const { errors } = await compareGradients(model, { layer: output.sourceLayer.name, pooling: opts.pooling ?? 'flatten', batch: opts.batch ?? 2 });
  assert.ok(errors.size > 0);
  for (const [what, error] of errors) assert.ok(error <= TOLERANCE, `${name}: ${what} relative error ${error.toExponential(2)} > ${TOLERANCE}`);
  model.dispose();
}

const L = tf.layers;
const apply = (layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]) => layer.apply(x) as tf.SymbolicTensor;

describe('per-layer gradients match tfjs autodiff (max abs diff / max abs value ≤ 1e-4)', () => {
  test('Conv2D 3×3 stride 1 same, odd size, ReLU', () => check('conv-s1-same', [7, 7, 3], (x) => apply(L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }), x)));
  test('Conv2D 3×3 stride 2 same, odd size', () => check('conv-s2-same', [9, 9, 3], (x) => apply(L.conv2d({ filters: 5, kernelSize: 3, strides: 2, padding: 'same' }), x)));
  test('Conv2D 3×3 stride 2 valid, even size, ReLU6', () => check('conv-s2-valid', [8, 8, 2], (x) => apply(L.reLU({ maxValue: 6 }), apply(L.conv2d({ filters: 3, kernelSize: 3, strides: 2, padding: 'valid' }), x))));
  test('Conv2D 3×2 kernel stride (2,1) valid, rows left over', () => check('conv-rect', [10, 7, 2], (x) => apply(L.conv2d({ filters: 3, kernelSize: [3, 2], strides: [2, 1], padding: 'valid' }), x)));
  test('Conv2D 1×1 stride 2 valid, no bias', () => check('conv-1x1', [7, 7, 4], (x) => apply(L.conv2d({ filters: 3, kernelSize: 1, strides: 2, useBias: false }), x)));
  test('DepthwiseConv2D 3×3 stride 1 same, multiplier 2', () => check('dw-s1', [7, 7, 3], (x) => apply(L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same' }), x)));
  test('DepthwiseConv2D 3×3 stride 2 valid', () => check('dw-s2', [9, 9, 4], (x) => apply(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'valid' }), x)));
  test('DepthwiseConv2D 3×3 stride 2 same then folded BatchNormalization, ReLU6', () =>
    check('dw-bn', [8, 8, 3], (x) => apply(L.reLU({ maxValue: 6 }), apply(L.batchNormalization(), apply(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', useBias: false }), x)))));
  test('SeparableConv2D 3×3 stride 1 same', () => check('sep', [7, 7, 3], (x) => apply(L.separableConv2d({ filters: 4, kernelSize: 3, padding: 'same' }), x)));
  test('Conv2D then folded BatchNormalization, LeakyReLU', () =>
    check('conv-bn', [7, 7, 3], (x) => apply(L.leakyReLU({ alpha: 0.1 }), apply(L.batchNormalization(), apply(L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false }), x)))));
  test('BatchNormalization on its own (after an activation)', () =>
    check('bn-alone', [6, 6, 3], (x) => apply(L.batchNormalization(), apply(L.conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }), x))));
  test('MaxPooling2D 2×2 stride 2 valid, odd size', () => check('maxpool', [7, 7, 2], (x) => apply(L.maxPooling2d({ poolSize: 2 }), apply(L.conv2d({ filters: 3, kernelSize: 1 }), x))));
  test('MaxPooling2D 3×3 stride 2 same (overlapping windows)', () => check('maxpool-overlap', [9, 9, 2], (x) => apply(L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }), apply(L.conv2d({ filters: 3, kernelSize: 1 }), x))));
  test('AveragePooling2D 3×3 stride 1 valid', () => check('avgpool-valid', [6, 6, 2], (x) => apply(L.averagePooling2d({ poolSize: 3, strides: 1 }), apply(L.conv2d({ filters: 2, kernelSize: 1 }), x))));
  test('GlobalAveragePooling2D then Dense, sigmoid', () => check('gap-dense', [5, 5, 3], (x) => apply(L.dense({ units: 4, activation: 'sigmoid' }), apply(L.globalAveragePooling2d({}), apply(L.conv2d({ filters: 4, kernelSize: 3 }), x)))));
  test('GlobalMaxPooling2D then Dense, tanh', () => check('gmp-dense', [5, 5, 3], (x) => apply(L.dense({ units: 3, activation: 'tanh' }), apply(L.globalMaxPooling2d({}), apply(L.conv2d({ filters: 4, kernelSize: 3 }), x)))));
  test('avg, max and avgmax feature pooling', async () => {
    for (const pooling of ['avg', 'max', 'avgmax'] as const) await check(`pool-${pooling}`, [6, 6, 2], (x) => apply(L.conv2d({ filters: 3, kernelSize: 3, activation: 'relu' }), x), { pooling });
  });
  test('ZeroPadding2D (asymmetric) and Cropping2D', () =>
    check('pad-crop', [6, 6, 2], (x) => apply(L.cropping2D({ cropping: [[1, 0], [0, 2]] }), apply(L.conv2d({ filters: 3, kernelSize: 3, strides: 2 }), apply(L.zeroPadding2d({ padding: [[0, 1], [1, 0]] }), x)))));
  test('Add (residual) and Concatenate of two branches', () =>
    check('add-concat', [5, 5, 3], (x) => {
      const a = apply(L.conv2d({ filters: 3, kernelSize: 3, padding: 'same', activation: 'relu' }), x);
      const residual = apply(L.add(), [a, x]);
      const b = apply(L.conv2d({ filters: 2, kernelSize: 1 }), residual);
      return apply(L.concatenate(), [residual, b]);
    }));
  test('Flatten, Dropout, Dense, Reshape', () =>
    check('flatten-dense', [4, 4, 2], (x) => {
      const flat = apply(L.flatten(), apply(L.conv2d({ filters: 3, kernelSize: 3, activation: 'relu' }), x));
      return apply(L.reshape({ targetShape: [2, 3] }), apply(L.dense({ units: 6 }), apply(L.dropout({ rate: 0.5 }), flat)));
    }));
  test('Dense on a feature map (a 1×1 convolution), Multiply', () =>
    check('dense-4d', [4, 4, 3], (x) => {
      const d = apply(L.dense({ units: 3, activation: 'relu' }), x);
      return apply(L.multiply(), [d, x]);
    }));
});

/** Linear networks checked by central differences (tfjs has no dilated-conv gradient, and a wrong 'same' average-pooling one). */
async function checkNumerically(name: string, inputShape: number[], build: Build): Promise<void> {
  const input = tf.input({ shape: inputShape });
  const output = build(input);
  const model = tf.model({ inputs: input, outputs: output });
  randomize(model, name.length);
  const errors = await finiteDifferenceErrors(model, { layer: output.sourceLayer.name, batch: 1 });
  for (const [what, error] of errors) assert.ok(error <= TOLERANCE, `${name}: ${what} relative error ${error.toExponential(2)} > ${TOLERANCE}`);
  model.dispose();
}

describe('gradients match central differences (linear networks)', () => {
  test('Conv2D 3×3 dilation 2 same', () => checkNumerically('conv-dilated', [9, 9, 2], (x) => apply(L.conv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: 'same' }), x)));
  test('Conv2D 3×3 dilation 2 valid, stride 1, odd size', () => checkNumerically('conv-dilated-valid', [8, 7, 2], (x) => apply(L.conv2d({ filters: 2, kernelSize: 3, dilationRate: 2, padding: 'valid' }), x)));
  test('DepthwiseConv2D 3×3 dilation 2 same', () => checkNumerically('dw-dilated', [7, 7, 3], (x) => apply(L.depthwiseConv2d({ kernelSize: 3, dilationRate: 2, padding: 'same' }), x)));
  test('AveragePooling2D 2×2 stride 2 same, odd size (padding not counted)', () =>
    checkNumerically('avgpool', [7, 7, 2], (x) => apply(L.averagePooling2d({ poolSize: 2, padding: 'same' }), apply(L.conv2d({ filters: 3, kernelSize: 1 }), x))));
  test('AveragePooling2D 3×3 stride 2 same, odd size', () =>
    checkNumerically('avgpool-3', [9, 9, 2], (x) => apply(L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }), x)));
});
