import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import path from 'node:path';
import { EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici';
import { syncDir } from '../fs/atomic.ts';
import { EXIT, FinetuneError, InterruptedError, ModelFileError } from '../errors.ts';
import { noProgress, type OnProgress } from '../progress.ts';

export interface DownloadOptions {
  /** Published hash of the whole file (Keras publishes md5). */
  md5?: string;
  sha256?: string;
  onProgress?: OnProgress;
  signal?: AbortSignal;
  /** No byte for this long aborts the attempt (then it is retried with resume). */
  idleTimeoutMs?: number;
  /** Attempts after a dropped or stalled connection, each resuming where the last stopped. */
  retries?: number;
  /** Never touch the network: throw OfflineError at once. */
  offline?: boolean;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  md5: string;
  sha256: string;
  /** True when some bytes came from an earlier attempt (an existing `.part` or a dropped connection). */
  resumed: boolean;
}

/** The network cannot be used (or must not be): the user has to fetch the file some other way. */
export class OfflineError extends FinetuneError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, EXIT.runtime, options);
  }
}

export const DOWNLOAD_DEFAULTS = { idleTimeoutMs: 30_000, retries: 3 } as const;

const TASK = 'download';
const PROGRESS_INTERVAL_MS = 100;
const MAX_REDIRECTS = 10;
/** Errors that mean "no route to the host at all": retrying for minutes would not help. */
const UNREACHABLE = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN', 'EHOSTDOWN']);

/**
 * Downloads `url` to `dest`, resuming from `dest.part` when one is there, verifying the
 * published hash, and renaming into place only once the whole file is on disk and checked.
 */
export async function download(url: string, dest: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const {
    md5,
    sha256,
    onProgress = noProgress,
    signal,
    idleTimeoutMs = DOWNLOAD_DEFAULTS.idleTimeoutMs,
    retries = DOWNLOAD_DEFAULTS.retries,
    offline = false,
  } = opts;
  if (offline) {
    throw new OfflineError(`offline: not downloading ${url}; download it elsewhere and put it at ${dest}${hashHint(md5, sha256)}`);
  }
  if (signal?.aborted) throw new InterruptedError();
  await mkdir(path.dirname(dest), { recursive: true });

  // Read per call, so HTTP(S)_PROXY / NO_PROXY set after import still apply. proxyTunnel:false
  // sends plain-http requests to an http proxy as absolute-URI GETs, as curl and wget do.
  const agent = new EnvHttpProxyAgent({ proxyTunnel: false });
  const job: Job = {
    url,
    dest,
    part: `${dest}.part`,
    dispatcher: agent.compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTS })),
    idleTimeoutMs,
    signal,
    hashes: null,
    resumed: false,
    meter: new Meter(onProgress),
    hint: hashHint(md5, sha256),
  };
  try {
    await fetchWithRetries(job, retries);
  } finally {
    // destroy, not close: an abandoned body must not keep the process waiting.
    await agent.destroy().catch(() => {});
  }

  const actual = job.hashes?.digest() ?? (await hashFile(job.part));
  const mismatch = compareHash(md5, actual.md5, 'md5') ?? compareHash(sha256, actual.sha256, 'sha256');
  if (mismatch) {
    const corrupt = `${dest}.corrupt`;
    await rename(job.part, corrupt);
    throw new ModelFileError(
      `download of ${url} is corrupt: expected ${mismatch.algo} ${mismatch.expected}, got ${mismatch.actual}; the bad file was moved to ${corrupt} (delete it and retry)`,
    );
  }
  await rename(job.part, dest);
  await syncDir(path.dirname(dest));
  job.meter.done(`downloaded ${url}`);
  return { path: dest, bytes: actual.bytes, md5: actual.md5, sha256: actual.sha256, resumed: job.resumed };
}

