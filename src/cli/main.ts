import { Command, CommanderError } from 'commander';
import { TRAIN_DEFAULTS } from '../index.ts';
import { EXIT } from '../index.ts';
import { packageVersion } from '../index.ts';
import { registerAudit } from './audit.ts';
import { registerCache } from './cache.ts';
import { registerData } from './data.ts';
import { registerDoctor } from './doctor.ts';
import { registerEvaluate } from './evaluate.ts';
import { registerExport } from './export.ts';
import { registerLrFind } from './lr-find.ts';
import { registerModels } from './models.ts';
import { registerPredict } from './predict.ts';
import { registerServe } from './serve.ts';
import { registerTrain } from './train.ts';
import { commanderErrorOutput } from './run.ts';

export function buildProgram(): Command {
  const program = new Command('finetune')
    .description('Transfer learning on images: a pretrained ImageNet backbone turns images into features, a small dense head learns your classes.')
    .version(packageVersion())
    .configureOutput(commanderErrorOutput(process.argv))
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  finetune train ./data/dogscats                 learn cats vs dogs (writes models/dogscats)
  finetune predict image.jpg                     classify with the model trained last
  finetune predict --json photos/ > preds.ndjson

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 finished but some inputs were skipped,
4 quality gate missed (evaluate), 130 interrupted.`,
    );
  registerTrain(program, TRAIN_DEFAULTS);
  registerPredict(program, TRAIN_DEFAULTS);
  registerEvaluate(program, TRAIN_DEFAULTS);
  registerLrFind(program, TRAIN_DEFAULTS);
  registerAudit(program, TRAIN_DEFAULTS);
  registerCache(program);
  registerModels(program);
  registerData(program);
  registerExport(program);
  registerServe(program);
  registerDoctor(program);
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  all(program).forEach((c) => c.exitOverride());
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // `finetune predict … | head` closes the pipe early: that is the reader's choice, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are exits with code 0; every other parse error is a usage error.
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    throw err;
  }
}

await main(process.argv);
