import type { OnProgress, ProgressEvent } from '../index.ts';
import { canDraw, columnsOf, fit, StatusLine, wrap } from './status-line.ts';

/**
 * How the CLI talks: results on stdout; progress, warnings and errors on stderr. Bars and
 * spinners only on a TTY outside CI, not with TERM=dumb, and only while it is wide enough to
 * draw them (status-line.ts); colour only on such a TTY and without NO_COLOR; --json keeps
 * stdout to the JSON document(s).
 */
export interface Output {
  json: boolean;
  interactive: boolean;
  color: boolean;
  quiet: boolean;
}

export function detectOutput(opts: { json?: boolean; quiet?: boolean }): Output {
  // TERM=dumb cannot erase a line: progress as plain lines there.
  const terminal = Boolean(process.stderr.isTTY) && !process.env.CI && process.env.TERM !== 'dumb';
  const interactive = terminal && !opts.json;
  const color = interactive && !('NO_COLOR' in process.env);
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
  process.stderr.write(warningLines(out, line).join('\n') + '\n');
}

/** `warning: …`, wrapped to the terminal's width when stderr is one that reports a width. */
function warningLines(out: Output, message: string): string[] {
  const columns = columnsOf(process.stderr);
  const lines = columns ? wrap(`warning: ${message}`, columns - 1) : [`warning: ${message}`];
  return lines.map((l) => paint(out, 'yellow', l));
}

/** `1m05s`, `12s`: the time left at the rate so far. */
function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

type Progress = Extract<ProgressEvent, { status: 'progress' }>;

/** `head 2/5 · epoch 3/10` for an ensemble, `epoch 3/10` for one head, `12/300 images` elsewhere. */
function formatCount(event: Progress): string {
  const info = event.info ?? {};
  if (event.unit === 'epochs' && event.total !== undefined) {
    const heads = typeof info.heads === 'number' ? info.heads : 1;
    const head = typeof info.member === 'number' ? info.member : 1;
    const perHead = heads > 1 ? event.total / heads : event.total;
    const epoch = event.current - (head - 1) * perHead;
    return heads > 1 ? `head ${head}/${heads} · epoch ${epoch}/${perHead}` : `epoch ${epoch}/${perHead}`;
  }
  const of = event.total !== undefined ? `/${event.total}` : '';
  return `${event.current}${of}${event.unit ? ` ${event.unit}` : ''}`;
}

function formatInfo(event: Progress): string {
  const info = event.info ?? {};
  if (event.unit === 'epochs') {
    const f = (v: unknown, d = 4) => (typeof v === 'number' ? v.toFixed(d) : '-');
    const pct = (v: unknown) => (typeof v === 'number' ? `${(v * 100).toFixed(1)}%` : '-');
    const valid = typeof info.valLoss === 'number' ? ` val_loss ${f(info.valLoss)} val_acc ${pct(info.valAccuracy)}` : '';
    return `loss ${f(info.loss)} acc ${pct(info.accuracy)}${valid}`;
  }
  const rate = typeof info.imagesPerSecond === 'number' && info.imagesPerSecond > 0 ? `${info.imagesPerSecond.toFixed(1)} images/s` : '';
  const hits = typeof info.hits === 'number' && info.hits > 0 ? `${info.hits} cached` : '';
  return [rate, hits].filter(Boolean).join(', ');
}

/** The parts of a progress line, most important first: what, how far, measurements, time left. */
function progressParts(event: Progress, startedAt: number | undefined): string[] {
  let eta = '';
  if (event.total !== undefined && event.current > 0 && event.current < event.total && startedAt !== undefined) {
    const elapsed = (Date.now() - startedAt) / 1000;
    eta = formatEta((elapsed / event.current) * (event.total - event.current));
  }
  return [formatCount(event), formatInfo(event), eta && `ETA ${eta}`].filter(Boolean);
}

const BAR_MAX = 30;
const BAR_MIN = 6;

/** `task [bar] parts…` fitted to `width`: the bar shrinks first, then goes, then the text is cut. */
function barLine(task: string, fraction: number, parts: string[], width: number): string {
  const text = parts.join(' · ');
  const room = width - task.length - text.length - 2;
  const size = Math.min(BAR_MAX, room);
  if (size < BAR_MIN) return fit(`${task} ${text}`, width);
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * size);
  return `${task} ${'█'.repeat(filled)}${'░'.repeat(size - filled)} ${text}`;
}

/**
 * Renders library progress events: a spinner or bar on a terminal wide enough to draw one,
 * plain lines elsewhere (pipes, CI, TERM=dumb, terminals narrower than MIN_DRAW_COLUMNS or
 * reporting 0 columns), nothing with --json except warnings.
 */
export function progressRenderer(out: Output): OnProgress & { stop(): void } {
  const stream = process.stderr;
  const line = new StatusLine(stream, (frame) => paint(out, 'cyan', frame));
  const startedAt = new Map<string, number>();
  let barTask: string | undefined;
  let spinnerText: string | undefined;
  let lastPlain = 0;
  // Plain lines on a terminal still fit its width when it reports one.
  const plain = (text: string) => {
    const columns = columnsOf(stream);
    stream.write(`${columns ? fit(text, columns - 1) : text}\n`);
  };
  const finished = (text: string) => (line.active ? line.print(text) : stream.write(text + '\n'));

  const renderPlain = (event: ProgressEvent) => {
    if (event.status === 'initiate') plain(event.message);
    else if (event.status === 'done' && event.message) plain(`${event.task}: ${event.message}`);
    else if (event.status === 'progress') {
      const now = Date.now();
      const last = event.total !== undefined && event.current >= event.total;
      if (event.unit === 'epochs' || last || now - lastPlain > 5000) {
        lastPlain = now;
        plain(`${event.task} ${progressParts(event, startedAt.get(event.task)).join(' · ')}`);
      }
    }
  };

  const render = (event: ProgressEvent) => {
    if (event.status === 'initiate') startedAt.set(event.task, Date.now());
    if (event.status === 'warn') {
      for (const text of warningLines(out, event.message)) finished(text);
      return;
    }
    if (out.json || out.quiet) return;
    // Drawn only while the terminal is wide enough, checked at every event (it may be resized).
    if (!out.interactive || !canDraw(stream)) {
      if (line.active) line.stop();
      renderPlain(event);
      return;
    }
    if (event.status === 'initiate') {
      barTask = undefined;
      spinnerText = undefined;
      if (event.total !== undefined) {
        barTask = event.task;
        line.show(barLine(event.task, 0, [`0/${event.total}${event.unit ? ` ${event.unit}` : ''}`], line.width()));
      } else {
        spinnerText = event.message;
        line.spin(event.message);
      }
    } else if (event.status === 'progress' && barTask === event.task) {
      const fraction = event.total ? event.current / event.total : 0;
      line.show(barLine(event.task, fraction, progressParts(event, startedAt.get(event.task)), line.width()));
    } else if (event.status === 'done') {
      if (barTask === event.task) {
        barTask = undefined;
        line.stop();
        if (event.message) stream.write(`${paint(out, 'dim', fit(`${event.task}: ${event.message}`, line.width()))}\n`);
      } else if (spinnerText !== undefined) {
        const text = fit(event.message ?? spinnerText, line.width() - 2);
        spinnerText = undefined;
        line.stop();
        stream.write(`${paint(out, 'green', '✔')} ${text}\n`);
      }
    }
  };
  return Object.assign(render, {
    stop() {
      line.stop();
      barTask = undefined;
      spinnerText = undefined;
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
