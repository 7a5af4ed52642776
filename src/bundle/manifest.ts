import type { Augment } from '../defaults.ts';
import type { Layout } from '../data/layout.ts';
import type { Preprocess } from '../data/preprocess.ts';
import type { ResizeMode } from '../data/image.ts';
import type { Pooling } from '../engines/types.ts';
import type { EpochRecord } from '../head/train.ts';

/** Bundles written by this version; a newer one is refused rather than half-understood. */
export const BUNDLE_FORMAT = 'finetune-model';
export const BUNDLE_VERSION = 1;
export const MANIFEST_FILE = 'finetune.json';
/** A fine-tuned backbone's network, beside the head's model.json. */
export const BACKBONE_ONNX_FILE = 'backbone.onnx';

export interface BackboneRecord {
  /** Registry name or absolute path of the network. */
  id: string;
  /** sha256 of its weights at training time: predict refuses other weights. */
  checksum: string;
  layer: string;
  pooling: Pooling;
  preprocess: Preprocess;
  inputSize: [number, number];
  resize: ResizeMode;
  featureSize: number;
  /** A fine-tuned backbone: its trained network (images NHWC → pooled features) as ONNX inside the bundle, used instead of the original weights. */
  onnx?: { file: string; sha256: string };
}

/** Fine-tuning as it ran: layers of the tfjs path, or the onnx whole-network stage. */
export interface FineTuneRecord {
  engine?: 'onnx';
  layers: string[];
  lr: number;
  pooling: Pooling;
  epochs?: number;
  bestEpoch?: number;
}

/**
 * How the head was trained. What evaluate needs to re-split the data (data, labels, layout,
 * valSplit, seed) has been written since the first bundles; the optional fields came later,
 * so older bundles lack them.
 */
export interface TrainingRecord {
  /** The data folder; absolute in bundles written since evaluate re-splits from any working directory (older ones: as given). */
  data: string;
  /** The labels CSV of the csv layout (absolute, as `data`). */
  labels?: string;
  layout: Layout;
  valSplit: number;
  seed: number;
  hidden: number;
  dropout: number;
  lr: number;
  epochs: number;
  batchSize: number;
  patience: number;
  /** One weight per class, or null for none. */
  classWeights: number[] | null;
  engine: string;
  device: string;
  backend: string;
  headEngine?: 'onnx' | 'tfjs';
  augment?: Augment[];
  augmentCopies?: number;
  calibrate?: boolean;
  ensemble?: number;
  fineTune?: FineTuneRecord | null;
  lrFind?: { suggested: number; minimum: number } | null;
}

export interface Manifest {
  format: typeof BUNDLE_FORMAT;
  formatVersion: number;
  createdAt: string;
  classes: string[];
  /** One entry per backbone; several = fused features, concatenated in this order. */
  backbones: BackboneRecord[];
  /** Length of the head's input: the sum of the backbones' feature sizes. */
  featureSize: number;
  /** Relative path of the head's tfjs model.json inside the bundle. */
  head: string;
  /** Softmax temperature fitted on the validation split (1 = none). */
  temperature: number;
  training: TrainingRecord;
  counts: { train: number; valid: number; skipped: number };
  metrics: { valAccuracy?: number; valLoss?: number; valLossUncalibrated?: number; trainAccuracy: number; trainLoss: number; epochs: number; bestEpoch: number; bestEpochs?: number[] };
  history: EpochRecord[];
  versions: Record<string, string>;
}
