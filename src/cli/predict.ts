import { Option, type Command } from 'commander';
import { EXIT, UsageError } from '../errors.ts';
import { addCacheOptions, addEngineOptions, count, engineOptions, type EngineFlags } from './options.ts';
import { printJson, printResult } from './output.ts';
import type { OnProgress } from '../progress.ts';
import { runCommand, writeAtomically } from './run.ts';

interface PredictFlags extends EngineFlags {
  model?: string;
  top?: number;
  tta?: boolean;
  weights?: string;
  backbone?: string;
  csv?: string;
  kaggle?: string;
  clip: string;
  imagenet?: boolean;
  classNames?: string;
  json?: boolean;
  quiet?: boolean;
}

export function registerPredict(program: Command, defaults: typeof import('../defaults.ts').TRAIN_DEFAULTS): void {
  const cmd = program
    .command('predict')
    .description('classify images with a trained model: one line per image (path, label, probability)')
    .argument('<paths...>', 'image files, folders or globs')
    .option('--model <dir>', 'model folder (default: the model trained last)')
    .option('--top <k>', 'show the k most probable classes (default: 1; 5 with --imagenet)', count('--top'))
    .option('--tta', 'test-time augmentation: average over the image and its mirror image')
    .option('--weights <file>', 'backbone weights file, if not in the caches (must be the ones used in training)')
    .option('--backbone <path>', 'where the backbone is now, if it was given by a path that has moved')
    .option('--csv <file>', 'also write path,label,probability and one column per class to a CSV file')
    .option('--kaggle <file>', 'also write a Kaggle dogs-vs-cats submission (id,label = P(dog)) to a file')
    .option('--clip <range>', 'clip P(dog) in --kaggle output to LOW,HIGH (or c for c…1−c)', '0.02,0.98')
    .option('--imagenet', "print the backbone's own top ImageNet classes (default --top 5; --backbone picks the network, default vgg16 with its top)")
    .option('--class-names <file>', 'ImageNet class names for --imagenet (Keras imagenet_class_index.json or a JSON array; default: looked up in $FINETUNE_HOME/models, ~/.keras/models)')
    .option('--json', 'print ndjson: one object per image')
    .option('-q, --quiet', 'no progress output');
  addEngineOptions(cmd, defaults);
  addCacheOptions(cmd);
  cmd.addOption(new Option('--batch-size <n>').hideHelp().argParser(count('--batch-size')));
  cmd.action((paths: string[], flags: PredictFlags) =>
    runCommand(flags, async ({ progress, signal }) => {
      if (flags.imagenet) return imagenetCommand(paths, flags, progress, signal);
      // Only what predict needs: not the training code (and its gradient registry).
      const { loadModel, predict } = await import('../predict.ts');
      const top = flags.top ?? 1;
      const { predictionsCsv, kaggleSubmission, parseClip } = await import('../export/tables.ts');
      if (flags.kaggle) parseClip(flags.clip);
      if (top < 1) throw new UsageError(`--top ${top}: must be at least 1`);
      const model = await loadModel(flags.model, { backend: flags.backend });
      try {
        const results = await predict(model, paths, { ...engineOptions(flags), tta: flags.tta, weights: flags.weights, backbone: flags.backbone, onProgress: progress, signal });
        progress.stop();
        if (flags.csv) await writeAtomically(flags.csv, predictionsCsv(results, model.classes));
        if (flags.kaggle) await writeAtomically(flags.kaggle, kaggleSubmission(results, model.classes, parseClip(flags.clip)));
        for (const r of results) {
          if ('error' in r) {
            if (flags.json) printJson({ path: r.path, error: r.error });
            else process.stderr.write(`${r.path}: error: ${r.error}\n`);
            continue;
          }
          if (flags.json) {
            printJson({ path: r.path, label: r.label, probability: r.probability, probabilities: r.probabilities });
          } else {
            const ranked = Object.entries(r.probabilities).sort((a, b) => b[1] - a[1]).slice(0, top);
            printResult(`${r.path}\t${ranked.map(([label, p]) => `${label}\t${p.toFixed(4)}`).join('\t')}`);
          }
        }
        return results.some((r) => 'error' in r) ? EXIT.skipped : EXIT.ok;
      } finally {
        model.head.dispose();
      }
    }),
  );
}

async function imagenetCommand(paths: string[], flags: PredictFlags, progress: OnProgress, signal: AbortSignal): Promise<number> {
  const { imagenetTop } = await import('../imagenet.ts');
  const top = flags.top ?? 5;
  if (top < 1) throw new UsageError(`--top ${top}: must be at least 1`);
  const results = await imagenetTop(paths, { ...engineOptions(flags), backbone: flags.backbone, weights: flags.weights, top, classNames: flags.classNames, onProgress: progress, signal });
  for (const r of results) {
    if ('error' in r) {
      if (flags.json) printJson(r);
      else process.stderr.write(`${r.path}: error: ${r.error}\n`);
    } else if (flags.json) {
      printJson(r);
    } else {
      printResult(r.path);
      for (const c of r.top) printResult(`  ${String(c.index).padStart(4)}  ${c.probability.toFixed(4)}  ${c.name}`);
    }
  }
  return results.some((r) => 'error' in r) ? EXIT.skipped : EXIT.ok;
}
