/** Wall-clock helpers: every figure is the best of several timed runs after untimed warm-ups. */

export interface Timed {
  /** Fastest run, seconds. */
  best: number;
  /** Every timed run, seconds, in order. */
  runs: number[];
}

export async function bestOf(fn: () => unknown, opts: { warmup?: number; runs: number }): Promise<Timed> {
  for (let i = 0; i < (opts.warmup ?? 1); i++) await fn();
  const runs: number[] = [];
  for (let i = 0; i < Math.max(1, opts.runs); i++) {
    const t = performance.now();
    await fn();
    runs.push((performance.now() - t) / 1000);
  }
  return { best: Math.min(...runs), runs };
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Log lines go to stderr so that stdout carries only the table (and a child's JSON). */
export function log(message: string): void {
  process.stderr.write(`  · ${message}\n`);
}
