import * as tf from '../tf.ts';
import { createRng, shuffleInPlace, type Rng } from '../data/random.ts';
import type { EngineChoice } from '../engines/index.ts';
import { ADAM } from '../engines/onnx-head-graph.ts';
import type { OnnxHeadTrainer } from '../engines/onnx-head.ts';
import { InterruptedError } from '../errors.ts';
import { mergeHeads } from './ensemble.ts';
import { buildHead, foldStandardization } from './model.ts';
import { EPS, featureMoments, standardizeRows, type EpochRecord, type FeatureSet, type HeadTrainingOptions, type HeadTrainingResult } from './train.ts';

export type HeadEngine = 'onnx' | 'tfjs';

/** `--engine auto` trains the head on onnxruntime wherever onnxruntime-node loads. */
export async function resolveHeadEngine(choice: EngineChoice | undefined): Promise<HeadEngine> {
  if (choice === 'tfjs') return 'tfjs';
  if (choice === 'onnx') return 'onnx';
  try {
    await import('../engines/onnx-head.ts');
    return 'onnx';
  } catch {
    return 'tfjs';
  }
}

const { beta1: ADAM_BETA1, beta2: ADAM_BETA2, epsilon: ADAM_EPSILON } = ADAM;
/** Rows per forward pass when scoring a whole set. */
const EVAL_ROWS = 1024;

interface Member {
  rng: Rng;
  order: number[];
  active: boolean;
  sinceBest: number;
  best: { loss: number; epoch: number; values: Float32Array[] };
  history: EpochRecord[];
}

/**
 * The same recipe as trainEnsemble (each head its own seed for initialisation, shuffles and
 * dropout masks; Adam; early stopping per head with its best weights restored; K heads
 * merged into one), with all K heads trained at once by one onnxruntime graph per batch.
 * The initial weights come from tfjs's own seeded initialisers and the random streams are
 * drawn in tfjs's order, so both engines run the same experiment up to float rounding.
 * The result is the same tfjs head either way.
 */