/** md5 and sha256 of a file in one streaming pass. */
export async function hashFile(file: string): Promise<{ md5: string; sha256: string; bytes: number }> {
  const hashes = new Hashes();
  try {
    for await (const chunk of createReadStream(file)) hashes.update(chunk as Buffer);
  } catch (err) {
    throw new ModelFileError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return hashes.digest();
}

interface Job {
  url: string;
  dest: string;
  part: string;
  dispatcher: Dispatcher;
  idleTimeoutMs: number;
  signal: AbortSignal | undefined;
  /** Running hashes; valid only while they cover exactly bytes [0, size of .part). */
  hashes: Hashes | null;
  resumed: boolean;
  meter: Meter;
  /** ` (md5 …)` for messages that ask the user to fetch the file by hand. */
  hint: string;
}

/** A connection that died mid-way: worth another attempt that resumes. */
class TransientError extends Error {}

type AttemptOutcome = 'complete' | 'restart';

async function fetchWithRetries(job: Job, retries: number): Promise<void> {
  let failures = 0;
  let restarts = 0;
  for (;;) {
    try {
      const outcome = await attempt(job);
      if (outcome === 'complete') return;
      // The .part could not be resumed and was removed; one fresh start is enough.
      if (++restarts > 2) throw new FinetuneError(`download of ${job.url} failed: the server's range responses are inconsistent`);
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      if (failures >= retries) {
        throw new FinetuneError(
          `download of ${job.url} failed after ${failures + 1} attempts: ${err.message}; the partial file ${job.part} is kept and the next run resumes from it`,
          EXIT.runtime,
          { cause: err.cause },
        );
      }
      failures++;
      await sleep(Math.min(100 * 2 ** failures, 2000), job.signal);
    }
  }
}

async function attempt(job: Job): Promise<AttemptOutcome> {
  const { url, part } = job;
  const offset = await fileSize(part);
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (offset > 0) headers.range = `bytes=${offset}-`;

  const watchdog = new Watchdog(job.idleTimeoutMs, job.signal);
  try {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, { method: 'GET', headers, dispatcher: job.dispatcher, signal: watchdog.signal });
    } catch (err) {
      throw classifyNetworkError(err, job, watchdog);
    }
    const { statusCode } = res;

    if (statusCode === 416 && offset > 0) {
      await res.body.dump().catch(() => {});
      const total = parseContentRange(header(res, 'content-range'))?.total;
      if (total === offset) {
        job.resumed = true;
        job.hashes = null;
        job.meter.start(url, total, offset);
        job.meter.progress(offset, true);
        return 'complete';
      }
      await rm(part, { force: true });
      return 'restart';
    }

    let append = false;
    let total: number | undefined;
    if (statusCode === 206 && offset > 0) {
      const range = parseContentRange(header(res, 'content-range'));
      if (!range || range.start !== offset) {
        await res.body.dump().catch(() => {});
        await rm(part, { force: true });
        return 'restart';
      }
      append = true;
      total = range.total;
      job.resumed = true;
      // Hashes from an earlier attempt of this call still cover [0, offset); a .part left by
      // another run does not, and is hashed from disk at the end.
      if (job.hashes?.bytes !== offset) job.hashes = null;
    } else if (statusCode === 200) {
      // Also the answer of a server that ignores Range: start over with this body.
      const length = header(res, 'content-length');
      total = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
      job.hashes = new Hashes();
      job.resumed = false;
    } else {
      await res.body.dump().catch(() => {});
      throw new FinetuneError(`download of ${url} failed: HTTP ${statusCode} ${STATUS_CODES[statusCode] ?? ''}`.trimEnd());
    }

    job.meter.start(url, total, append ? offset : 0);
    const size = await writeBody(job, res.body, append ? offset : 0, append, watchdog);
    if (total !== undefined && size !== total) {
      throw new TransientError(`connection closed at ${size} of ${total} bytes`);
    }
    job.meter.progress(size, true);
    return 'complete';
  } finally {
    watchdog.dispose();
  }
}

