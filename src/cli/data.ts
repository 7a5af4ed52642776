import type { Command } from 'commander';
import { printJson, printResult } from './output.ts';
import { runCommand } from './run.ts';

export function registerData(program: Command): void {
  const data = program.command('data').description('public data sets');
  data
    .command('pull')
    .description('download and unpack a data set (dogscats: the fast.ai dogs-vs-cats set, train/ valid/ test1/ sample/)')
    .argument('<name>', 'data set name (dogscats)')
    .option('--dir <dir>', 'where to unpack it (DIR/<name>)', 'data')
    .option('--from <file.zip>', 'unpack this zip of the data set instead of downloading (default: $FINETUNE_HOME/downloads/<name>.zip when it is there)')
    .option('--json', 'print one JSON object')
    .option('-q, --quiet', 'no progress output')
    .action((name: string, flags: { dir: string; from?: string; json?: boolean; quiet?: boolean }) =>
      runCommand(flags, async ({ progress, signal }) => {
        const { pullDataset } = await import('../index.ts');
        const result = await pullDataset(name, { dir: flags.dir, from: flags.from, onProgress: progress, signal });
        progress.stop();
        if (flags.json) printJson(result);
        else printResult(`${result.name}: ${result.files} files in ${result.path}`);
      }),
    );
}