export async function trainHeadsOnnx(train: FeatureSet, valid: FeatureSet | undefined, classes: number, opts: HeadTrainingOptions & { threads?: number }, members = 1): Promise<HeadTrainingResult> {
  const k = Math.max(1, members);
  const { mean, std } = featureMoments(train);
  const dim = train.dim;
  const models = Array.from({ length: k }, (_, m) => buildHead(dim, classes, { ...opts, seed: opts.seed + m }));
  let trainer: OnnxHeadTrainer | undefined;
  try {
    const perHead = models.map((model) => model.getWeights().map((w) => w.dataSync() as Float32Array));
    const stacked = perHead[0].map((_, i) => concat(perHead.map((weights) => weights[i])));
    const hidden = opts.hidden;
    const useDropout = hidden > 0 && opts.dropout > 0;
    const { createOnnxHeadTrainer } = await import('../engines/onnx-head.ts');
    trainer = await createOnnxHeadTrainer({ heads: k, dim, hidden, classes, dropout: useDropout }, stacked, { threads: opts.threads });
    const sizes = stacked.map((a) => a.length / k);
    const slice = (params: readonly Float32Array[], m: number) => params.map((a, i) => a.slice(m * sizes[i], (m + 1) * sizes[i]));

    const state: Member[] = models.map((_, m) => ({
      rng: createRng(opts.seed + m),
      order: Array.from({ length: train.n }, (_, i) => i),
      active: true,
      sinceBest: 0,
      best: { loss: Infinity, epoch: 0, values: slice(stacked, m) },
      history: [],
    }));
    const classWeight = Float32Array.from(opts.classWeights ?? new Array(classes).fill(1));
    const batchMax = Math.min(opts.batchSize, train.n);
    const x = new Float32Array(k * batchMax * dim);
    const onehot = new Float32Array(k * batchMax * classes);
    const rowWeight = new Float32Array(k * batchMax);
    const mask = useDropout ? new Float32Array(k * batchMax * hidden) : undefined;
    const stepSize = new Float32Array(k);
    const keep = 1 - opts.dropout;
    let t = 0;

    for (let epoch = 1; epoch <= opts.epochs && state.some((s) => s.active); epoch++) {
      for (const s of state) if (s.active) shuffleInPlace(s.order, s.rng);
      const lossSum = new Float64Array(k);
      const correct = new Float64Array(k);
      for (let start = 0; start < train.n; start += opts.batchSize) {
        if (opts.signal?.aborted) throw new InterruptedError();
        const rows = Math.min(opts.batchSize, train.n - start);
        onehot.fill(0);
        state.forEach((s, m) => {
          if (!s.active) return;
          const indices = s.order.slice(start, start + rows);
          standardizeRows(train, indices, mean, std, x, m * rows * dim);
          let total = 0;
          indices.forEach((row, b) => {
            const label = train.y[row];
            onehot[(m * rows + b) * classes + label] = 1;
            total += classWeight[label];
          });
          indices.forEach((row, b) => (rowWeight[m * rows + b] = classWeight[train.y[row]] / total));
          if (mask) for (let i = m * rows * hidden; i < (m + 1) * rows * hidden; i++) mask[i] = s.rng() < keep ? 1 / keep : 0;
        });
        t++;
        const correction = Math.sqrt(1 - ADAM_BETA2 ** t);
        state.forEach((s, m) => (stepSize[m] = s.active ? (opts.lr * correction) / (1 - ADAM_BETA1 ** t) : 0));
        const probs = await trainer.step({
          rows,
          x: x.subarray(0, k * rows * dim),
          onehot: onehot.subarray(0, k * rows * classes),
          rowWeight: rowWeight.subarray(0, k * rows),
          mask: mask?.subarray(0, k * rows * hidden),
          stepSize,
          epsilonHat: ADAM_EPSILON * correction,
        });
        state.forEach((s, m) => {
          if (!s.active) return;
          // The batch's weighted mean loss × rows, as tfjs's loop sums it.
          let weighted = 0;
          for (let b = 0; b < rows; b++) {
            const r = m * rows + b;
            const label = train.y[s.order[start + b]];
            weighted += -Math.log(clip(probs[r * classes + label])) * rowWeight[r];
            if (argMax(probs, r * classes, classes) === label) correct[m]++;
          }
          lossSum[m] += weighted * rows;
        });
      }
      const held = valid && valid.n > 0 ? await scoreHeads(trainer, valid, mean, std, k, classes) : undefined;
      state.forEach((s, m) => {
        if (!s.active) return;
        const record: EpochRecord = { epoch, loss: lossSum[m] / train.n, accuracy: correct[m] / train.n };
        if (held) {
          record.valLoss = held[m].loss;
          record.valAccuracy = held[m].accuracy;
        }
        if (k > 1) record.member = m + 1;
        s.history.push(record);
        opts.onEpoch?.({ ...record, epoch: (epoch - 1) * k + m + 1 }, k * opts.epochs);
        const monitored = record.valLoss ?? record.loss;
        if (monitored < s.best.loss) {
          s.best = { loss: monitored, epoch, values: slice(trainer!.params, m) };
          s.sinceBest = 0;
        } else if (++s.sinceBest >= opts.patience) {
          s.active = false;
        }
      });
    }

    // Every head's best weights, back into the trainer (for the merged head's scores) and the tfjs heads.
    state.forEach((s, m) => s.best.values.forEach((v, i) => trainer!.params[i].set(v, m * sizes[i])));
    models.forEach((model, m) => {
      const values = model.getWeights().map((w, i) => tf.tensor(state[m].best.values[i], w.shape));
      model.setWeights(values);
      tf.dispose(values);
      foldStandardization(model, mean, std);
    });
    if (k === 1) {
      const [model] = models.splice(0, 1);
      return { model, history: state[0].history, bestEpoch: state[0].best.epoch, bestLoss: state[0].best.loss };
    }
    const model = mergeHeads(models, dim, classes, opts);
    const fit = await scoreMerged(trainer, train, mean, std, k, classes);
    const heldOut = valid && valid.n > 0 ? await scoreMerged(trainer, valid, mean, std, k, classes) : undefined;
    const final: EpochRecord = { epoch: 0, loss: fit.loss, accuracy: fit.accuracy, ...(heldOut && { valLoss: heldOut.loss, valAccuracy: heldOut.accuracy }) };
    return {
      model,
      history: state.flatMap((s) => s.history),
      bestEpoch: state[0].best.epoch,
      bestLoss: heldOut?.loss ?? fit.loss,
      members: state.map((s) => ({ bestEpoch: s.best.epoch, bestLoss: s.best.loss })),
      final,
    };
  } finally {
    for (const model of models) model.dispose();
    await trainer?.dispose();
  }
}

