import * as tf from '../tf.ts';
import type { PixelAugment } from '../data/augment-pixels.ts';
import { buildImageCache, type ImageCache } from '../data/image-cache.ts';
import type { Sample } from '../data/layout.ts';
import { FinetuneError } from '../errors.ts';
import type { HeadLayer } from '../engines/onnx-train-graph.ts';
import type { BackbonePart } from '../features/source.ts';
import type { FeatureSet } from '../head/train.ts';
import type { OnProgress } from '../progress.ts';
import { cachedImages } from './cached-images.ts';
import type { ImageSource } from './loop.ts';
import { fineTuneWholeNetwork } from './whole-network.ts';

export interface FineTuneStageOptions {
  /** 'all', or the last N layers with weights. */
  layers: number | 'all';
  epochs: number;
  lr: number;
  batchSize: number;
  seed: number;
  patience: number;
  augments: readonly PixelAugment[];
  /** The head's dropout rate, kept active after its hidden layer while fine-tuning. */
  dropout?: number;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: OnProgress;
}

/** What `train --json` reports of the fine-tuning stage. */
export interface FineTuneSummary {
  engine: 'onnx';
  device: 'cpu';
  /** Keras layers whose weights trained. */
  layers: string[];
  epochs: number;
  /** 1-based; 0 = no epoch beat the frozen start, and the bundle keeps the original backbone. */
  bestEpoch: number;
  imagesPerSecond: number;
  valAccuracyBefore: number | null;
  valAccuracyAfter: number | null;
  valLossBefore: number | null;
  valLossAfter: number | null;
  /** Per fine-tuning epoch: mean training loss, then validation loss and accuracy (null without a split). */
  history: { trainLoss: number; valLoss: number | null; valAccuracy: number | null }[];
}

export interface FineTuneStageResult {
  summary: FineTuneSummary;
  /** The trained backbone (images → pooled features) as ONNX, when it beat the frozen start. */
  backboneOnnx?: Uint8Array;
  /** Validation features through the trained backbone (for the temperature), when kept. */
  validFeatures?: FeatureSet;
}

/**
 * fastai's second stage: the unfrozen layers and the head (already trained on frozen features,
 * updated in place when kept) together on images decoded once into the bounded image cache and
 * augmented on the fly. The result is kept only if validation loss beats the frozen start.
 */
export async function fineTuneStage(part: BackbonePart, trainSamples: Sample[], validSamples: Sample[], head: tf.LayersModel, opts: FineTuneStageOptions): Promise<FineTuneStageResult> {
  if (!('model' in part.backbone)) throw new FinetuneError(`${part.backbone.id}: fine-tuning needs the backbone's own layers (a registry network, tfjs folder or Keras .h5, not an ONNX file)`);
  const model = part.backbone.model;
  const caches: ImageCache[] = [];
  try {
    const open = async (samples: Sample[], augments: readonly PixelAugment[]): Promise<ImageSource | null> => {
      if (samples.length === 0) return null;
      const cache = await buildImageCache(
        samples.map((s) => s.path),
        { inputSize: part.backbone.inputSize, resize: part.resize, signal: opts.signal },
      );
      caches.push(cache);
      const rows = samples.flatMap((_, i) => (cache.ok[i] ? [i] : []));
      return cachedImages(cache, rows, rows.map((i) => samples[i].label), { preprocess: part.backbone.preprocess, augments, seed: opts.seed });
    };
    const train = (await open(trainSamples, opts.augments))!;
    const val = await open(validSamples, []);
    const result = await fineTuneWholeNetwork(model, {
      layer: part.backbone.layer,
      pooling: part.pooling,
      layers: opts.layers,
      head: headLayersOf(head),
      train,
      val,
      epochs: opts.epochs,
      lr: opts.lr,
      batchSize: opts.batchSize,
      seed: opts.seed,
      patience: opts.patience,
      dropout: opts.dropout,
      threads: opts.threads,
      signal: opts.signal,
      onProgress: opts.onProgress,
    });
    const summary: FineTuneSummary = {
      engine: 'onnx',
      device: 'cpu',
      layers: result.layers,
      epochs: result.epochs,
      bestEpoch: result.bestEpoch,
      imagesPerSecond: result.imagesPerSecond,
      valAccuracyBefore: result.before?.accuracy ?? null,
      valAccuracyAfter: result.after?.accuracy ?? null,
      valLossBefore: result.before?.loss ?? null,
      valLossAfter: result.after?.loss ?? null,
      history: result.trainLoss.map((trainLoss, i) => ({ trainLoss, valLoss: result.valHistory[i]?.loss ?? null, valAccuracy: result.valHistory[i]?.accuracy ?? null })),
    };
    if (result.bestEpoch === 0) return { summary };
    setHeadLayers(head, result.head);
    const validFeatures = val ? await featuresThrough(result.backboneOnnx, part, val, opts) : undefined;
    return { summary, backboneOnnx: result.backboneOnnx, validFeatures };
  } finally {
    for (const cache of caches) await cache.dispose();
  }
}

async function featuresThrough(bytes: Uint8Array, part: BackbonePart, source: ImageSource, opts: FineTuneStageOptions): Promise<FeatureSet> {
  const { createOnnxExtractorFromBytes } = await import('../engines/onnx.ts');
  const extractor = await createOnnxExtractorFromBytes(bytes, { featureSize: part.extractor.featureSize, inputSize: part.backbone.inputSize, threads: opts.threads });
  try {
    const dim = extractor.featureSize;
    const x = new Float32Array(source.count * dim);
    for (let start = 0; start < source.count; start += opts.batchSize) {
      const indices = Array.from({ length: Math.min(opts.batchSize, source.count - start) }, (_, i) => start + i);
      x.set(await extractor.run(await source.batch(indices, -1), indices.length), start * dim);
    }
    return { x, y: Int32Array.from(source.labels), n: source.count, dim };
  } finally {
    await extractor.dispose();
  }
}

const denseLayers = (head: tf.LayersModel) => head.layers.filter((l) => l.getClassName() === 'Dense');

/** The head's Dense layers as the trainer takes them (the last one's softmax is the loss's). */
export function headLayersOf(head: tf.LayersModel): HeadLayer[] {
  return denseLayers(head).map((layer) => {
    const [kernel, bias] = layer.getWeights();
    return { kernel: kernel.dataSync() as Float32Array, bias: bias.dataSync() as Float32Array, relu: (layer.getConfig() as { activation?: string }).activation === 'relu' };
  });
}

function setHeadLayers(head: tf.LayersModel, layers: HeadLayer[]): void {
  denseLayers(head).forEach((layer, i) => {
    const [kernel, bias] = layer.getWeights();
    const values = [tf.tensor(layers[i].kernel, kernel.shape), tf.tensor(layers[i].bias, bias.shape)];
    layer.setWeights(values);
    tf.dispose(values);
  });
}
