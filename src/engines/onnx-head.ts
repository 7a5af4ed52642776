import * as ort from 'onnxruntime-node';
import { FinetuneError } from '../errors.ts';
import { ADAM, headEvalGraph, headGradientGraph, paramShapes, type HeadGraphShape } from './onnx-head-graph.ts';
import { cpuSessionOptions } from './onnx-session-options.ts';

export { ADAM, type HeadGraphShape } from './onnx-head-graph.ts';

/**
 * One batch for all K heads, row-major: x [K, B, D], onehot [K, B, C], rowWeight [K, B],
 * mask [K, B, H]; and its Adam step: stepSize [K] = lr·√(1−β₂ᵗ)/(1−β₁ᵗ) per head (0 = a head that
 * stopped) and epsilonHat = ε·√(1−β₂ᵗ), tfjs's bias corrections moved outside the update.
 */
export interface HeadBatch {
  rows: number;
  x: Float32Array;
  onehot: Float32Array;
  rowWeight: Float32Array;
  mask?: Float32Array;
  stepSize: Float32Array;
  epsilonHat: number;
}

/**
 * K heads' weights and Adam moments held in JavaScript buffers: onnxruntime computes each
 * batch's gradients (into preallocated buffers), one fused JavaScript pass applies Adam.
 */
export interface OnnxHeadTrainer {
  /** The current weights, one [K, …] array per parameter in paramShapes order (updated in place by step). */
  readonly params: readonly Float32Array[];
  /** One Adam step on a batch; resolves to the batch's probabilities [K, B, C] before the update. */
  step(batch: HeadBatch): Promise<Float32Array>;
  /** Logits [K, N, C] of every head for N standardised rows x [N, D], dropout off. */
  logits(x: Float32Array, rows: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

let openSessions = 0;
/** onnxruntime sessions of head trainers not yet disposed (tests check that none is left open). */
export const openHeadSessions = () => openSessions;

const product = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

export async function createOnnxHeadTrainer(shape: HeadGraphShape, initial: Float32Array[], opts: { threads?: number } = {}): Promise<OnnxHeadTrainer> {
  const shapes = paramShapes(shape);
  shapes.forEach((p, i) => {
    if (initial[i]?.length !== product(p.dims)) throw new FinetuneError(`onnx head: ${p.name} needs ${product(p.dims)} values, got ${initial[i]?.length}`);
  });
  const options = cpuSessionOptions(opts.threads);
  const evalSession = await ort.InferenceSession.create(headEvalGraph(shape), options);
  openSessions++;
  let gradSession: ort.InferenceSession;
  try {
    gradSession = await ort.InferenceSession.create(headGradientGraph(shape), options);
    openSessions++;
  } catch (err) {
    await evalSession.release();
    openSessions--;
    throw err;
  }

  const zeros = () => shapes.map((p) => new Float32Array(product(p.dims)));
  const w = initial.map((a) => a.slice());
  const m = zeros();
  const v = zeros();
  const grads = zeros();
  const tensor = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);
  const k = shape.heads;
  let disposed = false;

  const check = () => {
    if (disposed) throw new FinetuneError('the onnx head trainer was disposed');
  };
  return {
    params: w,
    async step(batch) {
      check();
      const b = batch.rows;
      const feeds: Record<string, ort.Tensor> = {
        x: tensor(batch.x, [k, b, shape.dim]),
        onehot: tensor(batch.onehot, [k, b, shape.classes]),
        row_weight: tensor(batch.rowWeight, [k, b, 1]),
      };
      if (shape.hidden > 0 && shape.dropout) feeds.dropout_mask = tensor(batch.mask!, [k, b, shape.hidden]);
      const fetches: Record<string, ort.Tensor | null> = { probs: null };
      shapes.forEach((p, i) => {
        feeds[p.name] = tensor(w[i], p.dims);
        fetches[`grad_${p.name}`] = tensor(grads[i], p.dims);
      });
      const out = await gradSession.run(feeds, fetches);
      const probs = out.probs.data as Float32Array;
      // The gradients as returned (the preallocated buffers, or copies where the binding makes them).
      shapes.forEach((p, i) => adam(w[i], m[i], v[i], out[`grad_${p.name}`].data as Float32Array, batch.stepSize, batch.epsilonHat));
      for (const t of Object.values(out)) t.dispose();
      return probs;
    },
    async logits(x, rows) {
      check();
      const feeds: Record<string, ort.Tensor> = { x: tensor(x, [rows, shape.dim]) };
      shapes.forEach((p, i) => (feeds[p.name] = tensor(w[i], p.dims)));
      const out = await evalSession.run(feeds);
      const logits = out.logits.data as Float32Array;
      out.logits.dispose();
      return logits;
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      for (const session of [evalSession, gradSession]) {
        await session.release();
        openSessions--;
      }
    },
  };
}

/**
 * Adam as tfjs applies it (m̂/(√v̂ + ε)), with the bias corrections folded into each head's
 * step size and ε̂: m += (1−β₁)(g − m); v += (1−β₂)(g² − v); w −= step·m/(√v + ε̂). The
 * arrays hold K heads one after another; head k moves by stepSize[k] (0 = a head that stopped).
 */
function adam(w: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, stepSize: Float32Array, epsilonHat: number): void {
  const per = w.length / stepSize.length;
  const a = 1 - ADAM.beta1;
  const b = 1 - ADAM.beta2;
  for (let k = 0; k < stepSize.length; k++) {
    const step = stepSize[k];
    // A head that has stopped keeps its weights; its moments are never read again.
    if (step === 0) continue;
    for (let i = k * per, end = (k + 1) * per; i < end; i++) {
      const gi = g[i];
      const mi = (m[i] += a * (gi - m[i]));
      const vi = (v[i] += b * (gi * gi - v[i]));
      w[i] -= (step * mi) / (Math.sqrt(vi) + epsilonHat);
    }
  }
}
