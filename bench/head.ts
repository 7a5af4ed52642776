import { createRng } from '../src/data/random.ts';
import { trainHeadsOnnx } from '../src/head/train-onnx.ts';
import type { FeatureSet } from '../src/head/train.ts';
import { log, round } from './timing.ts';

export interface HeadBenchResult {
  rows: number;
  dim: number;
  hidden: number;
  classes: number;
  heads: number;
  epochs: number;
  batch: number;
  engine: 'onnx';
  /** Wall time of the whole call (initialisation, epochs, merge and final scores). */
  seconds: number;
  /** GEMM FLOPs of the training steps alone, over that wall time. */
  gflops: number;
  gflopTotal: number;
  trainAccuracy: number;
}

/** Two classes that differ in a few hundred of the features, as pooled CNN features of two kinds of photo would. */
function syntheticFeatures(rows: number, dim: number, seed: number): FeatureSet {
  const rng = createRng(seed);
  const x = new Float32Array(rows * dim);
  const y = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    y[i] = i % 2;
    for (let j = 0; j < dim; j++) x[i * dim + j] = Math.max(0, rng() * 2 - 1 + (j % 8 === 0 && y[i] === 1 ? 0.3 : 0));
  }
  return { x, y, n: rows, dim };
}

/**
 * Head training on cached features at the scale the issue names: 25,000 × 2,560 features,
 * 5 heads of 256 hidden units, 10 epochs, no early stop. FLOPs per row, head and epoch:
 * forward 2·D·H + 2·H·C, weight gradients 2·D·H + 2·H·C, the hidden layer's input gradient 2·H·C
 * (the features need none).
 */
export async function run(opts: { rows?: number; dim?: number; hidden?: number; heads?: number; epochs?: number; batch?: number }): Promise<HeadBenchResult> {
  const rows = opts.rows ?? 25_000;
  const dim = opts.dim ?? 2560;
  const hidden = opts.hidden ?? 256;
  const heads = opts.heads ?? 5;
  const epochs = opts.epochs ?? 10;
  const batch = opts.batch ?? 256;
  const classes = 2;
  const data = syntheticFeatures(rows, dim, 1);
  const started = performance.now();
  const result = await trainHeadsOnnx(data, undefined, classes, { hidden, dropout: 0.5, seed: 42, epochs, batchSize: batch, lr: 1e-3, patience: epochs }, heads);
  const seconds = (performance.now() - started) / 1000;
  result.model.dispose();
  const perRow = 4 * dim * hidden + 6 * hidden * classes;
  const gflopTotal = (perRow * rows * heads * epochs) / 1e9;
  const out: HeadBenchResult = {
    rows,
    dim,
    hidden,
    classes,
    heads,
    epochs,
    batch,
    engine: 'onnx',
    seconds: round(seconds, 2),
    gflops: round(gflopTotal / seconds, 1),
    gflopTotal: round(gflopTotal, 1),
    trainAccuracy: round(result.final?.accuracy ?? result.history[result.history.length - 1].accuracy, 4),
  };
  log(`head: ${heads} heads × ${epochs} epochs on ${rows} × ${dim}, batch ${batch}: ${out.seconds} s, ${out.gflops} GFLOP/s`);
  return out;
}
