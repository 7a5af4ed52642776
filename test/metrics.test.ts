import assert from 'node:assert/strict';
import { test } from 'node:test';
import seedrandom from 'seedrandom';
import {
  applyTemperature,
  evaluatePredictions,
  fitTemperature,
  logLoss,
  reliability,
  rocAuc,
} from '../src/metrics/index.ts';

const close = (actual: number, expected: number, tolerance = 1e-12, what = '') =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what} expected ${expected}, got ${actual}`);

/** Predicted class gets `top`, the rest share what is left. */
function rowFor(predicted: number, numClasses: number, top: number): number[] {
  return Array.from({ length: numClasses }, (_, j) => (j === predicted ? top : (1 - top) / (numClasses - 1)));
}

test('perfect predictions: accuracy 1, log loss ≈ 0, AUC 1, diagonal confusion matrix', () => {
  const labels = [0, 1, 1, 0, 1];
  const probs = labels.map((y) => (y === 1 ? [0, 1] : [1, 0]));
  const e = evaluatePredictions(labels, probs, ['cats', 'dogs']);
  assert.equal(e.count, 5);
  assert.equal(e.accuracy, 1);
  assert.ok(e.logLoss < 1e-12, `log loss ${e.logLoss}`);
  assert.equal(e.rocAuc, 1);
  assert.deepEqual(e.confusionMatrix, [[2, 0], [0, 3]]);
  assert.equal(e.ece, 0);
  for (const c of e.perClass) assert.deepEqual([c.precision, c.recall, c.f1], [1, 1, 1]);
});

test('known 3-class case: confusion matrix, exact precision/recall/F1, log loss and ECE', () => {
  const labels = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
  const predicted = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1];
  const probs = predicted.map((p) => rowFor(p, 3, 0.8));
  const e = evaluatePredictions(labels, probs, ['a', 'b', 'c']);

  assert.deepEqual(e.confusionMatrix, [
    [2, 1, 1],
    [1, 2, 0],
    [0, 1, 2],
  ]);
  close(e.accuracy, 0.6);
  const expected = [
    { label: 'a', precision: 2 / 3, recall: 1 / 2, f1: 4 / 7, support: 4 },
    { label: 'b', precision: 1 / 2, recall: 2 / 3, f1: 4 / 7, support: 3 },
    { label: 'c', precision: 2 / 3, recall: 2 / 3, f1: 2 / 3, support: 3 },
  ];
  e.perClass.forEach((c, i) => {
    assert.equal(c.label, expected[i].label);
    assert.equal(c.support, expected[i].support);
    close(c.precision, expected[i].precision, 1e-12, `${c.label} precision`);
    close(c.recall, expected[i].recall, 1e-12, `${c.label} recall`);
    close(c.f1, expected[i].f1, 1e-12, `${c.label} f1`);
  });
  // 6 right at p=0.8, 4 wrong where the true class got 0.1.
  close(e.logLoss, (6 * -Math.log(0.8) + 4 * -Math.log(0.1)) / 10);
  // Every confidence is 0.8 → one bin (0.8–0.9) with accuracy 0.6.
  close(e.ece, 0.2);
  const used = e.reliability.filter((b) => b.count > 0);
  assert.equal(used.length, 1);
  assert.deepEqual([used[0].lower, used[0].upper, used[0].count], [0.8, 0.9, 10]);
  close(used[0].accuracy, 0.6);
  close(used[0].confidence, 0.8);
  assert.equal(e.rocAuc, null, 'AUC is for two classes only');
  assert.equal(e.reliability.length, 10);
});

test('precision of a class that is never predicted is 0, not NaN', () => {
  const e = evaluatePredictions([0, 1, 2], [rowFor(0, 3, 0.9), rowFor(1, 3, 0.9), rowFor(1, 3, 0.9)], ['a', 'b', 'c']);
  assert.equal(e.perClass[2].precision, 0);
  assert.equal(e.perClass[2].recall, 0);
  assert.equal(e.perClass[2].f1, 0);
});

test('log loss of a known case, with clipping of zero probabilities', () => {
  close(logLoss([1, 0], [[0.3, 0.7], [0.6, 0.4]]), (-Math.log(0.7) - Math.log(0.6)) / 2);
  close(logLoss([1], [[1, 0]]), -Math.log(1e-15), 1e-9, 'clipped');
});

test('ROC AUC with ties equals the brute-force pairwise count', () => {
  assert.equal(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75);
  assert.equal(rocAuc([0, 1], [0.5, 0.5]), 0.5);
  const random = seedrandom('auc');
  for (let trial = 0; trial < 20; trial++) {
    const n = 50 + trial;
    const labels = Array.from({ length: n }, (_, i) => (i < 3 ? i % 2 : random() < 0.4 ? 1 : 0));
    // Scores on a coarse grid so that ties are common.
    const scores = labels.map((y) => Math.round((random() + y * 0.3) * 8) / 8);
    let wins = 0;
    let pairs = 0;
    for (let i = 0; i < n; i++) {
      if (labels[i] !== 1) continue;
      for (let j = 0; j < n; j++) {
        if (labels[j] !== 0) continue;
        pairs++;
        wins += scores[i] > scores[j] ? 1 : scores[i] === scores[j] ? 0.5 : 0;
      }
    }
    close(rocAuc(labels, scores), wins / pairs, 1e-12, `trial ${trial}`);
  }
  assert.ok(Number.isNaN(rocAuc([1, 1], [0.2, 0.3])), 'undefined with one class only');
});

test('ECE of a known two-bin case', () => {
  const { ece, bins } = reliability([0.95, 0.95, 0.95, 0.95, 0.65, 0.65], [true, true, true, false, true, true]);
  // bin 0.9–1.0: accuracy 0.75 vs 0.95 (weight 4/6); bin 0.6–0.7: 1 vs 0.65 (weight 2/6).
  close(ece, (4 / 6) * 0.2 + (2 / 6) * 0.35);
  assert.equal(bins[9].count, 4);
  assert.equal(bins[6].count, 2);
  assert.equal(reliability([1], [true]).bins[9].count, 1, 'confidence 1.0 lands in the last bin');
});

test('evaluatePredictions rejects mismatched shapes with a clear message', () => {
  assert.throws(() => evaluatePredictions([0, 1], [[1, 0]], ['a', 'b']), /2 labels but 1/);
  assert.throws(() => evaluatePredictions([0, 2], [[1, 0], [0, 1]], ['a', 'b']), /label 2 of sample 1/);
  assert.throws(() => evaluatePredictions([0], [[1, 0, 0]], ['a', 'b']), /expected 2/);
  assert.throws(() => evaluatePredictions([], [], ['a', 'b']), /no samples/);
});

test('applyTemperature is softmax(logits / T)', () => {
  const p = applyTemperature([2, 0, -Infinity], 2);
  close(p[0], Math.exp(1) / (Math.exp(1) + 1));
  close(p[1], 1 / (Math.exp(1) + 1));
  assert.equal(p[2], 0);
  const stable = applyTemperature([1000, 999], 1);
  close(stable[0], 1 / (1 + Math.exp(-1)));
  assert.throws(() => applyTemperature([1, 2], 0), /temperature/);
});

test('fitTemperature recovers the temperature of overconfident logits and lowers log loss', () => {
  const random = seedrandom('temperature');
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const numClasses = 3;
  const trueTemperature = 2.5;
  const labels: number[] = [];
  const overconfident: number[][] = [];
  for (let i = 0; i < 3000; i++) {
    const calibrated = Array.from({ length: numClasses }, () => 1.5 * gaussian());
    // Labels drawn from the calibrated probabilities: then T = 1 is right for `calibrated`.
    const p = applyTemperature(calibrated, 1);
    let u = random();
    let y = 0;
    while (y < numClasses - 1 && (u -= p[y]) > 0) y++;
    labels.push(y);
    overconfident.push(calibrated.map((z) => z * trueTemperature));
  }
  const fitted = fitTemperature(labels, overconfident);
  assert.ok(Math.abs(fitted - trueTemperature) / trueTemperature < 0.1, `fitted T = ${fitted}, expected ≈ ${trueTemperature}`);

  const before = logLoss(labels, overconfident.map((z) => applyTemperature(z, 1)));
  const after = logLoss(labels, overconfident.map((z) => applyTemperature(z, fitted)));
  assert.ok(after < before, `log loss ${before} → ${after}`);

  // log(probabilities) with an underflowed zero must not break the fit.
  const withZero = [...overconfident.slice(0, 50).map((z) => Array.from(applyTemperature(z, 1), Math.log)), [0, -Infinity, -Infinity]];
  const t = fitTemperature([...labels.slice(0, 50), 1], withZero);
  assert.ok(Number.isFinite(t) && t > 0, `T = ${t}`);
});
