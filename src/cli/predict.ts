import { Option, type Command } from 'commander';
import { EXIT, UsageError } from '../index.ts';
import { addCacheOptions, addEngineOptions, count, engineOptions, type EngineFlags } from './options.ts';
import { printJson, printResult, printWarning } from './output.ts';
import type { OnProgress } from '../index.ts';
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
  verbose?: boolean;
}

export function registerPredict(program: Command, defaults: typeof import('../index.ts').TRAIN_DEFAULTS): void {
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
    .option('-q, --quiet', 'no progress output')
    .option('--verbose', 'when no input could be read, list each one and why');
  addEngineOptions(cmd, defaults);
  addCacheOptions(cmd);
  cmd.addOption(new Option('--batch-size <n>').hideHelp().argParser(count('--batch-size')));
  cmd.action((paths: string[], flags: PredictFlags) =>
    runCommand(flags, async ({ out, progress, signal }) => {
      if (flags.imagenet) return imagenetCommand(paths, flags, progress, signal);
      // Only what predict needs: not the training code (and its gradient registry).
      const { loadModel, predict } = await import('../index.ts');
      const top = flags.top ?? 1;
      const { predictionsCsv, kaggleSubmission, parseClip } = await import('./tables.ts');
      if (flags.kaggle) parseClip(flags.clip);
      await (await import('../index.ts')).checkOutputFiles([{ file: flags.csv, flag: '--csv' }, { file: flags.kaggle, flag: '--kaggle' }]);
      if (top < 1) throw new UsageError(`--top ${top}: must be at least 1`);
      const model = await loadModel(flags.model, { backend: flags.backend });
      try {
        const results = await predict(model, paths, { ...engineOptions(flags), tta: flags.tta, weights: flags.weights, backbone: flags.backbone, onProgress: withoutFileSkips(progress), signal });
        progress.stop();
        requireReadable(results, flags);
        if (flags.csv) await writeAtomically(flags.csv, predictionsCsv(results, model.classes));
        let order = results.map((_, i) => i);
        if (flags.kaggle) {
          const submission = kaggleSubmission(results, model.classes, parseClip(flags.clip));
          await writeAtomically(flags.kaggle, submission.csv);
          for (const warning of submission.warnings) printWarning(out, warning);
          // The same order on stdout as in the file, unreadable inputs after them.
          order = [...submission.order, ...order.filter((i) => 'error' in results[i])];
        }
        for (const r of order.map((i) => results[i])) {
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
  const { imagenetTop } = await import('../index.ts');
  const top = flags.top ?? 5;
  if (top < 1) throw new UsageError(`--top ${top}: must be at least 1`);
  const results = await imagenetTop(paths, { ...engineOptions(flags), backbone: flags.backbone, weights: flags.weights, top, classNames: flags.classNames, onProgress: withoutFileSkips(progress), signal });
  requireReadable(results, flags);
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

/**
 * When not one input could be read there is nothing to answer: a usage error in one line, the
 * inputs and their reasons only with --verbose (stderr) or --json (a record each on stdout).
 */
function requireReadable(results: ({ path: string; error: string } | { path: string })[], flags: PredictFlags): void {
  const failed = results.filter((r): r is { path: string; error: string } => 'error' in r);
  if (failed.length < results.length) return;
  if (flags.json) for (const r of failed) printJson({ path: r.path, error: r.error });
  else if (flags.verbose) for (const r of failed) process.stderr.write(`${r.path}: ${r.error}\n`);
  const reasons = new Map<string, number>();
  for (const r of failed) reasons.set(r.error, (reasons.get(r.error) ?? 0) + 1);
  const summary = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([reason, n]) => `${n} ${reason}`).join(', ');
  const more = flags.verbose || flags.json ? '' : '; --verbose lists them';
  throw new UsageError(`nothing to predict: none of the ${failed.length} input(s) is a readable image (${summary}${reasons.size > 3 ? ', …' : ''})${more}`);
}

/** predict answers for every input itself (a line or record each): no second warning per file. */
function withoutFileSkips(progress: OnProgress): OnProgress {
  return (event) => {
    // Skipped files are listed once, after the run; other warnings (the cache's) pass through.
    if (event.status === 'warn' && event.path !== undefined && event.task !== 'cache') return;
    progress(event);
  };
}
