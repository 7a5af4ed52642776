import { InterruptedError } from '../errors.ts';
import { gramBlocks } from './gram.ts';

export interface SimilarPair {
  /** Row indices, a < b. */
  a: number;
  b: number;
  /** Cosine similarity of the centred features. */
  similarity: number;
  /** CSLS: 2·cos − r_a − r_b (r = mean cosine to the row's 10 nearest rows); the threshold applies to it. */
  score: number;
}

export interface NeighbourTable {
  /** Pairs whose score is at or above the threshold, highest first. */
  pairs: SimilarPair[];
  /** Per row and class, the k most similar other rows of that class: index (−1 = none) and similarity. */
  k: number;
  classes: number;
  index: Int32Array;
  similarity: Float32Array;
}

export interface NeighbourOptions {
  k: number;
  threshold: number;
  /** Where the block products run (onnxruntime where it loads). */
  engine?: 'onnx' | 'tfjs';
  threads?: number;
  signal?: AbortSignal;
  onBlock?: (done: number, total: number) => void;
}

/** Rows whose mean similarity sets each row's local density (CSLS). */
export const DENSITY_NEIGHBOURS = 10;
/** Nearest rows of any class kept per row: a row's near-duplicates are among them. */
const CANDIDATES = 20;

/**
 * Rows centred on their mean and scaled to unit length: dot products are then cosine similarities
 * that do not all crowd near 1 (ReLU features share a large positive mean direction).
 */
export function centredUnitRows(x: Float32Array, n: number, dim: number): Float32Array {
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += x[i * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= Math.max(1, n);
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < dim; j++) {
      const v = x[i * dim + j] - mean[j];
      out[i * dim + j] = v;
      norm += v * v;
    }
    const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = 0; j < dim; j++) out[i * dim + j] *= scale;
  }
  return out;
}

/** Similarity values held at once: a block of rows against all rows (≈ 16 MB), never n × n. */
const BLOCK_VALUES = 4_000_000;

/** Puts (j, s) into the sorted list of length k at `slot` if it belongs there. */
function insert(sims: Float32Array, index: Int32Array, slot: number, k: number, s: number, j: number): void {
  if (s <= sims[slot + k - 1]) return;
  let p = k - 1;
  while (p > 0 && sims[slot + p - 1] < s) {
    sims[slot + p] = sims[slot + p - 1];
    index[slot + p] = index[slot + p - 1];
    p--;
  }
  sims[slot + p] = s;
  index[slot + p] = j;
}

/**
 * One pass of blocked matrix products (a block of rows × all rows, gram.ts) keeps
 * each row's nearest rows per class and of any class. Near-duplicates are then scored by CSLS
 * (Conneau et al. 2018): a pair counts when the two are much closer to each other than each is
 * to its usual neighbours, which holds across backbones whose cosines sit at different levels
 * (measured in the README, Audit), where one fixed cosine cut does not.
 */
export async function searchNeighbours(unit: Float32Array, n: number, dim: number, labels: ArrayLike<number>, classes: number, opts: NeighbourOptions): Promise<NeighbourTable> {
  const { k, threshold } = opts;
  const index = new Int32Array(n * classes * k).fill(-1);
  const similarity = new Float32Array(n * classes * k).fill(-Infinity);
  const m = Math.min(CANDIDATES, Math.max(1, n - 1));
  const nearIndex = new Int32Array(n * m).fill(-1);
  const nearSims = new Float32Array(n * m).fill(-Infinity);
  const blockRows = Math.max(1, Math.min(n, Math.floor(BLOCK_VALUES / Math.max(1, n))));
  const gram = await gramBlocks(unit, n, dim, { engine: opts.engine ?? 'tfjs', threads: opts.threads });
  try {
    for (let start = 0; start < n; start += blockRows) {
      if (opts.signal?.aborted) throw new InterruptedError();
      const rows = Math.min(blockRows, n - start);
      const sims = await gram.block(start, rows);
      for (let r = 0; r < rows; r++) {
        const i = start + r;
        const base = r * n;
        for (let j = 0; j < n; j++) {
          if (j === i) continue;
          const s = sims[base + j];
          insert(nearSims, nearIndex, i * m, m, s, j);
          insert(similarity, index, (i * classes + labels[j]) * k, k, s, j);
        }
      }
      opts.onBlock?.(start + rows, n);
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    await gram.dispose();
  }
  const density = new Float32Array(n);
  const d = Math.min(DENSITY_NEIGHBOURS, m);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let p = 0; p < d; p++) sum += Math.max(-1, nearSims[i * m + p]);
    density[i] = sum / d;
  }
  const pairs: SimilarPair[] = [];
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < m; p++) {
      const j = nearIndex[i * m + p];
      if (j < 0) break;
      const cos = nearSims[i * m + p];
      const score = 2 * cos - density[i] - density[j];
      // Each pair is seen from both ends when each is among the other's nearest: keep it once.
      if (score >= threshold && (i < j || !nearIndex.subarray(j * m, (j + 1) * m).includes(i))) pairs.push({ a: Math.min(i, j), b: Math.max(i, j), similarity: cos, score });
    }
  }
  return { pairs: pairs.sort(bySimilarity), k, classes, index, similarity };
}

const bySimilarity = (p: SimilarPair, q: SimilarPair) => q.score - p.score || p.a - q.a || p.b - q.b;

/** The up to k nearest rows of class `c` to row `i`, most similar first. */
export function nearestOfClass(table: NeighbourTable, i: number, c: number): { index: number; similarity: number }[] {
  const slot = (i * table.classes + c) * table.k;
  const out: { index: number; similarity: number }[] = [];
  for (let p = 0; p < table.k && table.index[slot + p] >= 0; p++) out.push({ index: table.index[slot + p], similarity: table.similarity[slot + p] });
  return out;
}
