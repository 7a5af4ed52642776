import * as tf from '../tf.ts';
import { InterruptedError } from '../errors.ts';

export interface SimilarPair {
  /** Row indices, a < b. */
  a: number;
  b: number;
  /** Cosine similarity of the centred features. */
  similarity: number;
}

export interface NeighbourTable {
  /** Pairs at or above the threshold, most similar first. */
  pairs: SimilarPair[];
  /** True when more pairs passed the threshold than maxPairs (the most similar are kept). */
  truncated: boolean;
  /** Per row and class, the k most similar other rows of that class: index (−1 = none) and similarity. */
  k: number;
  classes: number;
  index: Int32Array;
  similarity: Float32Array;
}

export interface NeighbourOptions {
  k: number;
  threshold: number;
  maxPairs?: number;
  signal?: AbortSignal;
  onBlock?: (done: number, total: number) => void;
}

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

/**
 * One pass of blocked matrix products (a block of rows × all rows, on the tfjs backend) gives
 * both the near-duplicate pairs and each row's nearest neighbours per class.
 */
export async function searchNeighbours(unit: Float32Array, n: number, dim: number, labels: ArrayLike<number>, classes: number, opts: NeighbourOptions): Promise<NeighbourTable> {
  const { k, threshold, maxPairs = 100_000 } = opts;
  const index = new Int32Array(n * classes * k).fill(-1);
  const similarity = new Float32Array(n * classes * k).fill(-Infinity);
  let pairs: SimilarPair[] = [];
  let truncated = false;
  const blockRows = Math.max(1, Math.min(n, Math.floor(BLOCK_VALUES / Math.max(1, n))));
  const all = tf.tensor2d(unit, [n, dim]);
  try {
    for (let start = 0; start < n; start += blockRows) {
      if (opts.signal?.aborted) throw new InterruptedError();
      const rows = Math.min(blockRows, n - start);
      const block = tf.tidy(() => tf.matMul(all.slice([start, 0], [rows, dim]), all, false, true));
      const sims = (await block.data()) as Float32Array;
      block.dispose();
      for (let r = 0; r < rows; r++) {
        const i = start + r;
        const base = r * n;
        for (let j = 0; j < n; j++) {
          if (j === i) continue;
          const s = sims[base + j];
          if (j > i && s >= threshold) pairs.push({ a: i, b: j, similarity: s });
          const slot = (i * classes + labels[j]) * k;
          if (s <= similarity[slot + k - 1]) continue;
          // Insertion into the class's short sorted list.
          let p = k - 1;
          while (p > 0 && similarity[slot + p - 1] < s) {
            similarity[slot + p] = similarity[slot + p - 1];
            index[slot + p] = index[slot + p - 1];
            p--;
          }
          similarity[slot + p] = s;
          index[slot + p] = j;
        }
      }
      if (pairs.length > maxPairs) {
        pairs = pairs.sort(bySimilarity).slice(0, maxPairs);
        truncated = true;
      }
      opts.onBlock?.(start + rows, n);
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    all.dispose();
  }
  return { pairs: pairs.sort(bySimilarity), truncated, k, classes, index, similarity };
}

const bySimilarity = (p: SimilarPair, q: SimilarPair) => q.similarity - p.similarity || p.a - q.a || p.b - q.b;

/** The up to k nearest rows of class `c` to row `i`, most similar first. */
export function nearestOfClass(table: NeighbourTable, i: number, c: number): { index: number; similarity: number }[] {
  const slot = (i * table.classes + c) * table.k;
  const out: { index: number; similarity: number }[] = [];
  for (let p = 0; p < table.k && table.index[slot + p] >= 0; p++) out.push({ index: table.index[slot + p], similarity: table.similarity[slot + p] });
  return out;
}
