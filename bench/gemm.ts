import os from 'node:os';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { bestOf, log, round } from './timing.ts';

const { onnx } = onnxProto;

export interface GemmResult {
  n: number;
  threads: number;
  gflopPerRun: number;
  bestSeconds: number;
  gflops: number;
  runs: number[];
}

/** C = A·B with A and B as graph inputs (not initializers), so nothing is folded away. */
function matmulModel(n: number): Uint8Array {
  const tensor = (name: string) => ({
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimValue: n }, { dimValue: n }] } } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'finetune-bench',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'gemm',
      node: [{ opType: 'MatMul', name: 'matmul', input: ['A', 'B'], output: ['C'] }],
      input: [tensor('A'), tensor('B')],
      output: [tensor('C')],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** The machine's float32 ceiling as onnxruntime's own GEMM reaches it on all cores. */
export async function run(opts: { n?: number; runs: number }): Promise<GemmResult> {
  const n = opts.n ?? 2048;
  const threads = os.availableParallelism();
  const session = await ort.InferenceSession.create(matmulModel(n), { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' });
  const fill = () => Float32Array.from({ length: n * n }, () => Math.random() - 0.5);
  const feeds = { A: new ort.Tensor('float32', fill(), [n, n]), B: new ort.Tensor('float32', fill(), [n, n]) };
  const timed = await bestOf(
    async () => {
      const out = await session.run(feeds);
      out.C.dispose();
    },
    { warmup: 2, runs: opts.runs },
  );
  await session.release();
  const gflopPerRun = (2 * n ** 3) / 1e9;
  const result = { n, threads, gflopPerRun: round(gflopPerRun), bestSeconds: round(timed.best, 4), gflops: round(gflopPerRun / timed.best, 1), runs: timed.runs.map((s) => round(s, 4)) };
  log(`GEMM ${n}³ on ${threads} threads: ${result.gflops} GFLOP/s (best of ${timed.runs.length})`);
  return result;
}
