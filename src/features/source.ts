import { loadAnyBackbone, type AnyBackbone, type Backbone } from '../backbones/resolve.ts';
import type { ResizeMode } from '../data/image.ts';
import type { Preprocess } from '../data/preprocess.ts';
import { TRAIN_DEFAULTS } from '../defaults.ts';
import { initBackend, type BackendChoice } from '../engines/backend.ts';
import { createExtractor, type EngineChoice } from '../engines/index.ts';
import type { Device, FeatureExtractor, Pooling } from '../engines/types.ts';
import { UsageError } from '../errors.ts';
import type { OnProgress } from '../progress.ts';
import { variantKey, type Variant } from '../data/augment.ts';
import { extractFeatures, type ExtractResult } from './extract.ts';
import { cacheWarningOnce, openFeatureStore, type CacheOptions, type CacheWarning } from './store.ts';

export interface BackboneChoice {
  backbone?: string;
  weights?: string;
  layer?: string;
  /** The network's own output as features (ImageNet probabilities). */
  output?: boolean;
  /** Run the backbone's convolutional part at [height, width] instead of its declared size. */
  inputSize?: readonly [number, number];
  preprocess?: Preprocess;
  pooling?: Pooling;
  resize?: ResizeMode;
  /** Fetch missing registry weights (default yes; FINETUNE_OFFLINE=1 or false forbids it). */
  download?: boolean;
  /** The backbone a model was trained with (predict, evaluate): another network is refused by its checksum. */
  trainedWith?: { id: string; checksum: string };
  /** A fine-tuned backbone from a bundle: this ONNX network runs instead of the original weights (which need not exist). */
  trained?: TrainedBackbone;
}

/** The network a bundle's fine-tuning produced: images NHWC → pooled features, as ONNX. */
export interface TrainedBackbone {
  bytes: Uint8Array;
  sha256: string;
  /** Where it was read from (messages). */
  file: string;
  /** sha256 of the original weights it was trained from (the bundle's record). */
  checksum: string;
  featureSize: number;
}

/** A backbone as a feature source holds it: a network, an ONNX file, or (a bundle's fine-tuned ONNX network running instead) only its record. */
export type SourceBackbone = AnyBackbone | Omit<Backbone, 'model'>;

export interface EngineSettings {
  engine?: EngineChoice;
  backend?: BackendChoice;
  threads?: number;
  device?: Device;
  /** Images per backbone forward pass. */
  extractBatchSize?: number;
  /** false: never fetch missing registry weights (FINETUNE_OFFLINE=1 does the same). */
  download?: boolean;
}

/** Backbone, extractor and cache for one feature spec: shared by train, predict and evaluate. */
export interface FeatureSource {
  backbone: SourceBackbone;
  extractor: FeatureExtractor;
  pooling: Pooling;
  resize: ResizeMode;
  backend: string;
  extract(paths: string[], opts?: { variant?: Variant; onProgress?: OnProgress; signal?: AbortSignal; task?: string }): Promise<ExtractResult>;
  close(): Promise<void>;
}

export async function openFeatureSource(
  spec: string,
  choice: BackboneChoice,
  settings: EngineSettings & CacheOptions,
  onProgress?: OnProgress,
  cacheWarning: CacheWarning = cacheWarningFor(onProgress),
): Promise<FeatureSource> {
  const backend = await initBackend(settings.backend ?? TRAIN_DEFAULTS.backend);
  onProgress?.({ status: 'initiate', task: 'backbone', message: choice.trained ? `loading fine-tuned backbone ${choice.trained.file}` : `loading backbone ${spec}` });
  const pooling = choice.pooling ?? TRAIN_DEFAULTS.pooling;
  const resize = choice.resize ?? TRAIN_DEFAULTS.resize;
  const { backbone, extractor } = choice.trained ? await openTrainedBackbone(spec, choice, choice.trained, settings) : await openBackbone(spec, choice, settings, pooling, onProgress);
  onProgress?.({ status: 'done', task: 'backbone', message: `${backbone.id} → ${backbone.layer} (${pooling}, ${extractor.featureSize} features) on ${extractor.engine}/${extractor.device}` });
  const caches = new Map<string, Awaited<ReturnType<typeof openFeatureStore>>>();
  const storeFor = async (variant: Variant | undefined) => {
    const key = variantKey(variant);
    if (!caches.has(key)) {
      const featureSpec = {
        backbone: backbone.id,
        // A fine-tuned network computes other features than the weights it started from.
        weightsChecksum: choice.trained ? `onnx:${choice.trained.sha256}` : backbone.checksum,
        layer: backbone.layer,
        pooling,
        preprocess: backbone.preprocess,
        inputSize: backbone.inputSize,
        resize,
        augment: key,
      };
      caches.set(key, await openFeatureStore(featureSpec, extractor.featureSize, settings, cacheWarning));
    }
    return caches.get(key)!.store;
  };
  return {
    backbone,
    extractor,
    pooling,
    resize,
    backend,
    async extract(paths, opts = {}) {
      return extractFeatures(paths, {
        extractor,
        preprocess: backbone.preprocess,
        resize,
        batchSize: settings.extractBatchSize ?? TRAIN_DEFAULTS.extractBatchSize,
        variant: opts.variant,
        cache: await storeFor(opts.variant),
        onProgress: opts.onProgress,
        signal: opts.signal,
        task: opts.task,
      });
    },
    async close() {
      await extractor.dispose();
      for (const c of caches.values()) await c.close();
      if ('model' in backbone) backbone.model.dispose();
    },
  };
}

async function openBackbone(spec: string, choice: BackboneChoice, settings: EngineSettings, pooling: Pooling, onProgress?: OnProgress): Promise<{ backbone: SourceBackbone; extractor: FeatureExtractor }> {
  const backbone = await loadAnyBackbone(spec, { ...choice, download: choice.download ?? settings.download, onProgress });
  return { backbone, extractor: await openExtractor(backbone, pooling, settings, onProgress) };
}

