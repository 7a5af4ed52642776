import * as tf from '../tf.ts';
import type * as Ort from 'onnxruntime-node';

/** Products of row blocks with every row: rows start … start+rows of unit · unitᵀ, [rows, n]. */
export interface GramBlocks {
  block(start: number, rows: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/**
 * On onnxruntime (MLAS, every core) where it loads: the same products on tfjs
 * took 15 s of a 3,000-image audit with mobilenet_v2's 1,280 averaged features (README, Audit).
 */
export async function gramBlocks(unit: Float32Array, n: number, dim: number, opts: { engine: 'onnx' | 'tfjs'; threads?: number }): Promise<GramBlocks> {
  if (opts.engine === 'onnx') {
    const ort = await import('onnxruntime-node');
    const { GraphBuilder } = await import('../engines/onnx-graph.ts');
    const { cpuSessionOptions } = await import('../engines/onnx-session-options.ts');
    const g = new GraphBuilder();
    g.opInto('sims', 'MatMul', ['rows', 'all_t']);
    const graph = g.encodeGraph([{ name: 'rows', dims: [-1, dim] }, { name: 'all_t', dims: [dim, n] }], [{ name: 'sims', dims: [-1, n] }], 'gram');
    const session: Ort.InferenceSession = await ort.InferenceSession.create(graph, cpuSessionOptions(opts.threads));
    const transposed = new Float32Array(dim * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) transposed[j * n + i] = unit[i * dim + j];
    const allT = new ort.Tensor('float32', transposed, [dim, n]);
    return {
      async block(start, rows) {
        const out = await session.run({ rows: new ort.Tensor('float32', unit.subarray(start * dim, (start + rows) * dim), [rows, dim]), all_t: allT });
        return out.sims.data as Float32Array;
      },
      dispose: () => session.release(),
    };
  }
  const all = tf.tensor2d(unit, [n, dim]);
  return {
    async block(start, rows) {
      const product = tf.tidy(() => tf.matMul(tf.slice(all, [start, 0], [rows, dim]), all, false, true));
      try {
        return (await product.data()) as Float32Array;
      } finally {
        product.dispose();
      }
    },
    dispose: async () => all.dispose(),
  };
}
