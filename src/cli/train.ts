import path from 'node:path';
import { Option, type Command } from 'commander';
import { EXIT } from '../errors.ts';
import { addCacheOptions, addEngineOptions, engineOptions, float, int, type EngineFlags } from './options.ts';
import { formatPercent, printInfo, printJson, printResult, printWarning } from './output.ts';
import { runCommand } from './run.ts';

interface TrainFlags extends EngineFlags {
  backbone: string;
  weights?: string;
  layer?: string;
  preprocess?: 'caffe' | 'tf' | 'torch' | 'unit';
  pooling: 'avg' | 'max' | 'flatten';
  resize: 'squash' | 'crop';
  layout?: 'fastai' | 'folders' | 'kaggle';
  valSplit: number;
  seed: number;
  hidden: number;
  dropout: number;
  lr: number;
  epochs: number;
  batchSize: number;
  patience: number;
  classWeight: 'auto' | 'balanced' | 'none';
  out?: string;
  json?: boolean;
  quiet?: boolean;
}

/** The defaults shown in help are the library's own (TRAIN_DEFAULTS), read without loading tfjs. */
export function registerTrain(program: Command, defaults: typeof import('../defaults.ts').TRAIN_DEFAULTS): void {
  const cmd = program
    .command('train')
    .description('learn a classifier from folders of images: frozen backbone features → a small dense head')
    .argument('<data>', 'data folder: DATA/train/<class>/ + DATA/valid/<class>/, DATA/<class>/, or Kaggle-style DATA/train/cat.1.jpg')
    .option('--backbone <name|path>', 'registry name (vgg16) or a tfjs model folder / Keras .h5 file', defaults.backbone)
    .option('--weights <file>', 'backbone weights file (.h5) instead of looking in the caches')
    .option('--layer <name>', 'layer whose output are the features (vgg16: block5_pool; a path: input of its first Flatten/pooling/Dense)')
    .addOption(new Option('--preprocess <mode>', "pixel preprocessing (default: the backbone's)").choices(['caffe', 'tf', 'torch', 'unit']))
    .addOption(new Option('--pooling <mode>', 'how the feature map becomes a vector').choices(['avg', 'max', 'flatten']).default(defaults.pooling))
    .addOption(new Option('--resize <mode>', 'squash to the input size, or crop the centre').choices(['squash', 'crop']).default(defaults.resize))
    .addOption(new Option('--layout <layout>', 'force a data layout instead of detecting it').choices(['fastai', 'folders', 'kaggle']))
    .option('--val-split <fraction>', 'validation fraction when the data has no valid/ folder', float('--val-split'), defaults.valSplit)
    .option('--seed <n>', 'seed of the split, initialisation, shuffling and dropout', int('--seed'), defaults.seed)
    .option('--hidden <units>', 'hidden units of the head (0 = linear head)', int('--hidden'), defaults.hidden)
    .option('--dropout <rate>', 'dropout after the hidden layer', float('--dropout'), defaults.dropout)
    .option('--lr <rate>', 'Adam learning rate', float('--lr'), defaults.lr)
    .option('--epochs <n>', 'most epochs of head training', int('--epochs'), defaults.epochs)
    .option('--batch-size <n>', 'head training batch size', int('--batch-size'), defaults.batchSize)
    .option('--patience <n>', 'stop after this many epochs without a better validation loss (best weights kept)', int('--patience'), defaults.patience)
    .addOption(new Option('--class-weight <mode>', 'loss weights per class (auto: balanced when the largest class is > 1.5× the smallest)').choices(['auto', 'balanced', 'none']).default(defaults.classWeight))
    .option('--out <dir>', 'model folder to write (default: models/<name of the data folder>)')
    .option('--json', 'print one JSON object with the result instead of text')
    .option('-q, --quiet', 'no progress output');
  addEngineOptions(cmd, defaults);
  addCacheOptions(cmd);
  cmd.action((data: string, flags: TrainFlags) =>
    runCommand(flags, async ({ out, progress, signal }) => {
      const { train, saveModel } = await import('../index.ts');
      const outDir = flags.out ?? path.join('models', path.basename(path.resolve(data)));
      const result = await train(data, {
        backbone: flags.backbone,
        weights: flags.weights,
        layer: flags.layer,
        preprocess: flags.preprocess,
        pooling: flags.pooling,
        resize: flags.resize,
        layout: flags.layout,
        valSplit: flags.valSplit,
        seed: flags.seed,
        hidden: flags.hidden,
        dropout: flags.dropout,
        lr: flags.lr,
        epochs: flags.epochs,
        batchSize: flags.batchSize,
        patience: flags.patience,
        classWeight: flags.classWeight,
        ...engineOptions(flags),
        onProgress: progress,
        signal,
      });
      await saveModel(outDir, result);
      result.head.dispose();
      const m = result.manifest.metrics;
      if (flags.json) {
        printJson({
          model: outDir,
          classes: result.classes,
          counts: result.counts,
          metrics: { valAccuracy: m.valAccuracy ?? null, valLoss: m.valLoss ?? null, epochs: m.epochs, bestEpoch: m.bestEpoch },
          timing: result.timing,
          cache: result.cache,
          engine: result.engine,
          device: result.device,
          backend: result.backend,
          skipped: result.skipped,
          warnings: result.warnings,
        });
      } else {
        printResult(`model     ${outDir}`);
        printResult(`classes   ${result.classes.join(', ')}`);
        printResult(`images    ${result.counts.train} train, ${result.counts.valid} valid, ${result.counts.skipped} skipped`);
        printResult(`valid     accuracy ${formatPercent(m.valAccuracy)}, log loss ${m.valLoss?.toFixed(4) ?? '-'} (best epoch ${m.bestEpoch} of ${m.epochs})`);
        printResult(
          `time      features ${result.timing.featuresSeconds.toFixed(1)} s (${result.timing.imagesPerSecond.toFixed(1)} images/s, ${result.cache.hits} cached, ${result.engine}/${result.device}), head ${result.timing.trainSeconds.toFixed(1)} s (tfjs-${result.backend})`,
        );
        if (result.skipped.length > 0) {
          printWarning(out, `skipped ${result.skipped.length} file(s):`);
          for (const s of result.skipped) process.stderr.write(`  ${s.path}: ${s.reason}\n`);
        }
        printInfo(out, `predict with: finetune predict --model ${outDir} IMAGE...`);
      }
      return result.skipped.length > 0 ? EXIT.skipped : EXIT.ok;
    }),
  );
}
