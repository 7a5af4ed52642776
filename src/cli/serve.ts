import { InvalidArgumentError, Option, type Command } from 'commander';
import { EXIT } from '../index.ts';
import type { ServeEvent } from '../index.ts';
import { SERVE_DEFAULTS } from '../index.ts';
import { BACKEND_CHOICES, ENGINE_CHOICES, int, type EngineFlags } from './options.ts';
import { paint, printJson, printResult, printWarning, type Output } from './output.ts';
import { runCommand } from './run.ts';

interface ServeFlags extends Pick<EngineFlags, 'engine' | 'backend' | 'device' | 'threads' | 'download'> {
  model?: string;
  port: number;
  host: string;
  maxBatch: number;
  maxWaitMs: number;
  maxQueue: number;
  maxBody: number;
  maxFiles: number;
  maxPixels: number;
  timeoutMs: number;
  drainMs: number;
  weights?: string;
  backbone?: string;
  accessLog?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/** `20MB`, `512kB`, `1000000`: a size in bytes (decimal units, as HTTP tools count). */
export function byteSize(name: string) {
  return (value: string): number => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(value);
    if (!m) throw new InvalidArgumentError(`${name} needs a size such as 20MB, 512kB or 1000000, got "${value}"`);
    const unit = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9 }[(m[2] ?? 'b').toLowerCase() as 'b'];
    return Math.round(Number(m[1]) * unit);
  };
}

export function registerServe(program: Command): void {
  const d = SERVE_DEFAULTS;
  const cmd = program
    .command('serve')
    .description('serve a trained model over HTTP: POST /predict (image bytes or multipart), GET /healthz, GET /metrics; concurrent requests are batched')
    .option('--model <dir>', 'model folder, read again on SIGHUP or POST /reload (default: the model trained last)')
    .option('--port <n>', 'TCP port (0: any free one)', int('--port'), d.port)
    .option('--host <address>', 'address to listen on (0.0.0.0 for every interface: anyone who can reach it may classify)', d.host)
    .option('--max-batch <n>', 'images per backbone forward pass, gathered from concurrent requests', int('--max-batch'), d.maxBatch)
    .option('--max-wait-ms <ms>', 'how long an idle engine waits for more images before a batch', int('--max-wait-ms'), d.maxWaitMs)
    .option('--max-queue <n>', 'images that may wait for the engine; more get 503 with Retry-After', int('--max-queue'), d.maxQueue)
    .addOption(new Option('--max-body <size>', 'largest request body (512kB, 1000000 …); larger ones get 413 unread').argParser(byteSize('--max-body')).default(d.maxBody, `${d.maxBody / 1e6}MB`))
    .option('--max-files <n>', 'files in one multipart request', int('--max-files'), d.maxFiles)
    .option('--max-pixels <n>', 'largest image in pixels, as its header declares it (decompression bombs get 400)', int('--max-pixels'), d.maxPixels)
    .option('--timeout-ms <ms>', 'a request not answered by then (slow uploads included) gets 503 with Retry-After', int('--timeout-ms'), d.timeoutMs)
    .option('--drain-ms <ms>', 'on SIGTERM/SIGINT, how long requests in flight may take to finish', int('--drain-ms'), d.drainMs)
    .option('--weights <file>', 'backbone weights file, if not in the caches (must be the ones used in training)')
    .option('--backbone <path>', 'where the backbone is now, if it was given by a path that has moved')
    .addOption(new Option('--engine <engine>', 'engine for the backbone (auto: tfjs-node-gpu on a GPU, else onnx)').choices(ENGINE_CHOICES).default('auto'))
    .addOption(new Option('--backend <backend>', 'tfjs backend for the head').choices(BACKEND_CHOICES).default('auto'))
    .addOption(new Option('--device <device>', 'run the onnx engine on cpu or gpu (CUDA)').choices(['cpu', 'gpu']).default('cpu'))
    .option('--threads <n>', 'CPU threads for the backbone (default: all cores)', int('--threads'))
    .option('--no-download', 'never download missing backbone weights')
    .option('--access-log', 'one line per request (method, path, status, milliseconds)')
    .option('--json', 'events as ndjson on stdout (listening, request, reload, draining, closed)')
    .option('-q, --quiet', 'no progress output while the model loads')
    .addHelpText(
      'after',
      `
Signals: SIGTERM or SIGINT stop accepting and finish requests in flight (exit 0; 1 if --drain-ms
cut some off); SIGHUP reloads the model (refused, with the old one kept, if the new one is broken).`,
    );
  cmd.action((flags: ServeFlags) =>
    runCommand(flags, async ({ out, progress, signal }) => {
      const { serve } = await import('../index.ts');
      const server = await serve({
        ...flags,
        onProgress: progress,
        onEvent: (event) => {
          progress.stop();
          printEvent(out, flags, event);
        },
      });
      const onHangup = () => void server.reload();
      const stop = new Promise<void>((resolve) => {
        signal.addEventListener('abort', () => resolve(), { once: true });
        process.once('SIGTERM', () => resolve());
      });
      process.on('SIGHUP', onHangup);
      try {
        await stop;
        const { unfinished } = await server.close(flags.drainMs);
        return unfinished > 0 ? EXIT.runtime : EXIT.ok;
      } finally {
        process.off('SIGHUP', onHangup);
      }
    }),
  );
}

function printEvent(out: Output, flags: ServeFlags, event: ServeEvent): void {
  if (flags.json) {
    if (event.type !== 'request' || flags.accessLog) printJson({ event: event.type, ...event, type: undefined });
    return;
  }
  switch (event.type) {
    case 'listening':
      printResult(`finetune serve: listening on ${event.url} with model ${event.model} (${event.classes.length} classes: ${event.classes.join(', ')})`);
      printResult(`  POST ${event.url}/predict   GET ${event.url}/healthz   GET ${event.url}/metrics   (SIGHUP reloads, Ctrl-C stops)`);
      return;
    case 'request':
      if (flags.accessLog) printResult(`${event.method} ${event.path} ${event.status} ${event.ms} ms${event.images ? ` ${event.images} image${event.images === 1 ? '' : 's'}` : ''}${event.error ? ` (${event.error})` : ''}`);
      return;
    case 'reload':
      if (event.ok) printResult(`reloaded model ${event.model}`);
      else printWarning(out, `reload refused: ${event.error}`);
      return;
    case 'draining':
      printResult(`stopping: ${event.inFlight} request${event.inFlight === 1 ? '' : 's'} in flight to finish (--drain-ms ${flags.drainMs})`);
      return;
    case 'closed':
      if (event.unfinished > 0) process.stderr.write(paint(out, 'red', `finetune serve: ${event.unfinished} requests cut off after --drain-ms ${flags.drainMs}`) + '\n');
      else printResult('stopped');
      return;
  }
}
