import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { FinetuneError } from '../errors.ts';
import { batchNames, headEvalGraph, headStepGraph, paramShapes, type HeadGraphShape } from './onnx-head-graph.ts';

export { ADAM, type HeadGraphShape } from './onnx-head-graph.ts';

/**
 * One batch for all K heads, row-major: x [K, B, D], onehot [K, B, C], rowWeight [K, B],
 * mask [K, B, H]; and its Adam step: stepSize [K] and epsilonHat (see headStepGraph).
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
 * K heads' weights and Adam moments held in JavaScript buffers, trained by one onnxruntime
 * session per step. Two sets of buffers take turns as the step's inputs and its outputs
 * (preallocated fetches), so a step allocates nothing the size of the weights.
 */
export interface OnnxHeadTrainer {
  /** The current weights, one [K, …] array per parameter in paramShapes order (read-only views). */
  readonly params: readonly Float32Array[];
  /** One Adam step per batch, in order, in one run; resolves to each batch's probabilities [K, B, C] before its update. */
  steps(batches: HeadBatch[]): Promise<Float32Array[]>;
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
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: opts.threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
    // Errors only: the library never prints (onnxruntime warns on stderr otherwise).
    logSeverityLevel: 3,
  };
  const evalSession = await ort.InferenceSession.create(headEvalGraph(shape), options);
  openSessions++;
  // One session per number of steps a run takes (a whole group, and an epoch's remainder).
  const stepSessions = new Map<number, ort.InferenceSession>();
  const stepSession = async (steps: number) => {
    let session = stepSessions.get(steps);
    if (!session) {
      session = await ort.InferenceSession.create(headStepGraph(shape, steps), options);
      stepSessions.set(steps, session);
      openSessions++;
    }
    return session;
  };

  type State = { w: Float32Array[]; m: Float32Array[]; v: Float32Array[] };
  const zeros = () => shapes.map((p) => new Float32Array(product(p.dims)));
  let current: State = { w: initial.map((a) => a.slice()), m: zeros(), v: zeros() };
  let spare: State = { w: zeros(), m: zeros(), v: zeros() };
  const tensor = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);
  const k = shape.heads;
  let disposed = false;

  const check = () => {
    if (disposed) throw new FinetuneError('the onnx head trainer was disposed');
  };
  return {
    get params() {
      return current.w;
    },
    async steps(batches) {
      check();
      const session = await stepSession(batches.length);
      const feeds: Record<string, ort.Tensor> = {};
      batches.forEach((batch, j) => {
        const n = batchNames(j, batches.length);
        const b = batch.rows;
        feeds[n.x] = tensor(batch.x, [k, b, shape.dim]);
        feeds[n.onehot] = tensor(batch.onehot, [k, b, shape.classes]);
        feeds[n.rowWeight] = tensor(batch.rowWeight, [k, b, 1]);
        feeds[n.stepSize] = tensor(batch.stepSize, [k, 1, 1]);
        feeds[n.epsilonHat] = tensor(Float32Array.of(batch.epsilonHat), [1]);
        if (shape.hidden > 0 && shape.dropout) feeds[n.mask] = tensor(batch.mask!, [k, b, shape.hidden]);
      });
      const fetches: Record<string, ort.Tensor | null> = Object.fromEntries(batches.map((_, j) => [batchNames(j, batches.length).probs, null]));
      shapes.forEach((p, i) => {
        feeds[p.name] = tensor(current.w[i], p.dims);
        feeds[`m_${p.name}`] = tensor(current.m[i], p.dims);
        feeds[`v_${p.name}`] = tensor(current.v[i], p.dims);
        fetches[`new_${p.name}`] = tensor(spare.w[i], p.dims);
        fetches[`new_m_${p.name}`] = tensor(spare.m[i], p.dims);
        fetches[`new_v_${p.name}`] = tensor(spare.v[i], p.dims);
      });
      const out = await session.run(feeds, fetches);
      // Read the results from what the session returned: the same buffers when it honoured
      // the preallocated outputs, copies otherwise.
      const next: State = {
        w: shapes.map((p) => out[`new_${p.name}`].data as Float32Array),
        m: shapes.map((p) => out[`new_m_${p.name}`].data as Float32Array),
        v: shapes.map((p) => out[`new_v_${p.name}`].data as Float32Array),
      };
      const probs = batches.map((_, j) => out[batchNames(j, batches.length).probs].data as Float32Array);
      for (const t of Object.values(out)) t.dispose();
      spare = current;
      current = next;
      return probs;
    },
    async logits(x, rows) {
      check();
      const feeds: Record<string, ort.Tensor> = { x: tensor(x, [rows, shape.dim]) };
      shapes.forEach((p, i) => (feeds[p.name] = tensor(current.w[i], p.dims)));
      const out = await evalSession.run(feeds);
      const logits = out.logits.data as Float32Array;
      out.logits.dispose();
      return logits;
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      for (const session of [evalSession, ...stepSessions.values()]) {
        await session.release();
        openSessions--;
      }
    },
  };
}