const clip = (p: number) => Math.min(1, Math.max(EPS, p));

function argMax(values: Float32Array, offset: number, length: number): number {
  let best = 0;
  for (let c = 1; c < length; c++) if (values[offset + c] > values[offset + best]) best = c;
  return best;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Every head's logits, chunk by chunk: visit(logits [K, rows, C], first row, rows). */
async function forEachChunk(trainer: OnnxHeadTrainer, data: FeatureSet, mean: Float32Array, std: Float32Array, visit: (logits: Float32Array, first: number, rows: number) => void): Promise<void> {
  const x = new Float32Array(Math.min(EVAL_ROWS, data.n) * data.dim);
  for (let first = 0; first < data.n; first += EVAL_ROWS) {
    const rows = Math.min(EVAL_ROWS, data.n - first);
    standardizeRows(data, Array.from({ length: rows }, (_, i) => first + i), mean, std, x);
    visit(await trainer.logits(x.subarray(0, rows * data.dim), rows), first, rows);
  }
}

/** Softmax probability of class `label` and the arg max of `classes` logits from `at` on. */
function scoreRow(logits: ArrayLike<number>, at: number, classes: number, label: number): { p: number; top: number } {
  let top = 0;
  for (let c = 1; c < classes; c++) if (logits[at + c] > logits[at + top]) top = c;
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += Math.exp(logits[at + c] - logits[at + top]);
  return { p: Math.exp(logits[at + label] - logits[at + top]) / sum, top };
}

/** Unweighted log loss and accuracy of each head (tfjs's evaluateHead). */
async function scoreHeads(trainer: OnnxHeadTrainer, data: FeatureSet, mean: Float32Array, std: Float32Array, k: number, classes: number) {
  const loss = new Float64Array(k);
  const hits = new Float64Array(k);
  await forEachChunk(trainer, data, mean, std, (logits, first, rows) => {
    for (let m = 0; m < k; m++) {
      for (let b = 0; b < rows; b++) {
        const label = data.y[first + b];
        const { p, top } = scoreRow(logits, (m * rows + b) * classes, classes, label);
        loss[m] += -Math.log(clip(p));
        if (top === label) hits[m]++;
      }
    }
  });
  return Array.from({ length: k }, (_, m) => ({ loss: loss[m] / data.n, accuracy: hits[m] / data.n }));
}

/** Scores of the merged head: its logits are the members' mean (mergeHeads). */
async function scoreMerged(trainer: OnnxHeadTrainer, data: FeatureSet, mean: Float32Array, std: Float32Array, k: number, classes: number) {
  let loss = 0;
  let hits = 0;
  const merged = new Float64Array(classes);
  await forEachChunk(trainer, data, mean, std, (logits, first, rows) => {
    for (let b = 0; b < rows; b++) {
      merged.fill(0);
      for (let m = 0; m < k; m++) for (let c = 0; c < classes; c++) merged[c] += logits[(m * rows + b) * classes + c] / k;
      const label = data.y[first + b];
      const { p, top } = scoreRow(merged, 0, classes, label);
      loss += -Math.log(clip(p));
      if (top === label) hits++;
    }
  });
  return { loss: loss / data.n, accuracy: hits / data.n };
}
