import * as tf from '../tf.ts';
import '@tensorflow/tfjs';
import { createRng, shuffleInPlace } from '../data/random.ts';
import { buildHead, forward, type HeadOptions } from './model.ts';
import { batchTensor, featureMoments, type FeatureSet } from './train.ts';

export interface LrPoint {
  lr: number;
  /** Smoothed training loss (exponential moving average, bias-corrected). */
  loss: number;
}

export interface LrRangeResult {
  points: LrPoint[];
  /** The rate the curve falls fastest at (the fastai "steep" suggestion). */
  suggested: number;
  /** The rate of the lowest smoothed loss. */
  minimum: number;
}

/**
 * The learning-rate range test (Smith 2015; fastai's lr_find): a fresh head trained with Adam
 * while the rate grows exponentially each batch, recording the smoothed loss until it blows up.
 */
export function lrRangeTest(train: FeatureSet, classes: number, opts: HeadOptions & { batchSize: number; start?: number; end?: number; steps?: number }): LrRangeResult {
  const start = opts.start ?? 1e-6;
  const end = opts.end ?? 1;
  const steps = opts.steps ?? 100;
  const { mean, std } = featureMoments(train);
  const model = buildHead(train.dim, classes, opts);
  const optimizer = tf.train.adam(start);
  const rng = createRng(opts.seed);
  const trainable = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const points: LrPoint[] = [];
  let order: number[] = [];
  let average = 0;
  let best = Infinity;
  try {
    for (let step = 0; step < steps; step++) {
      const lr = start * (end / start) ** (step / (steps - 1));
      // tfjs's Adam reads its rate on every update; the range test moves it each batch.
      (optimizer as unknown as { learningRate: number }).learningRate = lr;
      if (order.length < opts.batchSize) order = shuffleInPlace(Array.from({ length: train.n }, (_, i) => i), rng);
      const batch = order.splice(0, opts.batchSize);
      const loss = tf.tidy(() => {
        const x = batchTensor(train, batch, mean, std);
        const y = tf.oneHot(tf.tensor1d(batch.map((i) => train.y[i]), 'int32'), classes);
        const cost = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, tf.log(tf.clipByValue(forward(model, x), 1e-7, 1))) as tf.Scalar, true, trainable)!;
        return cost.dataSync()[0];
      });
      average = 0.98 * average + 0.02 * loss;
      const smoothed = average / (1 - 0.98 ** (step + 1));
      if (!Number.isFinite(smoothed) || (step > 10 && smoothed > 4 * best)) break;
      best = Math.min(best, smoothed);
      points.push({ lr, loss: smoothed });
    }
  } finally {
    optimizer.dispose();
    model.dispose();
  }
  return { points, ...suggest(points) };
}

function suggest(points: LrPoint[]): { suggested: number; minimum: number } {
  let minimum = points[0]?.lr ?? 1e-3;
  let lowest = Infinity;
  for (const p of points) if (p.loss < lowest) [lowest, minimum] = [p.loss, p.lr];
  // Steepest descent of loss against log(lr), before the minimum, over a small window.
  let suggested = minimum / 10;
  let steepest = 0;
  const upTo = points.findIndex((p) => p.lr === minimum);
  for (let i = 2; i <= upTo; i++) {
    const slope = (points[i].loss - points[i - 2].loss) / Math.log(points[i].lr / points[i - 2].lr);
    if (slope < steepest) [steepest, suggested] = [slope, points[i - 1].lr];
  }
  return { suggested, minimum };
}
