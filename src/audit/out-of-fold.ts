import * as tf from '../tf.ts';
import { InterruptedError } from '../errors.ts';
import { trainHead, type FeatureSet, type HeadTrainingOptions } from '../head/train.ts';
import { trainHeadsOnnx, type HeadEngine } from '../head/train-onnx.ts';
import { stratifiedFolds } from './folds.ts';

export interface OutOfFoldOptions extends Omit<HeadTrainingOptions, 'onEpoch'> {
  folds: number;
  /** Where the heads train: train's engine choice (onnxruntime where it loads). */
  engine: HeadEngine;
  threads?: number;
  /** Called after each fold's head has scored its held-out rows. */
  onFold?: (fold: number, folds: number) => void;
}

function take(set: FeatureSet, rows: number[]): FeatureSet {
  const x = new Float32Array(rows.length * set.dim);
  const y = new Int32Array(rows.length);
  rows.forEach((r, i) => {
    x.set(set.x.subarray(r * set.dim, (r + 1) * set.dim), i * set.dim);
    y[i] = set.y[r];
  });
  return { x, y, n: rows.length, dim: set.dim };
}

/**
 * Predicted probabilities of every row by a head that never saw it: K heads, each trained with
 * train's recipe (trainHead) on the other K−1 folds. The rows are n × classes, in input order.
 * Confident learning ranks label errors on these; in-sample probabilities would have memorised them.
 */
export async function outOfFoldProbabilities(set: FeatureSet, classes: number, opts: OutOfFoldOptions): Promise<Float32Array> {
  const folds = stratifiedFolds(set.y, opts.folds, opts.seed);
  const out = new Float32Array(set.n * classes);
  for (let fold = 0; fold < opts.folds; fold++) {
    if (opts.signal?.aborted) throw new InterruptedError();
    const held: number[] = [];
    const rest: number[] = [];
    for (let i = 0; i < set.n; i++) (folds[i] === fold ? held : rest).push(i);
    if (held.length === 0) continue;
    const recipe = { ...opts, seed: opts.seed + fold };
    const { model } = opts.engine === 'onnx' ? await trainHeadsOnnx(take(set, rest), undefined, classes, recipe) : await trainHead(take(set, rest), undefined, classes, recipe);
    try {
      const heldSet = take(set, held);
      const probs = tf.tidy(() => (model.predict(tf.tensor2d(heldSet.x, [heldSet.n, heldSet.dim])) as tf.Tensor2D).dataSync());
      held.forEach((row, i) => out.set(probs.subarray(i * classes, (i + 1) * classes), row * classes));
    } finally {
      model.dispose();
    }
    opts.onFold?.(fold + 1, opts.folds);
  }
  return out;
}
