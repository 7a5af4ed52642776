import path from 'node:path';
import type { Command, Option } from 'commander';
import { AUDIT_DEFAULTS } from '../index.ts';
import { LABEL_SCORES } from '../index.ts';
import { EXIT, UsageError } from '../index.ts';
import { engineOptions, float, int } from './options.ts';
import { printInfo, printJson, printResult, printSkipped, printWarning } from './output.ts';
import { runCommand, writeAtomically } from './run.ts';
import { addTrainOptions, trainOptions, type TrainFlags } from './train.ts';

interface AuditFlags extends TrainFlags {
  model?: string;
  folds: number;
  labelScore: (typeof LABEL_SCORES)[number];
  duplicateThreshold: number;
  outlierK: number;
  fixList?: string;
  top: number;
}

/** Train's flags that shape a trained model, not the audit's one head per fold: hidden from help and refused. */
const TRAIN_ONLY = ['--patience', '--ensemble', '--fine-tune', '--fine-tune-blocks', '--fine-tune-lr', '--augment', '--augment-copies', '--no-calibrate', '--out'];

export function registerAudit(program: Command, defaults: typeof import('../index.ts').TRAIN_DEFAULTS): void {
  const cmd = program
    .command('audit')
    .description('find mislabelled, near-duplicate and out-of-place images in a training folder (train + valid); takes the backbone and head flags of train')
    .argument('<data>', 'data folder, as for train')
    .option('--model <dir>', "audit with a trained model's backbone and head recipe (its features are cached)")
    .option('--folds <k>', 'out-of-fold heads: each image is scored by a head trained on the other folds', int('--folds'), AUDIT_DEFAULTS.folds)
    .option('--label-score <method>', `rank label issues by ${LABEL_SCORES.join(' or ')}`, AUDIT_DEFAULTS.labelScore)
    .option('--duplicate-threshold <score>', 'near-duplicate pairs from this CSLS score: 2·cos − r_a − r_b, r = mean cosine of an image to its 10 nearest', float('--duplicate-threshold'), AUDIT_DEFAULTS.duplicateThreshold)
    .option('--outlier-k <k>', 'outlier score: distance to the k-th nearest image of the nearest class', int('--outlier-k'), AUDIT_DEFAULTS.outlierK)
    .option('--top <n>', 'candidates of each kind printed', int('--top'), 10)
    .option('--report <file.html>', 'write a self-contained HTML report: each candidate beside its nearest images, duplicate pairs side by side')
    .option('--fix-list <file.csv>', 'write path,action,suggested (relabel / remove / keep) for a person to edit, then `finetune train --exclude FILE`')
    .option('--json', 'print one JSON object with every list')
    .option('-q, --quiet', 'no progress output');
  addTrainOptions(cmd, { ...defaults, epochs: AUDIT_DEFAULTS.epochs } as unknown as typeof defaults);
  for (const option of cmd.options as Option[]) if (TRAIN_ONLY.includes(option.long ?? '')) option.hideHelp();
  cmd.action((data: string, flags: AuditFlags) =>
    runCommand(flags, async ({ out, progress, signal }) => {
      const given = (name: string) => cmd.getOptionValueSource(name) === 'cli';
      const refused = TRAIN_ONLY.filter((f) => given(f.replace(/^--(no-)?/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase())));
      if (refused.length > 0) throw new UsageError(`${refused.join(', ')}: a train flag; audit trains one plain head per fold`);
      if (flags.lr === 'auto') throw new UsageError('--lr auto: give audit a number (the range test is for train)');
      if (flags.model && (flags.backbone.length > 0 || flags.weights || flags.layer)) throw new UsageError('--model brings its own backbone: leave out --backbone, --weights and --layer');
      for (const file of [flags.report, flags.fixList]) if (file) await checkWritable(file);
      const [{ audit }, { loadModel }] = await Promise.all([import('../index.ts'), import('../index.ts')]);
      const model = flags.model ? await loadModel(flags.model, { backend: flags.backend }) : undefined;
      const { lr, ...options } = trainOptions(flags, defaults);
      try {
        const result = await audit(data, {
          ...options,
          lr: lr as number,
          ...engineOptions(flags),
          model,
          folds: flags.folds,
          labelScore: flags.labelScore,
          duplicateThreshold: flags.duplicateThreshold,
          outlierK: flags.outlierK,
          onProgress: progress,
          signal,
        });
        progress.stop();
        if (flags.report) {
          const { writeAuditReport } = await import('../index.ts');
          await writeAuditReport(flags.report, result);
        }
        if (flags.fixList) {
          const { fixRows, formatFixList } = await import('../index.ts');
          await writeAtomically(flags.fixList, await formatFixList(await fixRows(result)));
        }
        if (flags.json) {
          const { scores: _, images: __, ...lists } = result;
          printJson({ ...lists, report: flags.report ?? null, fixList: flags.fixList ?? null });
        } else {
          for (const line of summaryLines(result, flags.top)) printResult(line);
          for (const w of result.warnings) printWarning(out, w);
          if (flags.report) printInfo(out, `report: ${flags.report}`);
          if (flags.fixList) printInfo(out, `fix list: ${flags.fixList} (edit it, then: finetune train ${data} --exclude ${flags.fixList})`);
          printSkipped(out, result.skipped);
        }
        return result.skipped.length > 0 ? EXIT.skipped : EXIT.ok;
      } finally {
        model?.head.dispose();
      }
    }),
  );
}

