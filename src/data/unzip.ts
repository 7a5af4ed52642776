import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import { EXIT, FinetuneError, InterruptedError, UsageError } from '../errors.ts';
import { noProgress, type OnProgress } from '../progress.ts';

export interface UnzipOptions {
  onProgress?: OnProgress;
  signal?: AbortSignal;
  /** Drop this many leading path components from every entry (like `tar --strip-components`). */
  stripComponents?: number;
}

const TASK = 'unzip';
const PROGRESS_INTERVAL_MS = 100;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/**
 * Extracts a zip archive into `destDir`, which must be absent or empty. Everything goes into a
 * temporary sibling folder first and is renamed into place at the end, so an interrupted or
 * refused extraction never leaves a half-filled `destDir`.
 */
export async function extractZip(zipFile: string, destDir: string, opts: UnzipOptions = {}): Promise<{ files: number; bytes: number }> {
  const { onProgress = noProgress, signal, stripComponents = 0 } = opts;
  await assertEmptyOrAbsent(destDir);
  if (signal?.aborted) throw new InterruptedError();
  const interrupted = () => new InterruptedError(`extraction of ${zipFile} interrupted; ${destDir} was not created`);

  let zip: yauzl.ZipFile;
  try {
    // decodeStrings:false so that unsafe names reach our own check, which names the entry.
    zip = await yauzl.openPromise(zipFile, { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`${zipFile} not found`);
    if (code === 'EISDIR') throw new UsageError(`${zipFile} is a folder, not a zip file`);
    throw corrupt(zipFile, err);
  }

  // With lazyEntries, errors come while an entry is being read; one arriving at any other
  // moment must still fail the extraction instead of crashing the process.
  let strayError: unknown;
  zip.on('error', (err: unknown) => {
    strayError ??= err;
  });

  const tmp = `${destDir}.extracting-${randomBytes(4).toString('hex')}`;
  await mkdir(tmp, { recursive: true });
  const totals = { files: 0, bytes: 0 };
  try {
    onProgress({ status: 'initiate', task: TASK, message: `extracting ${zipFile}`, total: zip.entryCount, unit: 'entries' });
    let done = 0;
    let lastEmit = 0;
    for await (const entry of entries(zip, zipFile)) {
      if (signal?.aborted) throw interrupted();
      await extractEntry(zip, zipFile, entry, { root: tmp, stripComponents, signal }, totals);
      done++;
      const now = Date.now();
      if (now - lastEmit >= PROGRESS_INTERVAL_MS || done === zip.entryCount) {
        lastEmit = now;
        onProgress({ status: 'progress', task: TASK, current: done, total: zip.entryCount, unit: 'entries', info: { bytes: totals.bytes } });
      }
    }
    if (strayError) throw corrupt(zipFile, strayError);
    await moveIntoPlace(tmp, destDir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    zip.close();
  }
  onProgress({ status: 'done', task: TASK, message: `extracted ${totals.files} files to ${destDir}` });
  return totals;
}

async function assertEmptyOrAbsent(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new UsageError(`${dir} exists and is not a folder: choose another destination`);
    throw err;
  }
  if (names.length > 0) {
    throw new UsageError(`${dir} already exists and is not empty: remove it or choose another destination (finetune does not overwrite it)`);
  }
}

/** Entries one at a time (lazyEntries), as an async iterator; archive errors become "corrupt". */
async function* entries(zip: yauzl.ZipFile, zipFile: string): AsyncGenerator<yauzl.Entry> {
  for (;;) {
    const next = await new Promise<yauzl.Entry | null>((resolve, reject) => {
      const cleanup = () => {
        zip.off('entry', onEntry);
        zip.off('end', onEnd);
        zip.off('error', onError);
      };
      const onEntry = (e: yauzl.Entry) => (cleanup(), resolve(e));
      const onEnd = () => (cleanup(), resolve(null));
      const onError = (err: unknown) => (cleanup(), reject(corrupt(zipFile, err)));
      zip.on('entry', onEntry);
      zip.on('end', onEnd);
      zip.on('error', onError);
      zip.readEntry();
    });
    if (!next) return;
    yield next;
  }
}

async function extractEntry(
  zip: yauzl.ZipFile,
  zipFile: string,
  entry: yauzl.Entry,
  { root, stripComponents, signal }: { root: string; stripComponents: number; signal: AbortSignal | undefined },
  totals: { files: number; bytes: number },
): Promise<void> {
  const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, false);
  const unsafe = yauzl.validateFileName(name);
  if (unsafe !== null) {
    throw new FinetuneError(`${zipFile} contains an unsafe entry "${name}" (${unsafe.split(':')[0]}): refusing to extract it`);
  }
  const mode = (entry.externalFileAttributes >>> 16) & S_IFMT;
  if (mode === S_IFLNK) {
    throw new FinetuneError(`${zipFile} contains a symbolic link "${name}": refusing to extract it`);
  }

  const isDir = name.endsWith('/');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  const kept = parts.slice(stripComponents);
  if (kept.length === 0) return;
  const target = path.join(root, ...kept);
  // validateFileName already rules this out; this guards the invariant itself.
  if (path.relative(root, target).startsWith('..') || path.isAbsolute(path.relative(root, target))) {
    throw new FinetuneError(`${zipFile} contains an unsafe entry "${name}": refusing to extract it`);
  }

  if (isDir) {
    await mkdir(target, { recursive: true });
    return;
  }
  await mkdir(path.dirname(target), { recursive: true });
  if (entry.isEncrypted()) throw new FinetuneError(`${zipFile}: entry "${name}" is encrypted; finetune cannot extract it`);

  let crc = 0;
  const checksum = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      crc = zlib.crc32(chunk, crc);
      cb(null, chunk);
    },
  });
  try {
    const source = await zip.openReadStreamPromise(entry);
    await pipeline(source, checksum, createWriteStream(target, { flags: 'wx' }), { signal });
  } catch (err) {
    if (signal?.aborted) throw new InterruptedError(`extraction of ${zipFile} interrupted; nothing was written to the destination`);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new FinetuneError(`${zipFile} lists "${name}" twice: refusing an ambiguous archive`);
    if (code && /^E[A-Z]+$/.test(code)) {
      throw new FinetuneError(`cannot extract "${name}" from ${zipFile}: ${(err as Error).message}`, EXIT.runtime, { cause: err });
    }
    throw corrupt(zipFile, err, name);
  }
  if (crc >>> 0 !== entry.crc32 >>> 0) throw corrupt(zipFile, new Error('CRC-32 mismatch'), name);
  totals.files++;
  totals.bytes += entry.uncompressedSize;
}

/** rename() replaces an empty folder on POSIX but not on Windows: remove it first. */
async function moveIntoPlace(tmp: string, destDir: string): Promise<void> {
  await assertEmptyOrAbsent(destDir);
  await rmdir(destDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  try {
    await rename(tmp, destDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      throw new UsageError(`${destDir} appeared while extracting and is not empty: remove it or choose another destination`);
    }
    throw err;
  }
}

function corrupt(zipFile: string, err: unknown, entry?: string): FinetuneError {
  const detail = (err instanceof Error ? err.message : String(err)).replace(/\.+$/, '');
  const where = entry ? ` (entry "${entry}")` : '';
  return new FinetuneError(`${zipFile} is not a valid zip file${where}: ${detail}; download it again`, EXIT.runtime, { cause: err });
}
