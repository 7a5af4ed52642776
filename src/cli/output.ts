import cliProgress from 'cli-progress';
import ora, { type Ora } from 'ora';
import type { OnProgress, ProgressEvent } from '../progress.ts';

/**
 * How the CLI talks: results on stdout; progress, warnings and errors on stderr. Bars and
 * spinners only on a TTY outside CI; colour only then and without NO_COLOR; --json keeps
 * stdout to the JSON document(s).
 */
export interface Output {
  json: boolean;
  interactive: boolean;
  color: boolean;
  quiet: boolean;
}

export function detectOutput(opts: { json?: boolean; quiet?: boolean }): Output {
  const interactive = Boolean(process.stderr.isTTY) && !process.env.CI && !opts.json;
  const color = interactive && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';
  return { json: Boolean(opts.json), interactive, color, quiet: Boolean(opts.quiet) };
}

const ANSI = { red: 31, yellow: 33, green: 32, dim: 2, bold: 1, cyan: 36 } as const;
export function paint(out: Output, style: keyof typeof ANSI, text: string): string {
  return out.color ? `\u001b[${ANSI[style]}m${text}\u001b[0m` : text;
}

export function printResult(line = ''): void {
  process.stdout.write(line + '\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}

export function printInfo(out: Output, line: string): void {
  if (!out.quiet && !out.json) process.stderr.write(line + '\n');
}

export function printWarning(out: Output, line: string): void {
  process.stderr.write(paint(out, 'yellow', `warning: ${line}`) + '\n');
}

function formatInfo(event: Extract<ProgressEvent, { status: 'progress' }>): string {
  const info = event.info ?? {};
  if (event.task === 'train') {
    const f = (v: unknown, d = 4) => (typeof v === 'number' ? v.toFixed(d) : '-');
    const pct = (v: unknown) => (typeof v === 'number' ? `${(v * 100).toFixed(1)}%` : '-');
    return `loss ${f(info.loss)} acc ${pct(info.accuracy)} val_loss ${f(info.valLoss)} val_acc ${pct(info.valAccuracy)}`;
  }
  const rate = typeof info.imagesPerSecond === 'number' && info.imagesPerSecond > 0 ? `${info.imagesPerSecond.toFixed(1)} images/s` : '';
  const hits = typeof info.hits === 'number' && info.hits > 0 ? `${info.hits} cached` : '';
  return [rate, hits].filter(Boolean).join(', ');
}

/** Renders library progress events: spinner + bars on a TTY, plain lines elsewhere, nothing with --json. */
export function progressRenderer(out: Output): OnProgress & { stop(): void } {
  let spinner: Ora | undefined;
  let bar: cliProgress.SingleBar | undefined;
  let barTask: string | undefined;
  let lastPlain = 0;
  const stopBar = () => {
    bar?.stop();
    bar = undefined;
    barTask = undefined;
  };
  const render = (event: ProgressEvent) => {
    if (event.status === 'warn') {
      if (out.interactive && bar) bar.stop();
      printWarning(out, event.message);
      if (bar) bar = undefined;
      return;
    }
    if (out.json || out.quiet) return;
    if (!out.interactive) {
      if (event.status === 'initiate') process.stderr.write(`${event.message}\n`);
      else if (event.status === 'done' && event.message) process.stderr.write(`${event.task}: ${event.message}\n`);
      else if (event.status === 'progress') {
        const now = Date.now();
        const last = event.total !== undefined && event.current >= event.total;
        if (event.task === 'train' || last || now - lastPlain > 5000) {
          lastPlain = now;
          const of = event.total !== undefined ? `/${event.total}` : '';
          process.stderr.write(`${event.task} ${event.current}${of} ${event.unit ?? ''} ${formatInfo(event)}\n`.replace(/ +\n$/, '\n'));
        }
      }
      return;
    }
    if (event.status === 'initiate') {
      if (event.total !== undefined) {
        spinner?.stop();
        spinner = undefined;
        stopBar();
        bar = new cliProgress.SingleBar(
          { format: `${event.task.padEnd(8)} {bar} {value}/{total} ${event.unit ?? ''} | {info} | ETA {eta_formatted}`, hideCursor: true, stream: process.stderr, etaBuffer: 20 },
          cliProgress.Presets.shades_classic,
        );
        barTask = event.task;
        bar.start(event.total, 0, { info: '' });
      } else {
        spinner = ora({ text: event.message, stream: process.stderr, color: 'cyan', isEnabled: true }).start();
      }
    } else if (event.status === 'progress' && bar && barTask === event.task) {
      bar.update(event.current, { info: formatInfo(event) });
    } else if (event.status === 'done') {
      if (bar && barTask === event.task) {
        stopBar();
        if (event.message) process.stderr.write(`${paint(out, 'dim', `${event.task}: ${event.message}`)}\n`);
      } else if (spinner) {
        spinner.succeed(event.message ?? spinner.text);
        spinner = undefined;
      }
    }
  };
  return Object.assign(render, {
    stop() {
      spinner?.stop();
      stopBar();
    },
  });
}

export function formatPercent(v: number | undefined): string {
  return v === undefined ? '-' : `${(v * 100).toFixed(1)}%`;
}

/** Files left out of a run, each with its reason, on stderr. */
export function printSkipped(out: Output, skipped: { path: string; reason: string }[]): void {
  if (skipped.length === 0) return;
  printWarning(out, `skipped ${skipped.length} file(s):`);
  for (const s of skipped) process.stderr.write(`  ${s.path}: ${s.reason}\n`);
}