async function writeBody(job: Job, body: AsyncIterable<Buffer>, start: number, append: boolean, watchdog: Watchdog): Promise<number> {
  let size = start;
  let fh: FileHandle;
  try {
    fh = await open(job.part, append ? 'a' : 'w');
  } catch (err) {
    throw new FinetuneError(`cannot write ${job.part}: ${(err as Error).message}`, EXIT.runtime, { cause: err });
  }
  try {
    const chunks = body[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await chunks.next();
      } catch (err) {
        throw classifyNetworkError(err, job, watchdog);
      }
      if (next.done) break;
      watchdog.feed();
      const chunk = next.value;
      try {
        await fh.write(chunk);
      } catch (err) {
        throw new FinetuneError(`cannot write ${job.part}: ${(err as Error).message}`, EXIT.runtime, { cause: err });
      }
      job.hashes?.update(chunk);
      size += chunk.length;
      job.meter.progress(size);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return size;
}

/** Turns an undici / socket error into what the user should see, or a retryable TransientError. */
function classifyNetworkError(err: unknown, job: Job, watchdog: Watchdog): Error {
  if (job.signal?.aborted) return new InterruptedError(`download of ${job.url} interrupted; the partial file ${job.part} is kept and the next run resumes from it`);
  if (watchdog.fired) {
    return new TransientError(`no data for ${formatSeconds(job.idleTimeoutMs)} (stalled connection)`, { cause: err });
  }
  if (err instanceof FinetuneError || err instanceof TransientError) return err;
  const code = errorCode(err);
  if (code && UNREACHABLE.has(code)) {
    const proxy = proxyInEnv(job.url);
    const via = proxy ? `, ${proxy.name} is ${proxy.value}` : '';
    return new OfflineError(`cannot reach ${job.url} (${code}${via}); download it elsewhere and put it at ${job.dest}${job.hint}`, { cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new TransientError(`connection dropped (${detail})`, { cause: err });
}

/** The proxy variable that applies to this URL's scheme, if set (NO_PROXY is not consulted: this only explains an error). */
function proxyInEnv(url: string): { name: string; value: string } | undefined {
  const names = url.startsWith('https:') ? ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY'] : ['http_proxy', 'HTTP_PROXY'];
  for (const name of names) {
    const value = process.env[name];
    if (value) return { name, value: withoutCredentials(value) };
  }
  return undefined;
}

/** Proxy URLs may carry a password: never put it in a message. */
function withoutCredentials(proxy: string): string {
  try {
    const u = new URL(proxy);
    u.username = '';
    u.password = '';
    return u.href;
  } catch {
    return '(unparsable URL)';
  }
}

function errorCode(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  let fallback: string | undefined;
  while (queue.length) {
    const e = queue.shift();
    if (!e || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (UNREACHABLE.has(code)) return code;
      fallback ??= code;
    }
    queue.push((e as { cause?: unknown }).cause);
    // Happy-eyeballs connects report one error per address tried.
    if (e instanceof AggregateError) queue.push(...e.errors);
  }
  return fallback;
}

/** Aborts the request when no byte arrives for `idleMs`, or when the caller's signal fires. */
class Watchdog {
  readonly signal: AbortSignal;
  fired = false;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private readonly onAbort = () => this.controller.abort(this.outer?.reason);

  constructor(
    private readonly idleMs: number,
    private readonly outer: AbortSignal | undefined,
  ) {
    this.signal = this.controller.signal;
    outer?.addEventListener('abort', this.onAbort, { once: true });
    if (outer?.aborted) this.onAbort();
    this.feed();
  }

  feed(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.fired = true;
      this.controller.abort(new Error(`idle for ${this.idleMs} ms`));
    }, this.idleMs);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.outer?.removeEventListener('abort', this.onAbort);
  }
}

class Hashes {
  bytes = 0;
  private readonly md5: Hash = createHash('md5');
  private readonly sha256: Hash = createHash('sha256');

  update(chunk: Buffer): void {
    this.md5.update(chunk);
    this.sha256.update(chunk);
    this.bytes += chunk.length;
  }

  digest(): { md5: string; sha256: string; bytes: number } {
    return { md5: this.md5.digest('hex'), sha256: this.sha256.digest('hex'), bytes: this.bytes };
  }
}

/** initiate once, progress at most every 100 ms (plus the last one), done once. */
class Meter {
  private started = false;
  private total: number | undefined;
  private t0 = 0;
  private base = 0;
  private lastEmit = 0;
  private lastCurrent = -1;

  constructor(private readonly onProgress: OnProgress) {}

  start(url: string, total: number | undefined, current: number): void {
    this.total = total;
    if (this.started) return;
    this.started = true;
    this.t0 = Date.now();
    this.base = current;
    this.onProgress({ status: 'initiate', task: TASK, message: `downloading ${url}`, total, unit: 'B' });
  }

  progress(current: number, force = false): void {
    const now = Date.now();
    if (current === this.lastCurrent) return;
    if (!force && now - this.lastEmit < PROGRESS_INTERVAL_MS && current !== this.total) return;
    this.lastEmit = now;
    this.lastCurrent = current;
    const seconds = Math.max((now - this.t0) / 1000, 1e-3);
    const bytesPerSecond = Math.max(current - this.base, 0) / seconds;
    const info: Record<string, number> = { bytesPerSecond: Math.round(bytesPerSecond) };
    if (this.total !== undefined && bytesPerSecond > 0) {
      info.etaSeconds = Math.max(this.total - current, 0) / bytesPerSecond;
    }
    this.onProgress({ status: 'progress', task: TASK, current, total: this.total, unit: 'B', info });
  }

  done(message: string): void {
    this.onProgress({ status: 'done', task: TASK, message });
  }
}

function header(res: Dispatcher.ResponseData, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

// `bytes START-END/TOTAL`, or `bytes *\/TOTAL` on a 416; TOTAL may be `*` (unknown).
function parseContentRange(value: string | undefined): { start?: number; total?: number } | undefined {
  const m = value && /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(value.trim());
  if (!m) return undefined;
  return {
    start: m[1] === undefined ? undefined : Number(m[1]),
    total: m[2] === '*' ? undefined : Number(m[2]),
  };
}

function compareHash(expected: string | undefined, actual: string, algo: string) {
  if (!expected || expected.trim().toLowerCase() === actual) return undefined;
  return { algo, expected: expected.trim().toLowerCase(), actual };
}

function hashHint(md5: string | undefined, sha256: string | undefined): string {
  if (md5) return ` (md5 ${md5})`;
  if (sha256) return ` (sha256 ${sha256})`;
  return '';
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

function formatSeconds(ms: number): string {
  return `${+(ms / 1000).toFixed(1)} s`;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new InterruptedError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new InterruptedError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