/** Outputs are checked before the work: a report that cannot be written fails in a second, not after the audit. */
async function checkWritable(file: string): Promise<void> {
  const { access, stat, constants } = await import('node:fs/promises');
  const dir = path.dirname(path.resolve(file));
  const info = await stat(dir).catch(() => null);
  if (!info?.isDirectory()) throw new UsageError(`cannot write ${file}: folder ${dir} does not exist`);
  await access(dir, constants.W_OK).catch(() => {
    throw new UsageError(`cannot write ${file}: folder ${dir} is not writable`);
  });
}

type Result = Awaited<ReturnType<typeof import('../index.ts').audit>>;

function summaryLines(r: Result, top: number): string[] {
  const rel = (p: string) => path.relative(r.root, p) || p;
  const s = r.settings;
  const c = r.counts;
  const lines = [
    `data        ${r.root} (${r.layout} layout; ${r.classes.length} classes; ${c.images} images: ${c.train} train, ${c.valid} valid; ${c.skipped} skipped)`,
    `features    ${s.backbone}, ${s.featureSize} values; ${r.cache.hits} from cache, ${r.cache.misses} computed`,
    '',
    `label issues  ${c.labelIssues} (confident learning on ${s.folds}-fold out-of-fold probabilities; score: ${s.labelScore}, low = suspicious)`,
    ...r.labelIssues.slice(0, top).map((l) => `  ${l.score.toFixed(3)}  ${rel(l.path)}  ${l.given} → ${l.suggested} (${(l.suggestedProbability * 100).toFixed(0)}%)`),
    '',
    `near-duplicates  ${c.duplicates} pair(s) with CSLS score ≥ ${s.duplicateThreshold} (${r.duplicates.filter((d) => d.exact).length} byte-identical), ${c.leakage} across train/valid; score, cosine:`,
    ...r.duplicates.slice(0, top).map((d) => `  ${d.score.toFixed(3)}  ${d.similarity.toFixed(3)}  ${rel(d.a)}  ${rel(d.b)}${d.leakage ? '  [train/valid leakage]' : ''}${d.exact ? '  [same bytes]' : ''}${d.labelA !== d.labelB ? `  [labels ${d.labelA} / ${d.labelB}]` : ''}`),
    '',
    `outliers  ${c.outliers} (distance to the ${s.outlierK}th nearest image of the nearest class above ${s.outlierCut.toFixed(3)})`,
    ...r.outliers.slice(0, top).map((o) => `  ${o.score.toFixed(3)}  ${rel(o.path)}  (${o.label})`),
    '',
    `time        features ${r.timing.featuresSeconds.toFixed(1)} s, out-of-fold heads ${r.timing.outOfFoldSeconds.toFixed(1)} s, neighbour search ${r.timing.searchSeconds.toFixed(1)} s`,
  ];
  return lines;
}