/** A bundle's fine-tuned network runs on onnxruntime whatever --engine says: it exists only as ONNX. */
async function openTrainedBackbone(spec: string, choice: BackboneChoice, trained: TrainedBackbone, settings: EngineSettings): Promise<{ backbone: SourceBackbone; extractor: FeatureExtractor }> {
  if (!choice.layer || !choice.preprocess || !choice.inputSize) throw new Error('a fine-tuned backbone needs its layer, preprocessing and input size from the bundle');
  const { createOnnxExtractorFromBytes } = await import('../engines/onnx.ts');
  const extractor = await createOnnxExtractorFromBytes(trained.bytes, { featureSize: trained.featureSize, inputSize: choice.inputSize, threads: settings.threads, device: settings.device });
  const backbone: SourceBackbone = { id: spec, source: trained.file, layer: choice.layer, preprocess: choice.preprocess, inputSize: [choice.inputSize[0], choice.inputSize[1]], checksum: trained.checksum };
  return { backbone, extractor };
}

function cacheWarningFor(onProgress: OnProgress | undefined): CacheWarning {
  return cacheWarningOnce((message, dir) => onProgress?.({ status: 'warn', task: 'cache', message, path: dir }));
}

async function openExtractor(backbone: AnyBackbone, pooling: Pooling, settings: EngineSettings, onProgress?: OnProgress): Promise<FeatureExtractor> {
  try {
    if ('model' in backbone) {
      return await createExtractor(backbone.model, {
        engine: settings.engine,
        backend: settings.backend,
        layer: backbone.layer,
        pooling,
        threads: settings.threads,
        device: settings.device,
        onFallback: (message) => onProgress?.({ status: 'warn', task: 'backbone', message }),
      });
    }
    if (settings.engine === 'tfjs') throw new UsageError(`--engine tfjs: ${backbone.id} is an ONNX model, which runs on the onnx engine; leave --engine out`);
    const { createOnnxFileExtractor } = await import('../engines/onnx-file.ts');
    return await createOnnxFileExtractor(backbone.network, { layer: backbone.layer, pooling, inputSize: backbone.inputSize, threads: settings.threads, device: settings.device });
  } catch (err) {
    if ('model' in backbone) backbone.model.dispose();
    throw err;
  }
}

/** What a bundle records of each backbone its features came from. */
export interface BackbonePart {
  backbone: SourceBackbone;
  extractor: FeatureExtractor;
  pooling: Pooling;
  resize: ResizeMode;
}

/** One or several backbones whose features are concatenated row by row (fusion). */
export interface FusedSource {
  parts: BackbonePart[];
  featureSize: number;
  backend: string;
  extract(paths: string[], opts?: { variant?: Variant; onProgress?: OnProgress; signal?: AbortSignal }): Promise<ExtractResult>;
  close(): Promise<void>;
}

/**
 * Standing on several networks at once: each extracts with its own preprocessing and input
 * size, and the head sees their features side by side (it standardises every feature, so a
 * part with large activations does not drown the others). One backbone is the case of one part.
 */
export async function openFusedSource(choices: (BackboneChoice & { backbone: string })[], settings: EngineSettings & CacheOptions, onProgress?: OnProgress): Promise<FusedSource> {
  const sources: FeatureSource[] = [];
  const cacheWarning = cacheWarningFor(onProgress);
  try {
    for (const choice of choices) sources.push(await openFeatureSource(choice.backbone, choice, settings, onProgress, cacheWarning));
  } catch (err) {
    for (const s of sources) await s.close();
    throw err;
  }
  const featureSize = sources.reduce((sum, s) => sum + s.extractor.featureSize, 0);
  return {
    parts: sources.map(({ backbone, extractor, pooling, resize }) => ({ backbone, extractor, pooling, resize })),
    featureSize,
    backend: sources[0].backend,
    async extract(paths, opts = {}) {
      const results: ExtractResult[] = [];
      for (const [i, source] of sources.entries()) {
        const key = variantKey(opts.variant);
        const task = `${key === 'none' ? 'extract' : `extract:${key}`}${sources.length > 1 ? `:${i + 1}` : ''}`;
        results.push(await source.extract(paths, { ...opts, task }));
      }
      return results.length === 1 ? results[0] : concatResults(results, paths.length, featureSize);
    },
    async close() {
      for (const s of sources) await s.close();
    },
  };
}

function concatResults(results: ExtractResult[], n: number, dim: number): ExtractResult {
  const features = new Float32Array(n * dim);
  const ok = new Uint8Array(n).fill(1);
  let offset = 0;
  for (const r of results) {
    for (let i = 0; i < n; i++) {
      features.set(r.features.subarray(i * r.dim, (i + 1) * r.dim), i * dim + offset);
      ok[i] &= r.ok[i];
    }
    offset += r.dim;
  }
  const skipped = new Map(results.flatMap((r) => r.skipped.map((s) => [s.path, s] as const)));
  const sum = (f: (r: ExtractResult) => number) => results.reduce((a, r) => a + f(r), 0);
  const seconds = sum((r) => r.seconds);
  const computed = Math.max(...results.map((r) => r.computed));
  return {
    features,
    dim,
    ok,
    hashes: results[0].hashes,
    skipped: [...skipped.values()],
    cache: { hits: sum((r) => r.cache.hits), misses: sum((r) => r.cache.misses) },
    computed,
    seconds,
    imagesPerSecond: seconds > 0 ? computed / seconds : 0,
    engineImagesPerSecond: Math.min(...results.map((r) => r.engineImagesPerSecond)),
  };
}
