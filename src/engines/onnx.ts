import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { FinetuneError, ModelFileError } from '../errors.ts';
import { packageRoot } from '../package.ts';
import { INPUT_NAME, OUTPUT_NAME, exportToOnnx } from './onnx-export.ts';
import type { ExtractorOptions, FeatureExtractor } from './types.ts';

export { exportToOnnx } from './onnx-export.ts';

/**
 * A FeatureExtractor running `model` up to `opts.layer` (then pooling) in onnxruntime-node.
 * Throws UnsupportedLayerError when a layer on that path has no ONNX translation, so the
 * caller can fall back to the tfjs engine.
 */
export async function createOnnxExtractor(model: tf.LayersModel, opts: ExtractorOptions): Promise<FeatureExtractor> {
  checkDevice(opts);
  const { bytes, featureSize, inputSize } = exportToOnnx(model, opts);
  return extractorFromGraph(bytes, { featureSize, inputSize, inputName: INPUT_NAME, outputName: OUTPUT_NAME }, opts);
}

export function checkDevice(opts: { device?: string }): void {
  if (opts.device === 'gpu' && !cudaAvailable()) {
    throw new FinetuneError(
      'onnxruntime-node here has no CUDA provider; use --device cpu, or reinstall onnxruntime-node with its install script allowed and ONNXRUNTIME_NODE_INSTALL=cuda12 (needs CUDA 12 + cuDNN 9)',
    );
  }
}

/**
 * A FeatureExtractor over a graph in the exporter's form (NHWC `images` → pooled `features`):
 * a fine-tuned backbone stored in a bundle.
 */
export async function createOnnxExtractorFromBytes(
  bytes: Uint8Array,
  opts: { featureSize: number; inputSize: readonly [number, number]; threads?: number; device?: ExtractorOptions['device'] },
): Promise<FeatureExtractor> {
  checkDevice(opts);
  return extractorFromGraph(bytes, { featureSize: opts.featureSize, inputSize: opts.inputSize, inputName: INPUT_NAME, outputName: OUTPUT_NAME, label: 'the fine-tuned backbone' }, opts);
}

export interface FeatureGraph {
  featureSize: number;
  inputSize: readonly [number, number];
  /** Names of the NHWC float32 image input and the [N, featureSize] float32 output. */
  inputName: string;
  outputName: string;
  /** Images per request when the graph fixes its batch size (exporters often fix 1). */
  fixedBatch?: number;
  /** Names the graph in a load error (the user's file, or "the exported backbone"). */
  label?: string;
}

