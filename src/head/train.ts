import * as tf from '../tf.ts';
// Training needs tfjs's gradient registry, which only the full bundle loads (≈ 250 ms that
// predict and evaluate do not pay).
import '@tensorflow/tfjs';
import { createRng, shuffleInPlace, type Rng } from '../data/random.ts';
import { InterruptedError } from '../errors.ts';
import { buildHead, foldStandardization, forward, type HeadOptions } from './model.ts';

/** Features in rows: x holds n × dim floats; y the class index of each row. */
export interface FeatureSet {
  x: Float32Array;
  y: Int32Array;
  n: number;
  dim: number;
}

export interface EpochRecord {
  epoch: number;
  loss: number;
  accuracy: number;
  valLoss?: number;
  valAccuracy?: number;
  /** Which head of an ensemble (1-based); absent for a single head. */
  member?: number;
}

export interface HeadTrainingOptions extends HeadOptions {
  epochs: number;
  batchSize: number;
  lr: number;
  /** Epochs without a better validation loss before stopping; the best weights are restored. */
  patience: number;
  /** Per-class loss weights (Keras class_weight), default all 1. */
  classWeights?: number[];
  onEpoch?: (record: EpochRecord, total: number) => void;
  signal?: AbortSignal;
}

export interface HeadTrainingResult {
  model: tf.Sequential;
  history: EpochRecord[];
  /** Epoch (1-based) whose weights were kept. */
  bestEpoch: number;
  /** Its monitored loss (validation loss, or training loss without a validation set). */
  bestLoss: number;
  /** An ensemble's heads: each one's kept epoch and monitored loss. */
  members?: { bestEpoch: number; bestLoss: number }[];
  /** Metrics of the returned model when no epoch record holds them (a merged ensemble). */
  final?: EpochRecord;
}

/** tfjs clips the picked probability to [EPS, 1] before the log (the onnx head matches it). */
export const EPS = 1e-7;

/** Per-feature mean and standard deviation of the training rows (σ = 1 where a feature is constant). */
export function featureMoments(data: FeatureSet): { mean: Float32Array; std: Float32Array } {
  const { x, n, dim } = data;
  const mean = new Float64Array(dim);
  const sq = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    const row = i * dim;
    for (let j = 0; j < dim; j++) {
      const v = x[row + j];
      mean[j] += v;
      sq[j] += v * v;
    }
  }
  const std = new Float32Array(dim);
  const m32 = new Float32Array(dim);
  for (let j = 0; j < dim; j++) {
    m32[j] = mean[j] / n;
    const variance = sq[j] / n - m32[j] * m32[j];
    std[j] = variance > 1e-12 ? Math.sqrt(variance) : 1;
  }
  return { mean: m32, std };
}

/** Rows `indices` of `data`, standardised, written into `out` from element `offset` on. */
export function standardizeRows(data: FeatureSet, indices: ArrayLike<number>, mean: Float32Array, std: Float32Array, out: Float32Array, offset = 0): void {
  const { x, dim } = data;
  for (let b = 0; b < indices.length; b++) {
    const src = indices[b] * dim;
    const dst = offset + b * dim;
    for (let j = 0; j < dim; j++) out[dst + j] = (x[src + j] - mean[j]) / std[j];
  }
}

/** Rows `indices` of `data`, standardised, as one batch tensor (the dataset never sits on the backend whole). */
export function batchTensor(data: FeatureSet, indices: ArrayLike<number>, mean: Float32Array, std: Float32Array): tf.Tensor2D {
  const out = new Float32Array(indices.length * data.dim);
  standardizeRows(data, indices, mean, std, out);
  return tf.tensor2d(out, [indices.length, data.dim]);
}

function weightedLoss(probs: tf.Tensor2D, labels: tf.Tensor1D, classes: number, weights: tf.Tensor1D): tf.Scalar {
  const oneHot = tf.oneHot(labels, classes);
  const picked = tf.sum(tf.mul(oneHot, probs), 1);
  const sampleWeights = tf.gather(weights, labels);
  return tf.div(tf.sum(tf.mul(tf.neg(tf.log(tf.clipByValue(picked, EPS, 1))), sampleWeights)), tf.sum(sampleWeights)) as tf.Scalar;
}

function dropoutMask(rows: number, units: number, rate: number, rng: Rng): tf.Tensor2D {
  const keep = 1 - rate;
  const mask = new Float32Array(rows * units);
  for (let i = 0; i < mask.length; i++) mask[i] = rng() < keep ? 1 / keep : 0;
  return tf.tensor2d(mask, [rows, units]);
}

