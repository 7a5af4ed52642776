/** Which engine extracts features and trains: onnxruntime where it loads ('auto'), or tfjs. */
export const ENGINES = ['auto', 'onnx', 'tfjs'] as const;
export type EngineChoice = (typeof ENGINES)[number];

/** tfjs backends, tried in this order by 'auto'. */
export const BACKENDS = ['auto', 'node-gpu', 'node', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

/** avgmax: average and maximum side by side (2 × channels), the "concat pooling" of fastai. */
export const POOLINGS = ['avg', 'max', 'avgmax', 'flatten'] as const;
export type Pooling = (typeof POOLINGS)[number];
export type EngineName = 'onnx' | 'tfjs';
export type Device = 'cpu' | 'gpu';

/** What every frozen-backbone engine offers: preprocessed NHWC images in, pooled features out. */
export interface FeatureExtractor {
  readonly engine: EngineName;
  /** What actually runs the numbers, e.g. `cpu`, `cuda`, `tfjs-wasm`, `tfjs-node-gpu`. */
  readonly device: string;
  /** Length of one image's feature vector after pooling. */
  readonly featureSize: number;
  /** [height, width] the backbone expects. */
  readonly inputSize: readonly [number, number];
  /**
   * `images` holds `count` preprocessed images, NHWC float32, length count*h*w*3.
   * Resolves to count*featureSize floats, row-major (image-major).
   */
  run(images: Float32Array, count: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

export interface ExtractorOptions {
  /** Name of the layer whose output becomes the features (pooling applied after it). */
  layer: string;
  pooling: Pooling;
  /** Intra-op threads for CPU engines; default: all cores. */
  threads?: number;
  device?: Device;
}

/** Thrown by an exporter for a layer it cannot translate; the caller falls back to tfjs. */
export class UnsupportedLayerError extends Error {
  constructor(
    readonly layerName: string,
    readonly className: string,
    readonly reason: string,
  ) {
    super(`layer ${layerName} (${className}): ${reason}`);
    this.name = 'UnsupportedLayerError';
  }
}
