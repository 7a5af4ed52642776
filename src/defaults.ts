import type { ResizeMode } from './data/image.ts';
import type { BackendChoice } from './engines/backend.ts';
import type { EngineChoice } from './engines/index.ts';
import type { Pooling } from './engines/types.ts';

/** Defaults live here once; the CLI's help text reads them. */
export const TRAIN_DEFAULTS = Object.freeze({
  backbone: 'vgg16',
  // avgmax and 5 merged heads: the recipe chosen on splits of dogscats train/ (README, Accuracy).
  pooling: 'avgmax' as Pooling,
  resize: 'squash' as ResizeMode,
  valSplit: 0.2,
  seed: 42,
  hidden: 256,
  dropout: 0.5,
  lr: 1e-3 as number | 'auto',
  epochs: 10,
  batchSize: 32,
  patience: 3,
  engine: 'auto' as EngineChoice,
  backend: 'auto' as BackendChoice,
  extractBatchSize: 16,
  classWeight: 'auto' as ClassWeightMode,
  augment: [] as Augment[],
  augmentCopies: 1,
  calibrate: true,
  ensemble: 5,
});

/** Fine-tuning trains one chain of layers into one head: plain average pooling, a single head. */
export const FINE_TUNE_DEFAULTS = Object.freeze({
  pooling: 'avg' as Pooling,
  ensemble: 1,
  /**
   * Whole-network epochs on images after the head. 8: on a held-out 20% of eurosat's training
   * part (mobilenet_v2 @128), 3 epochs gave 94.4% and 8 gave 96.5% (best epoch 7).
   */
  fineTuneEpochs: 8,
  /**
   * The head's rate while fine-tuning the whole network on onnx, as a multiple of --lr (earlier
   * layers get down to a tenth of it). 1: on the same hold-out, 2 epochs at 1e-3 gave 91.7%,
   * at 1e-4 85.8%. The tfjs path keeps lr ÷ 10.
   */
  fineTuneLrFactor: 1,
});

/** flip and crop also make cached feature variants for the frozen head; vflip and rot90 act only while fine-tuning the whole network. */
export const AUGMENTS = ['flip', 'vflip', 'rot90', 'crop'] as const;
export type Augment = (typeof AUGMENTS)[number];
export type ClassWeightMode = 'auto' | 'balanced' | 'none';

/** Data set layouts (README, Data layouts) and the splits a command can read. */
export const LAYOUTS = ['fastai', 'folders', 'kaggle', 'csv'] as const;
export type Layout = (typeof LAYOUTS)[number];
export const SPLITS = ['train', 'valid', 'test', 'all'] as const;
export type Split = (typeof SPLITS)[number];
