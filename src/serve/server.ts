import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { ImageReadError } from '../data/image.ts';
import { UsageError } from '../errors.ts';
import { labelRow, loadModel, type FinetuneModel } from '../pipeline/predict.ts';
import { Batcher, QueueFullError } from './batcher.ts';
import { ClientGoneError, HttpError, readUploads } from './body.ts';
import { METRICS_CONTENT_TYPE, ServeMetrics } from './metrics.ts';
import { SERVE_DEFAULTS } from './defaults.ts';
import { createPredictor, type Predictor, type PredictorInput, type PredictorOptions } from './predictor.ts';

export { SERVE_DEFAULTS };

export type ServeEvent =
  | { type: 'listening'; url: string; model: string; classes: string[] }
  | { type: 'request'; method: string; path: string; status: number; ms: number; images: number; error?: string }
  | { type: 'reload'; ok: boolean; model: string; error?: string }
  | { type: 'draining'; inFlight: number }
  | { type: 'closed'; unfinished: number };

export interface ServeOptions extends PredictorOptions, Partial<typeof SERVE_DEFAULTS> {
  /** Model folder; re-read on every reload. Default: the model trained last. */
  model?: string;
  onEvent?: (event: ServeEvent) => void;
}

export interface ReloadResult {
  ok: boolean;
  model: string;
  error?: string;
}

export interface PredictionServer {
  readonly url: string;
  readonly port: number;
  readonly metrics: ServeMetrics;
  /** Loads the model from disk again; on failure the model in use stays. */
  reload(): Promise<ReloadResult>;
  /** Stops accepting, waits up to drainMs for requests in flight, frees the model. */
  close(drainMs?: number): Promise<{ unfinished: number }>;
}

/** One loaded model and the queue in front of it; retired by a reload once its requests are done. */
interface Generation {
  model: FinetuneModel;
  predictor: Predictor;
  batcher: Batcher<PredictorInput, Float32Array>;
  users: number;
  retired: boolean;
  disposed?: Promise<void>;
}

const KNOWN_PATHS = new Set(['/predict', '/healthz', '/metrics', '/reload']);

/**
 * `finetune serve`'s HTTP server, on node:http: five routes need no framework, and node:http
 * gives the control over the request stream that the limits need (refuse a body by its
 * Content-Length, stop reading at --max-body, notice a client that leaves mid-upload).
 */
