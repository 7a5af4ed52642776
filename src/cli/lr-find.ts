import type { Command } from 'commander';
import { engineOptions } from './options.ts';
import { printJson, printResult } from './output.ts';
import { runCommand } from './run.ts';
import { addTrainOptions, trainOptions, type TrainFlags } from './train.ts';

/** Loss against log10(learning rate) as text: columns are rates, rows are loss levels. */
export function plotLoss(points: { lr: number; loss: number }[], mark: number, width = 64, height = 14): string[] {
  if (points.length < 2) return ['(too few points to plot)'];
  const xs = points.map((p) => Math.log10(p.lr));
  const ys = points.map((p) => p.loss);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const grid = Array.from({ length: height }, () => new Array<string>(width).fill(' '));
  points.forEach((p, i) => {
    const col = Math.round(((xs[i] - x0) / (x1 - x0 || 1)) * (width - 1));
    const row = height - 1 - Math.round(((ys[i] - y0) / (y1 - y0 || 1)) * (height - 1));
    grid[row][col] = '•';
  });
  const markCol = Math.round(((Math.log10(mark) - x0) / (x1 - x0 || 1)) * (width - 1));
  for (const row of grid) if (row[markCol] === ' ') row[markCol] = '┊';
  const label = (v: number) => v.toFixed(3).padStart(7);
  return [
    ...grid.map((row, r) => `${r === 0 ? label(y1) : r === height - 1 ? label(y0) : ' '.repeat(7)} │${row.join('')}`),
    `${' '.repeat(8)}└${'─'.repeat(width)}`,
    `${' '.repeat(9)}${x0.toFixed(0).padEnd(width - 8)}${x1.toFixed(0).padStart(8)}   log10(learning rate)`,
  ];
}

export function registerLrFind(program: Command, defaults: typeof import('../index.ts').TRAIN_DEFAULTS): void {
  const cmd = program
    .command('lr-find')
    .description('learning-rate range test on the training features (fastai lr_find): a plot and a suggested --lr; takes the flags of train')
    .argument('<data>', 'data folder, as for train')
    .option('--json', 'print one JSON object: suggested, minimum, points')
    .option('-q, --quiet', 'no progress output');
  addTrainOptions(cmd, defaults);
  cmd.action((data: string, flags: TrainFlags) =>
    runCommand(flags, async ({ progress, signal }) => {
      const { findLearningRate } = await import('../index.ts');
      const result = await findLearningRate(data, { ...trainOptions(flags, defaults), ...engineOptions(flags), onProgress: progress, signal });
      progress.stop();
      if (flags.json) return printJson(result);
      for (const line of plotLoss(result.points, result.suggested)) printResult(line);
      printResult('');
      printResult(`suggested --lr ${result.suggested.toPrecision(2)} (steepest descent, ┊ above); lowest loss at ${result.minimum.toPrecision(2)}`);
    }),
  );
}
