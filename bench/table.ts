export interface Row {
  part: number;
  figure: string;
  value: string;
  target?: string;
  /** undefined: no target for this figure. */
  pass?: boolean;
}

/** A plain-text table: part, figure, value, target, pass/fail. */
export function formatTable(rows: Row[]): string {
  const cells = [
    ['#', 'figure', 'value', 'target', 'result'],
    ...rows.map((r) => [String(r.part), r.figure, r.value, r.target ?? '', r.pass === undefined ? '' : r.pass ? 'pass' : 'FAIL']),
  ];
  const widths = cells[0].map((_, c) => Math.max(...cells.map((row) => row[c].length)));
  const line = (row: string[]) => row.map((cell, c) => (c === 2 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd();
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

export const fmt = (x: number, digits = 2) => x.toFixed(digits);
