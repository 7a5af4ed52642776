import type { Evaluation } from '../index.ts';
import { paint, type Output } from './output.ts';

/** The confusion matrix as a text table with class names; the diagonal in green when colour is on. */
export function confusionTable(out: Output, classes: string[], matrix: number[][]): string[] {
  const width = Math.max(6, ...classes.map((c) => c.length), ...matrix.flat().map((v) => String(v).length)) + 2;
  const label = Math.max(8, ...classes.map((c) => c.length)) + 2;
  const lines = [`${' '.repeat(label + 2)}${paint(out, 'dim', 'predicted →')}`, `${'true ↓'.padEnd(label + 2)}${classes.map((c) => c.padStart(width)).join('')}`];
  matrix.forEach((row, i) => {
    const cells = row.map((v, j) => {
      const text = String(v).padStart(width);
      return i === j ? paint(out, 'green', text) : v > 0 ? paint(out, 'red', text) : text;
    });
    lines.push(`  ${classes[i].padEnd(label)}${cells.join('')}`);
  });
  return lines;
}

export function evaluationLines(out: Output, classes: string[], e: Evaluation, header: string[], uncalibrated?: { temperature: number; logLoss: number; ece: number }): string[] {
  const lines = [...header];
  lines.push(`accuracy   ${(e.accuracy * 100).toFixed(2)}%  (${Math.round(e.accuracy * e.count)}/${e.count})`);
  const before = (v: number | undefined) => (v === undefined ? '' : paint(out, 'dim', `  (${v.toFixed(4)} before temperature ${uncalibrated!.temperature.toFixed(2)})`));
  lines.push(`log loss   ${e.logLoss.toFixed(4)}${before(uncalibrated?.logLoss)}`);
  if (e.rocAuc !== null) lines.push(`ROC AUC    ${e.rocAuc.toFixed(4)}`);
  lines.push(`ECE        ${e.ece.toFixed(4)}${before(uncalibrated?.ece)}`);
  lines.push('');
  lines.push(...confusionTable(out, classes, e.confusionMatrix));
  lines.push('');
  const name = Math.max(8, ...classes.map((c) => c.length)) + 2;
  lines.push(`${'class'.padEnd(name)}${['precision', 'recall', 'f1', 'support'].map((h) => h.padStart(11)).join('')}`);
  for (const c of e.perClass) {
    lines.push(`${c.label.padEnd(name)}${[c.precision, c.recall, c.f1].map((v) => v.toFixed(4).padStart(11)).join('')}${String(c.support).padStart(11)}`);
  }
  return lines;
}
