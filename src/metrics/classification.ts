/**
 * Classification metrics computed from predicted probabilities: accuracy, log loss, per-class
 * precision/recall/F1 and the confusion matrix. Pure functions over plain arrays.
 */
import { reliability, type ReliabilityBin } from './calibration.ts';
import { rocAuc } from './roc.ts';

export interface ClassMetrics {
  label: string;
  /** TP / (TP + FP); 0 when the class was never predicted (sklearn's `zero_division=0`). */
  precision: number;
  /** TP / (TP + FN); 0 when the class has no samples. */
  recall: number;
  /** Harmonic mean of precision and recall; 0 when both are 0. */
  f1: number;
  /** Number of samples whose true class is this one. */
  support: number;
}

export interface Evaluation {
  count: number;
  accuracy: number;
  /** Mean natural-log loss; probabilities clipped to [1e-15, 1 - 1e-15]. */
  logLoss: number;
  perClass: ClassMetrics[];
  /** confusionMatrix[true][predicted] = count. */
  confusionMatrix: number[][];
  /** Two classes only (positive = class index 1), and both present among the labels; else null. */
  rocAuc: number | null;
  /** Expected calibration error over `reliability`. */
  ece: number;
  /** 10 equal-width bins on the top-1 confidence. */
  reliability: ReliabilityBin[];
}

export const PROBABILITY_EPSILON = 1e-15;

/** Index of the largest value; the lowest index wins a tie, so results never depend on luck. */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
  return best;
}

function checkInputs(labels: ArrayLike<number>, rows: ArrayLike<ArrayLike<number>>, numClasses: number, what: string): void {
  if (numClasses < 1) throw new RangeError(`${what}: at least one class is needed`);
  if (labels.length !== rows.length) {
    throw new RangeError(`${what}: ${labels.length} labels but ${rows.length} prediction rows`);
  }
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) {
      throw new RangeError(`${what}: label ${y} of sample ${i} is not a class index in [0, ${numClasses})`);
    }
    if (rows[i].length !== numClasses) {
      throw new RangeError(`${what}: sample ${i} has ${rows[i].length} values, expected ${numClasses} (one per class)`);
    }
  }
}

export function confusionMatrix(labels: ArrayLike<number>, predicted: ArrayLike<number>, numClasses: number): number[][] {
  const matrix = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < labels.length; i++) matrix[labels[i]][predicted[i]]++;
  return matrix;
}

export function perClassMetrics(matrix: number[][], classes: string[]): ClassMetrics[] {
  return classes.map((label, c) => {
    const truePositives = matrix[c][c];
    const support = matrix[c].reduce((a, b) => a + b, 0);
    const predictedCount = matrix.reduce((sum, row) => sum + row[c], 0);
    const precision = predictedCount === 0 ? 0 : truePositives / predictedCount;
    const recall = support === 0 ? 0 : truePositives / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { label, precision, recall, f1, support };
  });
}

export function logLoss(labels: ArrayLike<number>, probabilities: ArrayLike<ArrayLike<number>>): number {
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = Math.min(Math.max(probabilities[i][labels[i]], PROBABILITY_EPSILON), 1 - PROBABILITY_EPSILON);
    total -= Math.log(p);
  }
  return total / labels.length;
}

/**
 * Everything `finetune evaluate` reports, from true class indices and one probability row per
 * sample. Throws RangeError when shapes disagree (a programming error, not a user one).
 */
export function evaluatePredictions(
  labels: ArrayLike<number>,
  probabilities: ArrayLike<number>[],
  classes: string[],
): Evaluation {
  checkInputs(labels, probabilities, classes.length, 'evaluatePredictions');
  if (labels.length === 0) throw new RangeError('evaluatePredictions: no samples to evaluate');

  const count = labels.length;
  const predicted = Array.from(probabilities, argmax);
  const confidences = probabilities.map((row, i) => row[predicted[i]]);
  const correct = predicted.map((p, i) => p === labels[i]);
  const matrix = confusionMatrix(labels, predicted, classes.length);
  const calibration = reliability(confidences, correct);

  let auc: number | null = null;
  if (classes.length === 2) {
    const value = rocAuc(labels, probabilities.map((row) => row[1]));
    auc = Number.isNaN(value) ? null : value;
  }

  return {
    count,
    accuracy: correct.filter(Boolean).length / count,
    logLoss: logLoss(labels, probabilities),
    perClass: perClassMetrics(matrix, classes),
    confusionMatrix: matrix,
    rocAuc: auc,
    ece: calibration.ece,
    reliability: calibration.bins,
  };
}