/** A FeatureExtractor over an ONNX graph that maps NHWC images to pooled features. */
export async function extractorFromGraph(bytes: Uint8Array, graph: FeatureGraph, opts: Pick<ExtractorOptions, 'threads' | 'device'>): Promise<FeatureExtractor> {
  const useCuda = opts.device === 'gpu';
  const session = await OnnxWorker.start(bytes, {
    executionProviders: [useCuda ? 'cuda' : 'cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: opts.threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
  }, graph);
  const { featureSize, inputSize } = graph;
  const [h, w] = inputSize;
  const channels = 3;
  const perImage = h * w * channels;
  let disposed = false;
  return {
    engine: 'onnx',
    device: useCuda ? 'cuda' : 'cpu',
    featureSize,
    inputSize,
    async run(images, count) {
      if (disposed) throw new FinetuneError('the onnx feature extractor was disposed; create a new one');
      if (!Number.isInteger(count) || count < 0 || images.length !== count * perImage) {
        throw new FinetuneError(`onnx extractor: expected ${count} images of ${h}×${w}×${channels} floats (${count * perImage}), got ${images.length}`);
      }
      if (count === 0) return new Float32Array(0);
      // A request runs to its end once started (onnxruntime cannot be stopped mid-run), so
      // batches go to the worker in slices of ≈ 8 images at 224²: Ctrl-C then waits for one
      // slice (≈ 1 s of VGG16 on 2 cores), and throughput is the same as whole batches.
      const slice = graph.fixedBatch ?? Math.max(1, Math.floor((8 * 224 * 224) / (h * w)));
      if (count <= slice && !graph.fixedBatch) return session.run(images, [count, h, w, channels]);
      const out = new Float32Array(count * featureSize);
      for (let start = 0; start < count; start += slice) {
        const n = Math.min(slice, count - start);
        let part = images.subarray(start * perImage, (start + n) * perImage);
        if (graph.fixedBatch && n < slice) {
          // A fixed batch is filled up with zeros; the padding's rows are dropped below.
          const padded = new Float32Array(slice * perImage);
          padded.set(part);
          part = padded;
        }
        const features = await session.run(part, [graph.fixedBatch ? slice : n, h, w, channels]);
        out.set(features.subarray(0, n * featureSize), start * featureSize);
      }
      return out;
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await session.close();
    },
  };
}

type Reply = { type: 'ready' } | { type: 'result'; id: number; features: Float32Array } | { type: 'error'; id?: number; message: string };

/** The session lives in a worker thread (src/engines/onnx-session-worker.mjs); requests are answered in order. */
class OnnxWorker {
  private nextId = 0;
  private closing = false;
  private readonly pending = new Map<number, { resolve: (f: Float32Array) => void; reject: (e: Error) => void; done: Promise<unknown> }>();

  private constructor(
    private readonly worker: Worker,
    private readonly inputName: string,
    private readonly outputName: string,
  ) {
    worker.on('message', (reply: Reply) => {
      if (reply.type === 'result') this.settle(reply.id, (p) => p.resolve(reply.features));
      else if (reply.type === 'error' && reply.id !== undefined) this.settle(reply.id, (p) => p.reject(new FinetuneError(`onnxruntime: ${reply.message}`)));
    });
    worker.on('error', (err) => this.failAll(err));
    worker.on('exit', () => this.failAll(new FinetuneError('the onnxruntime worker stopped')));
  }

  static async start(bytes: Uint8Array, options: InferenceSession.SessionOptions, graph: FeatureGraph): Promise<OnnxWorker> {
    // onnxruntime's graph optimiser recurses deeply on some graphs (Darknet's): a worker's
    // default 4 MB stack overflowed with a long command line (300 paths), so give it room.
    const worker = new Worker(path.join(packageRoot(), 'src', 'engines', 'onnx-session-worker.mjs'), { resourceLimits: { stackSizeMb: 64 } });
    const ready = new Promise<void>((resolve, reject) => {
      const onMessage = (reply: Reply) => {
        if (reply.type === 'ready') resolve();
        else if (reply.type === 'error') reject(new ModelFileError(`onnxruntime-node cannot run ${graph.label ?? 'the exported backbone'}: ${reply.message}`));
        else return;
        worker.off('message', onMessage);
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    // A copy of its own to transfer (a Buffer's slice() would share, and the transfer detach, the caller's memory).
    const copy = new Uint8Array(bytes);
    worker.postMessage({ type: 'init', bytes: copy, options }, [copy.buffer]);
    try {
      await ready;
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    const session = new OnnxWorker(worker, graph.inputName, graph.outputName);
    worker.unref();
    return session;
  }

  run(images: Float32Array, dims: number[]): Promise<Float32Array> {
    if (this.closing) return Promise.reject(new FinetuneError('the onnx feature extractor was disposed'));
    const id = this.nextId++;
    // Held (ref'd) only while a request is out: an idle session must not keep the process alive.
    this.worker.ref();
    let settled!: () => void;
    const done = new Promise<void>((r) => (settled = r));
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (f) => (settled(), resolve(f)),
        reject: (e) => (settled(), reject(e)),
        done,
      });
      this.worker.postMessage({ type: 'run', id, images, dims, inputName: this.inputName, outputName: this.outputName });
    });
  }

  /**
   * Waits for a batch still running (stopping the thread inside onnxruntime aborts the whole
   * process), then ends the worker.
   */
  async close(): Promise<void> {
    this.closing = true;
    const inFlight = [...this.pending.values()].map((p) => p.done);
    await Promise.race([Promise.allSettled(inFlight), new Promise((r) => setTimeout(r, 30_000).unref())]);
    this.pending.clear();
    await this.worker.terminate();
  }

  private settle(id: number, action: (p: { resolve: (f: Float32Array) => void; reject: (e: Error) => void }) => void): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
    action(entry);
  }

  private failAll(err: Error): void {
    for (const entry of this.pending.values()) entry.reject(err);
    this.pending.clear();
  }
}

/**
 * The Linux onnxruntime-node build lists `cuda` even when its provider library was never
 * installed (npm download step skipped), so the library file beside the binding decides.
 */
export function cudaAvailable(): boolean {
  const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
  if (!cuda) return false;
  if (cuda.bundled) return true;
  const require = createRequire(import.meta.url);
  const packageDir = path.dirname(require.resolve('onnxruntime-node/package.json'));
  const binDir = path.join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  const library = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  return existsSync(path.join(binDir, library));
}
