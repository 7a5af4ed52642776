/** The finetune library: what the CLI uses, and nothing else. */
export { train, TRAIN_DEFAULTS, type TrainOptions, type TrainResult, type ClassWeightMode } from './train.ts';
export { predict, loadModel, type Prediction, type PredictOptions, type FinetuneModel } from './predict.ts';
export { saveModel } from './model-io.ts';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './evaluate.ts';
export { writeReport } from './report-file.ts';
export { loadBackbone, type Backbone } from './backbones/resolve.ts';
export { REGISTRY } from './backbones/registry.ts';
export { loadDataset, LAYOUTS, type Dataset, type Layout } from './data/layout.ts';
export { PREPROCESS_MODES, type Preprocess } from './data/preprocess.ts';
export { ENGINES, type EngineChoice } from './engines/index.ts';
export { BACKENDS, type BackendChoice } from './engines/backend.ts';
export { FinetuneError, UsageError, ModelFileError, GateError, InterruptedError, EXIT } from './errors.ts';
export type { ProgressEvent, OnProgress } from './progress.ts';
export { loadAnyBackbone, type AnyBackbone, type OnnxBackbone } from './backbones/resolve.ts';
export { exportBackboneOnnx, type OnnxExportOptions, type OnnxExportResult } from './backbones/export-onnx.ts';
