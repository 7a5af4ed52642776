import { EXIT, UsageError } from '../index.ts';
import { detectOutput, paint, progressRenderer, type Output } from './output.ts';

export interface CommandContext {
  out: Output;
  progress: ReturnType<typeof progressRenderer>;
  signal: AbortSignal;
}

/**
 * Runs one command's action: SIGINT aborts the library call (which stops at the next batch
 * and keeps what the cache already holds); a second SIGINT quits at once. Errors are printed
 * once, as one line, and set process.exitCode (never process.exit, which cuts piped output).
 */
export async function runCommand(flags: { json?: boolean; quiet?: boolean }, action: (ctx: CommandContext) => Promise<number | void>): Promise<void> {
  const out = detectOutput(flags);
  const progress = progressRenderer(out);
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(EXIT.interrupted);
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    const code = await action({ out, progress, signal: controller.signal });
    process.exitCode = code ?? EXIT.ok;
  } catch (err) {
    progress.stop();
    const e = err as Error & { exitCode?: number };
    const code = controller.signal.aborted ? EXIT.interrupted : typeof e.exitCode === 'number' ? e.exitCode : EXIT.runtime;
    const message = code === EXIT.interrupted ? 'interrupted; the previous model is unchanged and computed features are kept in the cache' : e.message;
    printError(out, message, code);
    if (code === EXIT.runtime && process.env.FINETUNE_DEBUG && e.stack) process.stderr.write(e.stack + '\n');
    process.exitCode = code;
  } finally {
    progress.stop();
    process.off('SIGINT', onSigint);
  }
}

/** Prints a failure the one way every command does: one line on stderr, and JSON on stdout with --json. */
export function printError(out: Output, message: string, code: number): void {
  if (out.json) process.stdout.write(JSON.stringify({ error: message, exitCode: code }) + '\n');
  process.stderr.write(paint(out, 'red', `finetune: error: ${message}`) + '\n');
}

/**
 * commander's own parse errors (unknown option, missing argument, invalid choice, a value a
 * flag's parser refused) printed as every other error; `--json` is looked for in argv because
 * parsing failed before flags exist.
 */
export function commanderErrorOutput(argv: string[]) {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  const json = (end === -1 ? args : args.slice(0, end)).includes('--json');
  return {
    outputError(text: string) {
      printError(detectOutput({ json }), text.trim().replace(/^error: /, ''), EXIT.usage);
    },
  };
}

/** Output files (CSV, submissions) appear whole or not at all. */
export async function writeAtomically(file: string, text: string): Promise<void> {
  const { writeFileAtomic, reasonOf } = await import('../index.ts');
  try {
    await writeFileAtomic(file, text);
  } catch (err) {
    throw new UsageError(`cannot write ${file}: ${reasonOf(err)}; check the folder exists and is writable`, { cause: err });
  }
}
