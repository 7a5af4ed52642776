import * as tf from '../tf.ts';
import { buildHead } from './model.ts';
import { evaluateHead, trainHead, type EpochRecord, type FeatureSet, type HeadTrainingOptions, type HeadTrainingResult } from './train.ts';

/**
 * K heads trained with seeds seed, seed+1, … (each its own initialisation, shuffles and dropout
 * masks), merged into one ordinary head whose logits are the members' mean. The bundle, predict
 * and calibration see a single Dense → ReLU → Dense head, so nothing downstream knows.
 */
export async function trainEnsemble(train: FeatureSet, valid: FeatureSet | undefined, classes: number, opts: HeadTrainingOptions, members: number): Promise<HeadTrainingResult> {
  if (members <= 1) return trainHead(train, valid, classes, opts);
  const heads: HeadTrainingResult[] = [];
  try {
    for (let m = 0; m < members; m++) {
      const onEpoch = opts.onEpoch && ((record: EpochRecord, total: number) => opts.onEpoch!({ ...record, epoch: m * opts.epochs + record.epoch, member: m + 1 }, members * opts.epochs));
      heads.push(await trainHead(train, valid, classes, { ...opts, seed: opts.seed + m, onEpoch }));
    }
    const model = mergeHeads(heads.map((h) => h.model), train.dim, classes, opts);
    const raw = { mean: new Float32Array(train.dim), std: new Float32Array(train.dim).fill(1) };
    const fit = evaluateHead(model, train, raw.mean, raw.std);
    const held = valid && valid.n > 0 ? evaluateHead(model, valid, raw.mean, raw.std) : undefined;
    const final: EpochRecord = { epoch: 0, loss: fit.loss, accuracy: fit.accuracy, ...(held && { valLoss: held.loss, valAccuracy: held.accuracy }) };
    return {
      model,
      history: heads.flatMap((h, m) => h.history.map((r) => ({ ...r, member: m + 1 }))),
      bestEpoch: heads[0].bestEpoch,
      bestLoss: held?.loss ?? fit.loss,
      members: heads.map((h) => ({ bestEpoch: h.bestEpoch, bestLoss: h.bestLoss })),
      final,
    };
  } finally {
    for (const h of heads) h.model.dispose();
  }
}

/**
 * Mean of the members' logits as one head: hidden layers side by side (K × hidden units), output
 * kernels stacked and divided by K, output biases averaged. A linear head averages its weights.
 */
export function mergeHeads(heads: tf.Sequential[], inputDim: number, classes: number, opts: { hidden: number; dropout: number; seed: number }): tf.Sequential {
  const k = heads.length;
  const weights = heads.map((h) => h.getWeights());
  const merged = buildHead(inputDim, classes, { ...opts, hidden: opts.hidden * k });
  const values = tf.tidy(() => {
    const mean = (i: number) => tf.div(tf.addN(weights.map((w) => w[i])), k);
    if (opts.hidden === 0) return [mean(0), mean(1)];
    return [tf.concat(weights.map((w) => w[0]), 1), tf.concat(weights.map((w) => w[1]), 0), tf.div(tf.concat(weights.map((w) => w[2]), 0), k), mean(3)];
  });
  merged.setWeights(values);
  tf.dispose(values);
  return merged;
}
