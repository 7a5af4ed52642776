/**
 * The finetune library, and the one door to it: src/cli/ imports nothing else (test/layout.test.ts).
 *
 * Importing it is cheap. Choices, defaults, errors and types load at once; every function that
 * needs tfjs, onnxruntime or sharp loads its module on its first call, so `finetune --help` and
 * a script that only reads `TRAIN_DEFAULTS` never pay for the engines (≈ 0.5 s here).
 */

/** A function of a module loaded on first call; sync functions become async by the load. */
type Lazy<F extends (...args: never[]) => unknown> = (...args: Parameters<F>) => Promise<Awaited<ReturnType<F>>>;

function lazy<F extends (...args: never[]) => unknown>(load: () => Promise<F>): Lazy<F> {
  return (async (...args: Parameters<F>) => ((await load()) as (...a: Parameters<F>) => unknown)(...args)) as Lazy<F>;
}

// Choices and defaults: the CLI's `.choices()` and `--help` defaults read these.
export { TRAIN_DEFAULTS, FINE_TUNE_DEFAULTS, AUGMENTS, type Augment, type ClassWeightMode } from './defaults.ts';
export { ENGINES, BACKENDS, POOLINGS, type EngineChoice, type BackendChoice, type Pooling, type Device } from './engines/types.ts';
export { LAYOUTS, SPLITS, type Layout, type Split } from './defaults.ts';
export type { Dataset, Sample } from './data/layout.ts';
export { PREPROCESS_MODES, type Preprocess } from './data/preprocess.ts';
export { EXPORT_FORMATS, type ExportFormat, type ExportedPreprocessing } from './export/types.ts';
export { SERVE_DEFAULTS } from './serve/defaults.ts';
export { AUDIT_DEFAULTS } from './audit/defaults.ts';
export { LABEL_SCORES } from './audit/label-issues.ts';

// Errors, progress events, places on disk.
export { FinetuneError, UsageError, ModelFileError, GateError, InterruptedError, EXIT, firstLine } from './errors.ts';
export type { ProgressEvent, OnProgress } from './progress.ts';
export { finetuneHome, modelsDir, featureCacheDir, lastModelFile } from './paths.ts';
export { packageVersion, packageVersions } from './package.ts';
export { formatBytes } from './fs/sizes.ts';
export { reasonOf } from './fs/reasons.ts';
export type { TrainOutputs } from './fs/output-checks.ts';

// Files: data sets, output checks, atomic writes, the feature cache, the machine.
export const loadDataset = lazy(async () => (await import('./data/layout.ts')).loadDataset);
export const checkTrainOutputs = lazy(async () => (await import('./fs/output-checks.ts')).checkTrainOutputs);
export const checkOutputFiles = lazy(async () => (await import('./fs/output-checks.ts')).checkOutputFiles);
export const writeFileAtomic = lazy(async () => (await import('./fs/atomic.ts')).writeFileAtomic);
export type { FeatureCache, CacheInfo, FeatureCacheOptions, CacheAccess } from './features/cache.ts';
export const openFeatureCache = lazy(async () => {
  const { FeatureCache } = await import('./features/cache.ts');
  return (dir: string, options?: Parameters<typeof FeatureCache.open>[1]) => FeatureCache.open(dir, options);
});
export const cacheFolderKind = lazy(async () => (await import('./features/cache.ts')).cacheFolderKind);
export type { DoctorReport, DoctorProbes } from './engines/doctor.ts';
export const doctor = lazy(async () => (await import('./engines/doctor.ts')).doctor);
export type { FixRow, FixAction } from './audit/fix-list.ts';
export const fixRows = lazy(async () => (await import('./audit/fix-list.ts')).fixRows);
export const formatFixList = lazy(async () => (await import('./audit/fix-list.ts')).formatFixList);
export const readFixList = lazy(async () => (await import('./audit/fix-list.ts')).readFixList);
export const applyFixList = lazy(async () => (await import('./audit/fix-list.ts')).applyFixList);
export type { Evaluation } from './metrics/index.ts';

