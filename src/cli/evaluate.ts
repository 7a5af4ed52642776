import { Option, type Command } from 'commander';
import { EXIT } from '../index.ts';
import { evaluationLines } from './format-evaluation.ts';
import { addCacheOptions, addEngineOptions, engineOptions, fraction, threshold, type EngineFlags } from './options.ts';
import { paint, printInfo, printJson, printResult, printSkipped } from './output.ts';
import { runCommand } from './run.ts';

interface EvaluateFlags extends EngineFlags {
  model?: string;
  split?: 'train' | 'valid' | 'test' | 'all';
  layout?: 'fastai' | 'folders' | 'kaggle';
  labels?: string;
  tta?: boolean;
  minAccuracy?: number;
  maxLogLoss?: number;
  report?: string;
  weights?: string;
  backbone?: string;
  json?: boolean;
  quiet?: boolean;
}

export function registerEvaluate(program: Command, defaults: typeof import('../index.ts').TRAIN_DEFAULTS): void {
  const cmd = program
    .command('evaluate')
    .description('score a labelled folder with a trained model: accuracy, log loss, confusion matrix, per-class metrics; a CI gate with --min-accuracy')
    .argument('<data>', 'labelled data: the training layout, or a folder of class folders')
    .option('--model <dir>', 'model folder (default: the model trained last)')
    .addOption(new Option('--split <split>', 'which images (default: valid where the data has a validation split, else all)').choices(['train', 'valid', 'test', 'all']))
    .addOption(new Option('--layout <layout>', 'force a data layout instead of detecting it').choices(['fastai', 'folders', 'kaggle']))
    .option('--labels <file.csv>', 'labels from a CSV with a header: path,label[,split], as in train')
    .option('--tta', 'test-time augmentation: average over the image and its mirror image')
    .option('--min-accuracy <x>', 'exit 4 when accuracy is below x (0–1, or a percent: 95%)', fraction('--min-accuracy'))
    .option('--max-log-loss <y>', 'exit 4 when log loss is above y (≥ 0)', threshold('--max-log-loss'))
    .option('--report <file.html>', 'write a self-contained HTML report (metrics, confusion matrix, curves, galleries, calibration)')
    .option('--weights <file>', 'backbone weights file, if not in the caches')
    .option('--backbone <path>', 'where the backbone is now, if it was given by a path that has moved')
    .option('--json', 'print one JSON object: accuracy, logLoss, rocAuc, ece, uncalibrated, perClass, confusionMatrix, counts')
    .option('-q, --quiet', 'no progress output');
  addEngineOptions(cmd, defaults);
  addCacheOptions(cmd);
  cmd.action((data: string, flags: EvaluateFlags) =>
    runCommand(flags, async ({ out, progress, signal }) => {
      const [{ loadModel }, { evaluate }, { writeReport }, { GateError }] = await Promise.all([
        import('../index.ts'),
        import('../index.ts'),
        import('../index.ts'),
        import('../index.ts'),
      ]);
      await (await import('../index.ts')).checkOutputFiles([{ file: flags.report, flag: '--report' }]);
      const model = await loadModel(flags.model, { backend: flags.backend });
      try {
        const result = await evaluate(model, data, { ...engineOptions(flags), split: flags.split, layout: flags.layout, labels: flags.labels, tta: flags.tta, weights: flags.weights, backbone: flags.backbone, onProgress: progress, signal });
        progress.stop();
        const e = result.evaluation;
        if (flags.report) await writeReport(flags.report, model, result);
        if (flags.json) {
          printJson({
            model: model.dir,
            split: result.split,
            classes: model.classes,
            accuracy: e.accuracy,
            logLoss: e.logLoss,
            rocAuc: e.rocAuc,
            ece: e.ece,
            uncalibrated: result.uncalibrated ?? null,
            perClass: e.perClass,
            confusionMatrix: e.confusionMatrix,
            reliability: e.reliability,
            counts: result.counts,
            cache: result.cache,
            skipped: result.skipped,
            report: flags.report ?? null,
          });
        } else {
          const header = [`model      ${model.dir}`, `split      ${result.split} (${result.counts.evaluated} images, ${result.counts.skipped} skipped)`];
          for (const line of evaluationLines(out, model.classes, e, header, result.uncalibrated)) printResult(line);
          if (flags.report) printInfo(out, `report: ${flags.report}`);
          printSkipped(out, result.skipped);
        }
        const misses: string[] = [];
        if (flags.minAccuracy !== undefined && e.accuracy < flags.minAccuracy) misses.push(`accuracy ${e.accuracy.toFixed(4)} is below --min-accuracy ${flags.minAccuracy}`);
        if (flags.maxLogLoss !== undefined && e.logLoss > flags.maxLogLoss) misses.push(`log loss ${e.logLoss.toFixed(4)} is above --max-log-loss ${flags.maxLogLoss}`);
        if (misses.length > 0) throw new GateError(`gate failed: ${misses.join('; ')}`);
        if (flags.minAccuracy !== undefined || flags.maxLogLoss !== undefined) printInfo(out, paint(out, 'green', 'gate passed'));
        return result.skipped.length > 0 ? EXIT.skipped : EXIT.ok;
      } finally {
        model.head.dispose();
      }
    }),
  );
}
