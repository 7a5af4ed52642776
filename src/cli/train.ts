import path from 'node:path';
import { Option, type Command } from 'commander';
import { EXIT, UsageError } from '../index.ts';
import { addCacheOptions, addEngineOptions, count, engineOptions, int, positive, share, type EngineFlags } from './options.ts';
import { formatPercent, printInfo, printJson, printResult, printSkipped } from './output.ts';
import { runCommand } from './run.ts';
import { shellQuote } from './shell-quote.ts';
import { POOLINGS, type Pooling } from '../index.ts';
import { AUGMENTS, FINE_TUNE_DEFAULTS, type Augment } from '../index.ts';

export interface TrainFlags extends EngineFlags {
  backbone: string[];
  weights?: string;
  layer?: string;
  preprocess?: string;
  inputSize?: string;
  augment?: string;
  augmentCopies: number;
  ensemble?: number;
  calibrate: boolean;
  fineTune?: number | 'all';
  fineTuneEpochs?: number;
  fineTuneBlocks?: number;
  fineTuneLr?: number;
  pooling?: Pooling;
  resize: 'squash' | 'crop';
  layout?: 'fastai' | 'folders' | 'kaggle';
  labels?: string;
  valSplit: number;
  seed: number;
  hidden: number;
  dropout: number;
  lr: number | 'auto';
  epochs: number;
  batchSize: number;
  patience: number;
  classWeight: 'auto' | 'balanced' | 'none';
  out?: string;
  report?: string;
  exclude?: string;
  json?: boolean;
  quiet?: boolean;
}

const DEFAULT_BACKBONES: string[] = [];

/** `--backbone A,B --backbone C` → [A, B, C]. */
function collect(value: string, previous: string[]): string[] {
  return [...(previous === DEFAULT_BACKBONES ? [] : previous), ...list(value)];
}

function list(value: string): string[] {
  return value.split(',').map((v) => v.trim());
}

/** One value for every backbone, or "A,B" with one per backbone ('' = that backbone's default). */
function perBackbone<T = string>(value: string | undefined, parse: (v: string) => T = (v) => v as T): (T | undefined)[] | undefined {
  if (value === undefined) return undefined;
  return list(value).map((v) => (v === '' ? undefined : parse(v)));
}

function checkPreprocess(mode: string): 'caffe' | 'tf' | 'torch' | 'unit' {
  if (mode === 'imagenet') return 'torch';
  if (!['caffe', 'tf', 'torch', 'unit'].includes(mode)) throw new UsageError(`--preprocess ${mode}: use caffe, tf, torch (= imagenet) or unit`);
  return mode as 'caffe' | 'tf' | 'torch' | 'unit';
}

function parseSize(text: string): readonly [number, number] {
  const m = /^(\d+)(?:[x×](\d+))?$/.exec(text);
  const h = Number(m?.[1]);
  const w = Number(m?.[2] ?? m?.[1]);
  if (!m || h < 16 || w < 16 || h > 2048 || w > 2048) throw new UsageError(`--input-size ${text}: give N or HxW, between 16 and 2048`);
  return [h, w];
}

function parseLr(value: string): number | 'auto' {
  return value === 'auto' ? 'auto' : positive('--lr')(value);
}

function checkAugment(name: string): Augment {
  if (!(AUGMENTS as readonly string[]).includes(name)) throw new UsageError(`--augment ${name}: the variants available are: ${AUGMENTS.join(', ')}`);
  return name as Augment;
}

function parseFineTune(value: string): number | 'all' {
  return value === 'all' ? 'all' : count('--fine-tune')(value);
}

