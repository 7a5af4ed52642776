import { InterruptedError } from '../errors.ts';
import type { OnnxTrainer } from '../engines/onnx-trainer.ts';
import { createRng, shuffleInPlace } from '../data/random.ts';
import { noProgress, type OnProgress } from '../progress.ts';
import { layerRateScales, oneCycleRate, warmupSteps } from './schedule.ts';

/**
 * Where the loop's images come from: preprocessed float NHWC batches at the network's input
 * size. Kept this small so the decoded-image cache and its augmentations can stand behind it.
 */
export interface ImageSource {
  readonly count: number;
  readonly labels: ArrayLike<number>;
  /** The images at `indices`, in that order; `epoch` ≥ 0 seeds augmentation, −1 means none. */
  batch(indices: number[], epoch: number): Promise<Float32Array>;
}

export interface FineTuneLoopOptions {
  epochs: number;
  batchSize: number;
  /** Top learning rate (the head's); earlier layers get less (discriminative rates). */
  lr: number;
  seed: number;
  /** Learning-rate ratio of the earliest unfrozen layer to the head. */
  spread?: number;
  /** Epochs without a lower validation loss before stopping, counted once the warm-up is over. */
  patience?: number;
  signal?: AbortSignal;
  onProgress?: OnProgress;
}

export interface Evaluation {
  loss: number;
  accuracy: number;
}

export interface FineTuneResult {
  epochs: number;
  /** 1-based epoch whose weights were kept; 0 = none improved on the start. */
  bestEpoch: number;
  before: Evaluation | null;
  after: Evaluation | null;
  imagesPerSecond: number;
  trainLoss: number[];
  /** Validation after each epoch (empty without a validation split). */
  valHistory: Evaluation[];
}

export async function evaluateSource(trainer: OnnxTrainer, source: ImageSource, batchSize: number, signal?: AbortSignal): Promise<Evaluation> {
  const k = trainer.classes;
  let loss = 0;
  let correct = 0;
  for (let start = 0; start < source.count; start += batchSize) {
    if (signal?.aborted) throw new InterruptedError();
    const indices = Array.from({ length: Math.min(batchSize, source.count - start) }, (_, i) => start + i);
    const logits = await trainer.logits(await source.batch(indices, -1), indices.length);
    indices.forEach((index, row) => {
      const z = logits.subarray(row * k, (row + 1) * k);
      const max = Math.max(...z);
      let sum = 0;
      for (const v of z) sum += Math.exp(v - max);
      const label = source.labels[index];
      loss += -(z[label] - max - Math.log(sum));
      if (z.indexOf(max) === label) correct++;
    });
  }
  return { loss: loss / source.count, accuracy: correct / source.count };
}

/**
 * fastai-style fine-tuning of the unfrozen layers and the head together: one-cycle schedule,
 * discriminative learning rates, AdamW; after each epoch the validation loss decides whether
 * these weights are the best so far, and the best are restored at the end.
 */
export async function fineTuneLoop(trainer: OnnxTrainer, train: ImageSource, val: ImageSource | null, opts: FineTuneLoopOptions): Promise<FineTuneResult> {
  const onProgress = opts.onProgress ?? noProgress;
  const rng = createRng(opts.seed);
  const scales = layerRateScales(trainer.groups, opts.spread ?? 0.1);
  const stepsPerEpoch = Math.ceil(train.count / opts.batchSize);
  const totalSteps = stepsPerEpoch * opts.epochs;
  const patience = opts.patience ?? 3;
  const before = val ? await evaluateSource(trainer, val, opts.batchSize, opts.signal) : null;
  let best = before?.loss ?? Infinity;
  let bestEpoch = 0;
  let bestWeights = trainer.snapshot();
  let after = before;
  let sinceBest = 0;
  let step = 0;
  let trainedImages = 0;
  let trainingMs = 0;
  const trainLoss: number[] = [];
  const valHistory: Evaluation[] = [];
  let epoch = 0;
  onProgress({ status: 'initiate', task: 'fine-tune', message: `fine-tuning ${trainer.groups - 1} layers and the head`, total: totalSteps, unit: 'steps' });
  for (epoch = 0; epoch < opts.epochs; epoch++) {
    const order = shuffleInPlace(Array.from({ length: train.count }, (_, i) => i), rng);
    let lossSum = 0;
    for (let start = 0; start < train.count; start += opts.batchSize) {
      if (opts.signal?.aborted) throw new InterruptedError();
      const indices = order.slice(start, start + opts.batchSize);
      const images = await train.batch(indices, epoch);
      const labels = indices.map((i) => train.labels[i]);
      const top = oneCycleRate(step, totalSteps, opts.lr);
      const t0 = performance.now();
      const { loss } = await trainer.step(images, labels, indices.length, scales.map((s) => s * top));
      trainingMs += performance.now() - t0;
      trainedImages += indices.length;
      lossSum += loss * indices.length;
      step++;
      onProgress({ status: 'progress', task: 'fine-tune', current: step, total: totalSteps, unit: 'steps', info: { epoch: epoch + 1, loss } });
    }
    trainLoss.push(lossSum / train.count);
    if (!val) continue;
    const evaluation = await evaluateSource(trainer, val, opts.batchSize, opts.signal);
    valHistory.push(evaluation);
    if (evaluation.loss < best) {
      best = evaluation.loss;
      bestEpoch = epoch + 1;
      bestWeights = trainer.snapshot();
      after = evaluation;
      sinceBest = 0;
    } else if (step > warmupSteps(totalSteps) && ++sinceBest >= patience) {
      // Not during the warm-up: the validation loss rises there by design while the rate climbs
      // (eurosat, 12 epochs: the first three epochs were all worse than the frozen start).
      epoch++;
      break;
    }
  }
  if (val) trainer.restore(bestWeights);
  else bestEpoch = epoch;
  onProgress({ status: 'done', task: 'fine-tune', message: val ? `best validation loss at epoch ${bestEpoch}` : `${epoch} epochs` });
  return { epochs: epoch, bestEpoch, before, after, imagesPerSecond: trainingMs > 0 ? (trainedImages * 1000) / trainingMs : 0, trainLoss, valHistory };
}