/** Loss and accuracy of the head (dropout off) over a set, in batches. */
export function evaluateHead(model: tf.Sequential, data: FeatureSet, mean: Float32Array, std: Float32Array, batchSize = 256): { loss: number; accuracy: number } {
  let loss = 0;
  let correct = 0;
  for (let start = 0; start < data.n; start += batchSize) {
    const indices = Array.from({ length: Math.min(batchSize, data.n - start) }, (_, i) => start + i);
    const [l, c] = tf.tidy(() => {
      const probs = forward(model, batchTensor(data, indices, mean, std));
      const labels = tf.tensor1d(indices.map((i) => data.y[i]), 'int32');
      const picked = tf.sum(tf.mul(tf.oneHot(labels, probs.shape[1]), probs), 1);
      const sumLoss = tf.sum(tf.neg(tf.log(tf.clipByValue(picked, EPS, 1))));
      const hits = tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), labels), 'float32'));
      return [sumLoss.dataSync()[0], hits.dataSync()[0]];
    });
    loss += l;
    correct += c;
  }
  return { loss: loss / Math.max(1, data.n), accuracy: correct / Math.max(1, data.n) };
}

/**
 * Adam on standardised features, seeded shuffles and dropout masks, early stopping on the
 * validation loss (the training loss when there is no validation set) with the best
 * weights restored. The returned head takes raw features (standardisation folded in).
 */
export async function trainHead(train: FeatureSet, valid: FeatureSet | undefined, classes: number, opts: HeadTrainingOptions): Promise<HeadTrainingResult> {
  const { mean, std } = featureMoments(train);
  const model = buildHead(train.dim, classes, opts);
  try {
    const fitted = await fitModel(model, train, valid, classes, { ...opts, mean, std });
    foldStandardization(model, mean, std);
    return fitted;
  } catch (err) {
    model.dispose();
    throw err;
  }
}

export interface FitOptions extends Omit<HeadTrainingOptions, 'hidden'> {
  /** Standardisation applied to each batch (identity when absent). */
  mean?: Float32Array;
  std?: Float32Array;
  /** First epoch number reported (a second training stage continues the count). */
  firstEpoch?: number;
}

/**
 * The training loop shared by the head and by fine-tuning: any Sequential model whose last
 * layer is a softmax, trained in place; the best epoch's weights are restored at the end.
 */
export async function fitModel(model: tf.Sequential, train: FeatureSet, valid: FeatureSet | undefined, classes: number, opts: FitOptions): Promise<HeadTrainingResult> {
  const rng = createRng(opts.seed);
  const mean = opts.mean ?? new Float32Array(train.dim);
  const std = opts.std ?? new Float32Array(train.dim).fill(1);
  const optimizer = tf.train.adam(opts.lr);
  const weights = tf.tensor1d(opts.classWeights ?? new Array(classes).fill(1));
  const trainable = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const history: EpochRecord[] = [];
  const first = opts.firstEpoch ?? 1;
  let best = { loss: Infinity, epoch: 0, values: model.getWeights().map((w) => w.dataSync().slice()) };
  let sinceBest = 0;
  const order = Array.from({ length: train.n }, (_, i) => i);
  try {
    for (let epoch = first; epoch < first + opts.epochs; epoch++) {
      shuffleInPlace(order, rng);
      let lossSum = 0;
      let correct = 0;
      for (let start = 0; start < train.n; start += opts.batchSize) {
        if (opts.signal?.aborted) throw new InterruptedError();
        const indices = order.slice(start, start + opts.batchSize);
        const [l, c] = tf.tidy(() => {
          const xb = batchTensor(train, indices, mean, std);
          const yb = tf.tensor1d(indices.map((i) => train.y[i]), 'int32');
          let hits: tf.Scalar | undefined;
          const cost = optimizer.minimize(
            () => {
              const probs = forward(model, xb, opts.dropout > 0 ? (rows, units) => dropoutMask(rows, units, opts.dropout, rng) : undefined);
              // Tensors made inside minimize are freed with its gradients; keep the hit count.
              hits = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), yb), 'float32'))) as tf.Scalar;
              return weightedLoss(probs, yb, classes, weights);
            },
            true,
            trainable,
          )!;
          const result = [cost.dataSync()[0] * indices.length, hits!.dataSync()[0]];
          hits!.dispose();
          return result;
        });
        lossSum += l;
        correct += c;
        // Let a pending SIGINT be seen between batches.
        await new Promise((r) => setImmediate(r));
      }
      const record: EpochRecord = { epoch, loss: lossSum / train.n, accuracy: correct / train.n };
      if (valid && valid.n > 0) {
        const v = evaluateHead(model, valid, mean, std);
        record.valLoss = v.loss;
        record.valAccuracy = v.accuracy;
      }
      history.push(record);
      opts.onEpoch?.(record, first + opts.epochs - 1);
      const monitored = record.valLoss ?? record.loss;
      if (monitored < best.loss) {
        best = { loss: monitored, epoch, values: model.getWeights().map((w) => w.dataSync().slice()) };
        sinceBest = 0;
      } else if (++sinceBest >= opts.patience) {
        break;
      }
    }
    const restored = model.getWeights().map((w, i) => tf.tensor(best.values[i], w.shape));
    model.setWeights(restored);
    tf.dispose(restored);
    return { model, history, bestEpoch: best.epoch, bestLoss: best.loss };
  } finally {
    optimizer.dispose();
    weights.dispose();
  }
}