/** The flags of train (also taken by lr-find): data, backbone, head, engine, cache. */
export function addTrainOptions(cmd: Command, defaults: Defaults): Command {
  cmd
    .addOption(
      new Option('--backbone <name|path>', 'registry name (see `finetune models list`), a tfjs model folder, a Keras .h5 or an ONNX .onnx file; several (A,B or repeated) fuse their features')
        .argParser(collect)
        .default(DEFAULT_BACKBONES, JSON.stringify(defaults.backbone)),
    )
    .option('--weights <file>', 'backbone weights file (.h5) instead of looking in the caches; A.h5,B.h5 with fused backbones (one per backbone, empty = look up)')
    .option('--layer <name>', 'layer whose output are the features (vgg16: block5_pool; a path: input of its first Flatten/pooling/Dense; .onnx: any node output, default the map its last pooling/Flatten/Gemm reads); A,B with fused backbones')
    .option('--preprocess <mode>', "pixel preprocessing: caffe, tf, torch = imagenet (ImageNet mean/std, as torchvision and timm) or unit (default: the backbone's; tfjs folders: unit; .onnx NCHW: imagenet); A,B with fused backbones")
    .option('--input-size <n|HxW>', 'run the convolutional part of the backbone at this size (e.g. 320; a Flatten top is left out); A,B with fused backbones')
    .addOption(
      new Option('--pooling <mode>', `how the feature map becomes a vector (avgmax: average and maximum side by side; default: ${defaults.pooling}, ${FINE_TUNE_DEFAULTS.pooling} with --fine-tune)`).choices([...POOLINGS]),
    )
    .addOption(new Option('--resize <mode>', 'squash to the input size, or crop the centre').choices(['squash', 'crop']).default(defaults.resize))
    .addOption(new Option('--layout <layout>', 'force a data layout instead of detecting it').choices(['fastai', 'folders', 'kaggle']))
    .option('--labels <file.csv>', 'labels from a CSV with a header: path,label[,split] (paths relative to DATA or to the CSV)')
    .option('--val-split <fraction>', 'validation fraction when the data has no valid/ folder', share('--val-split'), defaults.valSplit)
    .option('--seed <n>', 'seed of the split, initialisation, shuffling and dropout', int('--seed'), defaults.seed)
    .option('--hidden <units>', 'hidden units of the head (0 = linear head)', int('--hidden', 0), defaults.hidden)
    .option('--dropout <rate>', 'dropout after the hidden layer', share('--dropout'), defaults.dropout)
    .option('--lr <rate>', 'Adam learning rate, or auto (the range test of `finetune lr-find`)', parseLr, defaults.lr)
    .option('--epochs <n>', 'most epochs of head training', count('--epochs'), defaults.epochs)
    .option('--batch-size <n>', 'head training batch size', count('--batch-size'), defaults.batchSize)
    .option('--patience <n>', 'stop after this many epochs without a better validation loss (best weights kept)', count('--patience'), defaults.patience)
    .addOption(new Option('--class-weight <mode>', 'loss weights per class (auto: balanced when the largest class is > 1.5× the smallest)').choices(['auto', 'balanced', 'none']).default(defaults.classWeight))
    .option('--augment <list>', 'flip, crop: also train the head on these variants of each image (features cached per variant; crop = random 75–100% crops); with --fine-tune all|N also drawn afresh each epoch while fine-tuning, with vflip and rot90 (satellite, microscope) and crop = random resized crop')
    .option('--augment-copies <k>', 'random crops per training image with --augment crop', count('--augment-copies', 20), defaults.augmentCopies)
    .option('--fine-tune <n|all>', "after the head converges, also train the whole backbone (all) or its last n layers with weights on images, on onnxruntime (--engine tfjs: the old tfjs path, n only)", parseFineTune)
    .option('--fine-tune-epochs <n>', `epochs of fine-tuning on images, best validation loss kept (default: ${FINE_TUNE_DEFAULTS.fineTuneEpochs})`, count('--fine-tune-epochs'))
    .option('--fine-tune-blocks <k>', 'the same in whole VGG blocks, block5 first', count('--fine-tune-blocks'))
    .option('--fine-tune-lr <rate>', 'learning rate while fine-tuning (default: --lr; --lr / 10 with --engine tfjs)', positive('--fine-tune-lr'))
    .addOption(
      new Option('--ensemble <k>', `train k heads (seeds seed … seed+k−1) and merge them into one that averages their logits (default: ${defaults.ensemble}, ${FINE_TUNE_DEFAULTS.ensemble} with --fine-tune)`).argParser(count('--ensemble', 20)),
    )
    .option('--no-calibrate', 'do not fit a softmax temperature on the validation split')
    .option('--exclude <fixes.csv>', 'apply a fix list from `finetune audit --fix-list`: remove → left out, relabel → the suggested class (files are never touched)');
  addEngineOptions(cmd, defaults);
  return addCacheOptions(cmd);
}

/** One function from parsed flags to the library's options (STYLE 8). */
export function trainOptions(flags: TrainFlags, defaults: Defaults) {
  return {
    backbone: flags.backbone.length > 0 ? flags.backbone : defaults.backbone,
    weights: perBackbone(flags.weights),
    layer: perBackbone(flags.layer),
    preprocess: perBackbone(flags.preprocess, checkPreprocess),
    inputSize: perBackbone(flags.inputSize, parseSize),
    augment: flags.augment ? list(flags.augment).map(checkAugment) : undefined,
    augmentCopies: flags.augmentCopies,
    calibrate: flags.calibrate,
    ensemble: flags.ensemble,
    fineTune: flags.fineTune,
    fineTuneEpochs: flags.fineTuneEpochs,
    fineTuneBlocks: flags.fineTuneBlocks,
    fineTuneLr: flags.fineTuneLr,
    pooling: flags.pooling,
    resize: flags.resize,
    layout: flags.layout,
    labels: flags.labels,
    valSplit: flags.valSplit,
    seed: flags.seed,
    hidden: flags.hidden,
    dropout: flags.dropout,
    lr: flags.lr,
    epochs: flags.epochs,
    batchSize: flags.batchSize,
    patience: flags.patience,
    classWeight: flags.classWeight,
    exclude: flags.exclude,
  };
}

type Defaults = typeof import('../index.ts').TRAIN_DEFAULTS;