// Pipelines.
export type { TrainOptions, TrainResult } from './pipeline/train.ts';
export const train = lazy(async () => (await import('./pipeline/train.ts')).train);
export const findLearningRate = lazy(async () => (await import('./pipeline/train.ts')).findLearningRate);
export type { LrRangeResult } from './head/lr-range.ts';
export { suggestLearningRate, type LrPoint } from './head/lr-suggest.ts';
export type { Prediction, PredictOptions, FinetuneModel } from './pipeline/predict.ts';
export const loadModel = lazy(async () => (await import('./pipeline/predict.ts')).loadModel);
export const predict = lazy(async () => (await import('./pipeline/predict.ts')).predict);
export type { EvaluateOptions, EvaluateResult } from './pipeline/evaluate.ts';
export const evaluate = lazy(async () => (await import('./pipeline/evaluate.ts')).evaluate);
export const saveModel = lazy(async () => (await import('./bundle/save-model.ts')).saveModel);
export const writeReport = lazy(async () => (await import('./report/write-report.ts')).writeReport);

// Backbones and weights.
export type { Backbone, AnyBackbone, OnnxBackbone } from './backbones/resolve.ts';
export const loadBackbone = lazy(async () => (await import('./backbones/resolve.ts')).loadBackbone);
export const loadAnyBackbone = lazy(async () => (await import('./backbones/resolve.ts')).loadAnyBackbone);
export type { ModelListing, PullOptions, PullResult, VerifyResult, LayerInfo } from './backbones/models.ts';
export const listModels = lazy(async () => (await import('./backbones/models.ts')).listModels);
export const pullModel = lazy(async () => (await import('./backbones/models.ts')).pullModel);
export const verifyModels = lazy(async () => (await import('./backbones/models.ts')).verifyModels);
export const importModel = lazy(async () => (await import('./backbones/models.ts')).importModel);
export const exportBackbone = lazy(async () => (await import('./backbones/models.ts')).exportBackbone);
export const backboneLayers = lazy(async () => (await import('./backbones/models.ts')).backboneLayers);
export type { OnnxExportOptions, OnnxExportResult } from './backbones/export-onnx.ts';
export const exportBackboneOnnx = lazy(async () => (await import('./backbones/export-onnx.ts')).exportBackboneOnnx);
export type { ImagenetClass, ImagenetPrediction, ImagenetOptions } from './backbones/imagenet.ts';
export const imagenetTop = lazy(async () => (await import('./backbones/imagenet.ts')).imagenetTop);
export type { PullDatasetResult, PullDatasetOptions } from './data/datasets.ts';
export const pullDataset = lazy(async () => (await import('./data/datasets.ts')).pullDataset);

// Fine-tuning the whole network.
export type { WholeNetworkOptions, WholeNetworkResult } from './fine-tune/whole-network.ts';
export const fineTuneWholeNetwork = lazy(async () => (await import('./fine-tune/whole-network.ts')).fineTuneWholeNetwork);
export type { FileImagesOptions } from './fine-tune/file-images.ts';
export const fileImages = lazy(async () => (await import('./fine-tune/file-images.ts')).fileImages);
export type { CachedImagesOptions } from './fine-tune/cached-images.ts';
export const cachedImages = lazy(async () => (await import('./fine-tune/cached-images.ts')).cachedImages);
export type { ImageSource, FineTuneResult } from './fine-tune/loop.ts';
export type { FineTuneSummary } from './fine-tune/train-stage.ts';

// Shipping and auditing.
export type { ExportOptions, ExportResult } from './export/model-export.ts';
export const exportModel = lazy(async () => (await import('./export/model-export.ts')).exportModel);
export type { Predictor, PredictorInput, PredictorOptions } from './serve/predictor.ts';
export const createPredictor = lazy(async () => (await import('./serve/predictor.ts')).createPredictor);
export type { ServeOptions, ServeEvent, PredictionServer } from './serve/server.ts';
export const serve = lazy(async () => (await import('./serve/server.ts')).serve);
export type { AuditOptions, AuditResult, LabelIssue, DuplicatePair, Outlier } from './audit/audit.ts';
export const audit = lazy(async () => (await import('./audit/audit.ts')).audit);
export const writeAuditReport = lazy(async () => (await import('./audit/report-file.ts')).writeAuditReport);
