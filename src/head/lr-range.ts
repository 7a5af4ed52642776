import * as tf from '../tf.ts';
import '@tensorflow/tfjs';
import { createRng, shuffleInPlace } from '../data/random.ts';
import { ADAM } from '../engines/onnx-head-graph.ts';
import { buildHead, forward, type HeadOptions } from './model.ts';
import type { HeadEngine } from './train-onnx.ts';
import { suggestLearningRate, type LrPoint } from './lr-suggest.ts';
import { batchTensor, EPS, featureMoments, standardizeRows, type FeatureSet } from './train.ts';

export interface LrRangeResult {
  points: LrPoint[];
  /** The rate the curve falls fastest at (the fastai "steep" suggestion). */
  suggested: number;
  /** The rate of the lowest smoothed loss. */
  minimum: number;
}

export type LrRangeOptions = HeadOptions & { batchSize: number; start?: number; end?: number; steps?: number; engine?: HeadEngine };

/**
 * The learning-rate range test (Smith 2015; fastai's lr_find): a fresh head trained with Adam
 * while the rate grows exponentially each batch, recording the smoothed loss until it blows up.
 * On the onnx engine the head trains as trainHeadsOnnx trains it; tfjs otherwise.
 */
export async function lrRangeTest(train: FeatureSet, classes: number, opts: LrRangeOptions): Promise<LrRangeResult> {
  const start = opts.start ?? 1e-6;
  const end = opts.end ?? 1;
  const steps = opts.steps ?? 100;
  const { mean, std } = featureMoments(train);
  const stepper = opts.engine === 'onnx' ? await onnxStepper(train, classes, opts, mean, std) : tfjsStepper(train, classes, opts, mean, std);
  const rng = createRng(opts.seed);
  const points: LrPoint[] = [];
  let order: number[] = [];
  let average = 0;
  let best = Infinity;
  try {
    for (let step = 0; step < steps; step++) {
      const lr = start * (end / start) ** (step / (steps - 1));
      if (order.length < opts.batchSize) order = shuffleInPlace(Array.from({ length: train.n }, (_, i) => i), rng);
      const loss = await stepper.step(order.splice(0, opts.batchSize), lr);
      average = 0.98 * average + 0.02 * loss;
      const smoothed = average / (1 - 0.98 ** (step + 1));
      if (!Number.isFinite(smoothed) || (step > 10 && smoothed > 4 * best)) break;
      best = Math.min(best, smoothed);
      points.push({ lr, loss: smoothed });
    }
  } finally {
    await stepper.dispose();
  }
  return { points, ...suggestLearningRate(points) };
}

/** One Adam step on a batch at a rate; resolves to the batch's mean loss before the update. */
interface Stepper {
  step(batch: number[], lr: number): Promise<number>;
  dispose(): Promise<void> | void;
}

function tfjsStepper(train: FeatureSet, classes: number, opts: HeadOptions, mean: Float32Array, std: Float32Array): Stepper {
  const model = buildHead(train.dim, classes, opts);
  const optimizer = tf.train.adam(1e-3);
  const trainable = model.trainableWeights.map((w) => w.read() as tf.Variable);
  return {
    async step(batch, lr) {
      // tfjs's Adam reads its rate on every update; the range test moves it each batch.
      (optimizer as unknown as { learningRate: number }).learningRate = lr;
      return tf.tidy(() => {
        const x = batchTensor(train, batch, mean, std);
        const y = tf.oneHot(tf.tensor1d(batch.map((i) => train.y[i]), 'int32'), classes);
        const cost = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, tf.log(tf.clipByValue(forward(model, x), EPS, 1))) as tf.Scalar, true, trainable)!;
        return cost.dataSync()[0];
      });
    },
    dispose() {
      optimizer.dispose();
      model.dispose();
    },
  };
}

async function onnxStepper(train: FeatureSet, classes: number, opts: HeadOptions & { batchSize: number }, mean: Float32Array, std: Float32Array): Promise<Stepper> {
  const model = buildHead(train.dim, classes, opts);
  const initial = model.getWeights().map((w) => w.dataSync() as Float32Array);
  model.dispose();
  const { createOnnxHeadTrainer } = await import('../engines/onnx-head.ts');
  // No dropout in the range test (tfjs's forward without masks): the mask input is all ones.
  const useMask = opts.hidden > 0 && opts.dropout > 0;
  const trainer = await createOnnxHeadTrainer({ heads: 1, dim: train.dim, hidden: opts.hidden, classes, dropout: useMask }, initial);
  const rows = Math.min(opts.batchSize, train.n);
  const x = new Float32Array(rows * train.dim);
  const onehot = new Float32Array(rows * classes);
  const ones = useMask ? new Float32Array(rows * opts.hidden).fill(1) : undefined;
  let t = 0;
  return {
    async step(batch, lr) {
      const b = batch.length;
      standardizeRows(train, batch, mean, std, x);
      onehot.fill(0);
      batch.forEach((row, i) => (onehot[i * classes + train.y[row]] = 1));
      t++;
      const correction = Math.sqrt(1 - ADAM.beta2 ** t);
      const probs = await trainer.step({
          rows: b,
          x: x.subarray(0, b * train.dim),
          onehot: onehot.subarray(0, b * classes),
          rowWeight: new Float32Array(b).fill(1 / b),
          mask: ones?.subarray(0, b * opts.hidden),
          stepSize: Float32Array.of((lr * correction) / (1 - ADAM.beta1 ** t)),
          epsilonHat: ADAM.epsilon * correction,
      });
      let loss = 0;
      batch.forEach((row, i) => (loss += -Math.log(Math.min(1, Math.max(EPS, probs[i * classes + train.y[row]])))));
      return loss / b;
    },
    dispose: () => trainer.dispose(),
  };
}