/** The defaults shown in help are the library's own (TRAIN_DEFAULTS), read without loading tfjs. */
export function registerTrain(program: Command, defaults: typeof import('../index.ts').TRAIN_DEFAULTS): void {
  const cmd = program
    .command('train')
    .description('learn a classifier from folders of images: frozen backbone features → a small dense head')
    .argument('<data>', 'data folder: DATA/train/<class>/ + DATA/valid/<class>/, DATA/<class>/, or Kaggle-style DATA/train/cat.1.jpg')
    .option('--out <dir>', 'model folder to write (default: models/<name of the data folder>)')
    .option('--report <file.html>', 'after training, write the HTML report of the validation split (as evaluate --report)')
    .option('--json', 'print one JSON object with the result instead of text')
    .option('-q, --quiet', 'no progress output');
  addTrainOptions(cmd, defaults);
  cmd.action((data: string, flags: TrainFlags) =>
    runCommand(flags, async ({ out, progress, signal }) => {
      const [{ train }, { saveModel }, { checkTrainOutputs }] = await Promise.all([import('../index.ts'), import('../index.ts'), import('../index.ts')]);
      const csv = /\.csv$/i.test(data);
      const outDir = flags.out ?? path.join('models', path.basename(path.resolve(data), csv ? path.extname(data) : ''));
      await checkTrainOutputs({ data: flags.labels || csv ? undefined : data, out: outDir, outGiven: flags.out !== undefined, report: flags.report, cacheDir: engineOptions(flags).cacheDir });
      const result = await train(data, {
        ...trainOptions(flags, defaults),
        ...engineOptions(flags),
        onProgress: progress,
        signal,
      });
      await saveModel(outDir, result, { onProgress: progress });
      result.head.dispose();
      if (flags.report) {
        const [{ loadModel }, { evaluate }, { writeReport }] = await Promise.all([import('../index.ts'), import('../index.ts'), import('../index.ts')]);
        const model = await loadModel(outDir);
        try {
          const scored = await evaluate(model, data, { ...engineOptions(flags), split: result.counts.valid > 0 ? 'valid' : 'train', signal });
          await writeReport(flags.report, model, scored);
        } finally {
          model.head.dispose();
        }
        printInfo(out, `report: ${flags.report}`);
      }
      const m = result.manifest.metrics;
      if (flags.json) {
        printJson({
          model: outDir,
          classes: result.classes,
          counts: result.counts,
          metrics: { valAccuracy: m.valAccuracy ?? null, valLoss: m.valLoss ?? null, epochs: m.epochs, bestEpoch: m.bestEpoch, ...(m.bestEpochs && { bestEpochs: m.bestEpochs }) },
          timing: result.timing,
          cache: result.cache,
          engine: result.engine,
          device: result.device,
          backend: result.backend,
          headEngine: result.headEngine,
          fineTune: result.fineTune,
          skipped: result.skipped,
          warnings: result.warnings,
          report: flags.report ?? null,
        });
      } else {
        printResult(`model     ${outDir}`);
        printResult(`classes   ${result.classes.join(', ')}`);
        printResult(`images    ${result.counts.train} train, ${result.counts.valid} valid, ${result.counts.skipped} skipped`);
        const t = result.manifest.temperature;
        const calibrated = t !== 1 && m.valLossUncalibrated !== undefined ? ` after temperature ${t.toFixed(2)} (${m.valLossUncalibrated.toFixed(4)} before)` : '';
        printResult(`valid     accuracy ${formatPercent(m.valAccuracy)}, log loss ${m.valLoss?.toFixed(4) ?? '-'}${calibrated} (${m.bestEpochs ? `${m.bestEpochs.length} heads, best epochs ${m.bestEpochs.join(', ')}` : `best epoch ${m.bestEpoch} of ${m.epochs}`})`);
        printResult(
          `time      features ${result.timing.featuresSeconds.toFixed(1)} s (${result.timing.imagesPerSecond.toFixed(1)} images/s, ${result.cache.hits} cached, ${result.engine}/${result.device}), head ${result.timing.trainSeconds.toFixed(1)} s (${result.headEngine === 'onnx' ? 'onnx' : `tfjs-${result.backend}`})`,
        );
        const ft = result.fineTune;
        if (ft) {
          const change = ft.bestEpoch > 0 ? `valid accuracy ${formatPercent(ft.valAccuracyBefore ?? undefined)} → ${formatPercent(ft.valAccuracyAfter ?? undefined)}, log loss ${ft.valLossBefore?.toFixed(4) ?? '-'} → ${ft.valLossAfter?.toFixed(4) ?? '-'}` : 'no epoch beat the frozen backbone on validation loss; kept it';
          printResult(`fine-tune ${ft.layers.length} layers, ${ft.epochs} epochs (best ${ft.bestEpoch}) on ${ft.engine}/${ft.device} at ${ft.imagesPerSecond.toFixed(1)} images/s: ${change}`);
        }
        printSkipped(out, result.skipped);
        printInfo(out, `predict with: finetune predict --model ${shellQuote(outDir)} IMAGE...`);
      }
      return result.skipped.length > 0 ? EXIT.skipped : EXIT.ok;
    }),
  );
}