export async function serve(opts: ServeOptions = {}): Promise<PredictionServer> {
  const o = { ...SERVE_DEFAULTS, ...definedOnly(opts) };
  if (o.maxBatch < 1) throw new UsageError(`--max-batch ${o.maxBatch}: must be at least 1`);
  if (o.maxQueue < 1) throw new UsageError(`--max-queue ${o.maxQueue}: must be at least 1`);
  if (o.maxBody < 1) throw new UsageError(`--max-body ${o.maxBody}: must be at least 1 byte`);
  if (o.timeoutMs < 1) throw new UsageError(`--timeout-ms ${o.timeoutMs}: must be at least 1`);
  const emit = opts.onEvent ?? (() => {});
  let inFlight = 0;
  let draining = false;
  let drained: (() => void) | undefined;
  const generations = new Set<Generation>();
  const metrics = new ServeMetrics(() => ({ queueDepth: [...generations].reduce((n, g) => n + g.batcher.depth, 0), inFlight }));

  async function openGeneration(): Promise<Generation> {
    const model = await loadModel(o.model, { backend: o.backend });
    let predictor: Predictor | undefined;
    try {
      predictor = await createPredictor(model, o);
      await predictor.warmUp();
    } catch (err) {
      await predictor?.close();
      model.head.dispose();
      throw err;
    }
    const ready = predictor;
    const k = model.classes.length;
    const batcher = new Batcher<PredictorInput, Float32Array>(
      async (inputs) => {
        const probabilities = await ready.run(inputs);
        return inputs.map((_, i) => probabilities.slice(i * k, (i + 1) * k));
      },
      { maxBatch: o.maxBatch, maxWaitMs: o.maxWaitMs, maxQueue: o.maxQueue, inFlight: 2, onBatch: (size) => metrics.batch(size) },
    );
    const generation: Generation = { model, predictor, batcher, users: 0, retired: false };
    generations.add(generation);
    return generation;
  }

  function release(g: Generation): void {
    g.users--;
    if (g.retired && g.users === 0) void dispose(g);
  }

  function dispose(g: Generation): Promise<void> {
    g.disposed ??= (async () => {
      await g.batcher.idle();
      await g.predictor.close();
      g.model.head.dispose();
      generations.delete(g);
    })();
    return g.disposed;
  }

  function retire(g: Generation): Promise<void> | undefined {
    g.retired = true;
    return g.users === 0 ? dispose(g) : undefined;
  }

  let current = await openGeneration();
  const modelName = () => path.basename(path.resolve(current.model.dir));

  let reloading: Promise<ReloadResult> | undefined;
  function reload(): Promise<ReloadResult> {
    reloading ??= (async (): Promise<ReloadResult> => {
      try {
        const next = await openGeneration();
        const old = current;
        current = next;
        retire(old);
        metrics.reload(true);
        const result = { ok: true, model: modelName() };
        emit({ type: 'reload', ...result });
        return result;
      } catch (err) {
        metrics.reload(false);
        const result = { ok: false, model: modelName(), error: `${(err as Error).message}; still serving the model loaded before` };
        emit({ type: 'reload', ...result });
        return result;
      }
    })().finally(() => (reloading = undefined));
    return reloading;
  }

  function send(req: IncomingMessage, res: ServerResponse, started: number, status: number, body: unknown, extra: { headers?: Record<string, string>; images?: number; close?: boolean } = {}): void {
    if (res.headersSent || res.destroyed) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body) + '\n';
    const headers: Record<string, string | number> = {
      'Content-Type': typeof body === 'string' ? METRICS_CONTENT_TYPE : 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
      ...extra.headers,
    };
    if (draining || extra.close) headers.Connection = 'close';
    res.writeHead(status, headers);
    res.end(text);
    const route = routeName(req);
    const seconds = (performance.now() - started) / 1000;
    metrics.request(route, status, seconds);
    const error = status >= 400 && body && typeof body === 'object' && 'error' in body ? String(body.error) : undefined;
    emit({ type: 'request', method: req.method ?? '', path: route, status, ms: Math.round(seconds * 1000), images: extra.images ?? 0, error });
  }

  async function predictRoute(req: IncomingMessage, res: ServerResponse, url: URL, started: number): Promise<void> {
    if (draining) throw new HttpError(503, 'the server is shutting down', { 'Retry-After': '1' });
    const top = parseTop(url.searchParams.get('top'));
    const tta = parseFlag('tta', url.searchParams.get('tta'));
    const g = current;
    if (g.batcher.full) throw new HttpError(503, `the queue is full (${g.batcher.depth} images waiting, --max-queue ${o.maxQueue}); retry shortly`, { 'Retry-After': '1' });
    const multipart = (req.headers['content-type'] ?? '').toLowerCase().startsWith('multipart/');
    const controller = new AbortController();
    // A client that leaves: its images leave the queue, and nothing is answered.
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new ClientGoneError());
    };
    res.on('close', onClose);
    const timer = setTimeout(() => controller.abort(new HttpError(503, `no answer within ${o.timeoutMs} ms (--timeout-ms): the server is overloaded; retry shortly`, { 'Retry-After': '1' })), o.timeoutMs);
    inFlight++;
    g.users++;
    try {
      const uploads = await whileNotAborted(readUploads(req, { maxBody: o.maxBody, maxFiles: o.maxFiles }), controller.signal);
      const inputs = await whileNotAborted(
        Promise.all(
          uploads.map((u) =>
            g.predictor.decode(u.bytes, { tta, name: u.name }).catch((err: unknown) => {
              if (err instanceof ImageReadError) throw new HttpError(400, multipart ? `${u.name}: ${err.reason}` : err.reason);
              throw err;
            }),
          ),
        ),
        controller.signal,
      );
      const rows = await Promise.all(inputs.map((input) => g.batcher.submit(input, controller.signal)));
      const answers = rows.map((row, i) => {
        const answer = labelRow(g.model.classes, row);
        const probabilities = top ? Object.fromEntries(Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]).slice(0, top)) : answer.probabilities;
        return multipart ? { file: uploads[i].name, ...answer, probabilities } : { ...answer, probabilities };
      });
      send(req, res, started, 200, multipart ? answers : answers[0], { images: answers.length });
    } catch (err) {
      // The request's other images leave the queue: nobody will read their answers.
      controller.abort(err);
      throw err;
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
      inFlight--;
      release(g);
      if (inFlight === 0) drained?.();
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = url.pathname;
    const only = (method: string) => {
      if (req.method !== method) throw new HttpError(405, `${route} takes ${method}`, { Allow: method });
    };
    try {
      if (route === '/predict') {
        only('POST');
        await predictRoute(req, res, url, started);
      } else if (route === '/healthz') {
        only('GET');
        if (draining) send(req, res, started, 503, { status: 'draining', model: modelName(), classes: current.model.classes });
        else send(req, res, started, 200, { status: 'ok', model: modelName(), classes: current.model.classes });
      } else if (route === '/metrics') {
        only('GET');
        send(req, res, started, 200, metrics.text());
      } else if (route === '/reload') {
        only('POST');
        if (!isLoopback(req.socket.remoteAddress)) throw new HttpError(403, 'POST /reload is accepted from 127.0.0.1 only; send SIGHUP to the server process instead');
        const result = await reload();
        if (result.ok) send(req, res, started, 200, { status: 'reloaded', model: result.model, classes: current.model.classes });
        else send(req, res, started, 500, { error: result.error });
      } else {
        throw new HttpError(404, `no route ${route}: use POST /predict, GET /healthz, GET /metrics or POST /reload`);
      }
    } catch (err) {
      if (err instanceof ClientGoneError) {
        metrics.request(routeName(req), 499, (performance.now() - started) / 1000);
        res.destroy();
      } else if (err instanceof HttpError) {
        // A body refused unread is not read on: the connection closes after the answer.
        send(req, res, started, err.status, { error: err.message }, { headers: err.headers, close: err.status === 413 || !req.complete });
      } else if (err instanceof QueueFullError) {
        send(req, res, started, 503, { error: `${err.message} (--max-queue ${o.maxQueue})` }, { headers: { 'Retry-After': '1' } });
      } else {
        send(req, res, started, 500, { error: (err as Error).message ?? String(err) });
      }
    }
  }

  const server: Server = createServer((req, res) => void handle(req, res));
  // A backstop for what the per-request timer does not see (headers that never end): node answers 408.
  server.requestTimeout = o.timeoutMs;
  server.headersTimeout = Math.min(o.timeoutMs, 60_000);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await dispose(current);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new UsageError(`--port ${o.port}: address ${o.host}:${o.port} is in use; pick another port (--port 0 takes any free one)`);
    if (code === 'EACCES') throw new UsageError(`--port ${o.port}: not allowed to listen on ${o.host}:${o.port}; use a port above 1023`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UsageError(`--host ${o.host}: not an address of this machine`);
    throw err;
  }
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  emit({ type: 'listening', url, model: modelName(), classes: current.model.classes });

  let closing: Promise<{ unfinished: number }> | undefined;
  return {
    url,
    port: address.port,
    metrics,
    reload,
    close(drainMs = o.drainMs) {
      closing ??= (async () => {
        draining = true;
        emit({ type: 'draining', inFlight });
        const stopped = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        if (inFlight > 0) {
          await new Promise<void>((resolve) => {
            drained = resolve;
            setTimeout(resolve, drainMs).unref();
          });
        }
        const unfinished = inFlight;
        server.closeAllConnections();
        await stopped;
        await reloading;
        await Promise.all([...generations].map((g) => dispose(g)));
        emit({ type: 'closed', unfinished });
        return { unfinished };
      })();
      return closing;
    },
  };
}

function routeName(req: IncomingMessage): string {
  const route = new URL(req.url ?? '/', 'http://localhost').pathname;
  return KNOWN_PATHS.has(route) ? route : 'other';
}

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

function parseTop(value: string | null): number | undefined {
  if (value === null) return undefined;
  const k = Number(value);
  if (!Number.isInteger(k) || k < 1) throw new HttpError(400, `?top=${value}: must be a whole number of at least 1`);
  return k;
}

function parseFlag(name: string, value: string | null): boolean {
  if (value === null || value === '0' || value === 'false') return false;
  if (value === '' || value === '1' || value === 'true') return true;
  throw new HttpError(400, `?${name}=${value}: use ${name}=1 or ${name}=0`);
}

/** Rejects with the signal's reason as soon as it fires (the work's own result is dropped). */
function whileNotAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
