import { createHash } from 'node:crypto';
import type * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.ts';
import { buildOnnxGraph } from '../engines/onnx-export.ts';
import { OnnxTrainer } from '../engines/onnx-trainer.ts';
import { trainableLayers, type HeadLayer } from '../engines/onnx-train-graph.ts';
import type { Pooling } from '../engines/types.ts';
import type { OnProgress } from '../progress.ts';
import { fineTuneLoop, type FineTuneResult, type ImageSource } from './loop.ts';

export interface WholeNetworkOptions {
  layer: string;
  pooling: Pooling;
  /** 'all', or the last N layers with weights (up to the feature layer). */
  layers: number | 'all';
  /** The head trained first on frozen features (Keras layout, standardisation folded in). */
  head: HeadLayer[];
  train: ImageSource;
  val: ImageSource | null;
  epochs: number;
  lr: number;
  batchSize: number;
  seed: number;
  patience?: number;
  /** Learning-rate ratio of the earliest trained layer to the head (default 0.1). */
  spread?: number;
  threads?: number;
  weightDecay?: number;
  /** Dropout after the head's hidden layers while fine-tuning (the head's --dropout; default 0). */
  dropout?: number;
  signal?: AbortSignal;
  onProgress?: OnProgress;
}

export interface WholeNetworkResult extends FineTuneResult {
  /** The trained backbone up to the features (pooling included), images NHWC in, as ONNX. */
  backboneOnnx: Uint8Array;
  /** sha256 of backboneOnnx, for the bundle to verify on load. */
  backboneSha256: string;
  head: HeadLayer[];
  /** Keras layers whose weights trained. */
  layers: string[];
}

/**
 * Fine-tunes `model` up to `opts.layer` together with the head on images, on onnxruntime:
 * the backward graph of the exported network, AdamW, one-cycle, discriminative rates, best
 * validation loss kept. BatchNormalization stays folded (frozen statistics).
 */
export async function fineTuneWholeNetwork(model: tf.LayersModel, opts: WholeNetworkOptions): Promise<WholeNetworkResult> {
  const graph = buildOnnxGraph(model, { layer: opts.layer, pooling: opts.pooling });
  const all = trainableLayers(graph);
  if (opts.layers !== 'all' && (!Number.isInteger(opts.layers) || opts.layers < 1)) throw new UsageError(`--fine-tune ${opts.layers}: must be 'all' or a whole number ≥ 1`);
  if (opts.layers !== 'all' && opts.layers > all.length) throw new UsageError(`--fine-tune ${opts.layers}: ${opts.layer} is preceded by ${all.length} layers with weights; use at most ${all.length}, or 'all'`);
  const chosen = opts.layers === 'all' ? all : all.slice(all.length - opts.layers);
  const trainer = await OnnxTrainer.create(graph, { layers: chosen.map((l) => l.constants), head: opts.head, threads: opts.threads, weightDecay: opts.weightDecay, dropout: opts.dropout, seed: opts.seed });
  try {
    const result = await fineTuneLoop(trainer, opts.train, opts.val, {
      epochs: opts.epochs,
      batchSize: opts.batchSize,
      lr: opts.lr,
      seed: opts.seed,
      patience: opts.patience,
      spread: opts.spread,
      signal: opts.signal,
      onProgress: opts.onProgress,
    });
    const backboneOnnx = trainer.backboneBytes();
    return {
      ...result,
      backboneOnnx,
      backboneSha256: createHash('sha256').update(backboneOnnx).digest('hex'),
      head: trainer.headLayers(),
      layers: chosen.map((l) => l.layer),
    };
  } finally {
    await trainer.dispose();
  }
}
