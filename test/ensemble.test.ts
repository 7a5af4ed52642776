import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { buildHead } from '../src/head/model.ts';
import { mergeHeads } from '../src/head/ensemble.ts';

/** Logits of a softmax head: log-probabilities up to a constant per row. */
function logits(model: tf.Sequential, x: tf.Tensor2D): number[][] {
  return tf.tidy(() => tf.log(model.predict(x) as tf.Tensor2D).arraySync() as number[][]);
}

function centred(rows: number[][]): number[][] {
  return rows.map((r) => r.map((v) => v - r.reduce((a, b) => a + b, 0) / r.length));
}

for (const hidden of [0, 8]) {
  test(`merging ${hidden ? 'hidden-layer' : 'linear'} heads gives the mean of their logits`, () => {
    const before = tf.memory().numTensors;
    const heads = [1, 2, 3].map((seed) => buildHead(5, 4, { hidden, dropout: 0.5, seed }));
    // Non-zero biases, so that averaging them is tested too.
    for (const h of heads) {
      const biased = h.getWeights().map((w) => (w.rank === 1 ? tf.randomNormal(w.shape, 0, 1, 'float32', 9) : w.clone()));
      h.setWeights(biased);
      tf.dispose(biased);
    }
    const merged = mergeHeads(heads, 5, 4, { hidden, dropout: 0.5, seed: 1 });
    const x = tf.randomNormal([6, 5], 0, 1, 'float32', 3) as tf.Tensor2D;
    const each = heads.map((h) => centred(logits(h, x)));
    const expected = each[0].map((row, i) => row.map((_, j) => (each[0][i][j] + each[1][i][j] + each[2][i][j]) / 3));
    const actual = centred(logits(merged, x));
    for (let i = 0; i < 6; i++) for (let j = 0; j < 4; j++) assert.ok(Math.abs(actual[i][j] - expected[i][j]) < 1e-4, `row ${i} class ${j}: ${actual[i][j]} vs ${expected[i][j]}`);
    x.dispose();
    merged.dispose();
    for (const h of heads) h.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
}
