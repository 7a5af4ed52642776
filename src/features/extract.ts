import os from 'node:os';
import { cropBox, type Variant } from '../data/augment.ts';
import { decodeImage, ImageReadError, loadFile, type ResizeMode } from '../data/image.ts';
import { preprocessInto, type Preprocess } from '../data/preprocess.ts';
import type { Skipped } from '../data/files.ts';
import type { FeatureExtractor } from '../engines/types.ts';
import { InterruptedError } from '../errors.ts';
import type { OnProgress } from '../progress.ts';

/** The part of the feature cache the pipeline needs (src/features/cache.ts implements it). */
export interface FeatureStore {
  getMany(hashes: string[]): Promise<(Float32Array | undefined)[]>;
  put(entries: { hash: string; features: Float32Array }[]): Promise<void>;
}

export interface ExtractOptions {
  extractor: FeatureExtractor;
  preprocess: Preprocess;
  resize?: ResizeMode;
  /** Images per forward pass. */
  batchSize?: number;
  /** Which augmented variant of each image (mirror, random crop); none by default. */
  variant?: Variant;
  cache?: FeatureStore;
  onProgress?: OnProgress;
  signal?: AbortSignal;
  /** Files read and decoded at once; sharp decodes on its own threads. */
  decodeConcurrency?: number;
  /** Name of the progress task (`extract`, `extract:flip`…). */
  task?: string;
}

export interface ExtractResult {
  /** n × dim, row i = paths[i]; rows of skipped files are zeros. */
  features: Float32Array;
  dim: number;
  /** ok[i] = 1 when row i holds real features. */
  ok: Uint8Array;
  /** sha256 of each file ('' when unreadable). */
  hashes: string[];
  skipped: Skipped[];
  cache: { hits: number; misses: number };
  /** Images that went through the backbone. */
  computed: number;
  seconds: number;
  /** Images through the backbone per second of wall time, decoding included. */
  imagesPerSecond: number;
  /** Images per second of engine time alone (what the pipeline should keep up with). */
  engineImagesPerSecond: number;
}

interface Decoded {
  index: number;
  hash: string;
  rgb: Uint8Array;
}

/**
 * Files → features, as a pipeline: readers decode ahead of the engine through a bounded
 * queue (so the engine does not wait on JPEG decoding and memory does not grow with the
 * data set), cached rows are served without decoding, and each computed batch is stored
 * in the cache as soon as it exists (an interrupted run resumes from there).
 */
export async function extractFeatures(paths: string[], opts: ExtractOptions): Promise<ExtractResult> {
  const { extractor, signal } = opts;
  const batchSize = Math.max(1, opts.batchSize ?? 16);
  const dim = extractor.featureSize;
  const [h, w] = extractor.inputSize;
  const n = paths.length;
  const features = new Float32Array(n * dim);
  const ok = new Uint8Array(n);
  const hashes: string[] = new Array(n).fill('');
  const skipped: Skipped[] = [];
  const task = opts.task ?? 'extract';
  const started = performance.now();
  let hits = 0;
  let computed = 0;
  let done = 0;
  let engineSeconds = 0;

  const report = () =>
    opts.onProgress?.({ status: 'progress', task, current: done, total: n, unit: 'images', info: { hits, imagesPerSecond: engineSeconds > 0 ? computed / engineSeconds : 0 } });
  opts.onProgress?.({ status: 'initiate', task, message: `extracting features of ${n} images`, total: n, unit: 'images' });

  // Bounded hand-off between readers and the engine.
  const queue: Decoded[] = [];
  const capacity = batchSize * 2;
  let waitingForRoom: (() => void)[] = [];
  let waitingForData: (() => void) | undefined;
  let readersLeft = 0;
  let next = 0;
  let failure: unknown;

  const wakeEngine = () => {
    waitingForData?.();
    waitingForData = undefined;
  };

  async function reader(): Promise<void> {
    try {
      while (next < n && !failure && !signal?.aborted) {
        const index = next++;
        const path = paths[index];
        try {
          const file = await loadFile(path);
          hashes[index] = file.hash;
          if (opts.cache) {
            const [cached] = await opts.cache.getMany([file.hash]);
            if (cached && cached.length === dim) {
              features.set(cached, index * dim);
              ok[index] = 1;
              hits++;
              done++;
              report();
              continue;
            }
          }
          const crop = opts.variant?.crop ? cropBox(file.hash, opts.variant.crop) : undefined;
          const image = await decodeImage(path, file.bytes, { size: [h, w], resize: opts.resize, flip: opts.variant?.flip, crop });
          while (queue.length >= capacity && !failure) await new Promise<void>((r) => waitingForRoom.push(r));
          queue.push({ index, hash: file.hash, rgb: image.rgb });
          wakeEngine();
        } catch (err) {
          if (!(err instanceof ImageReadError)) throw err;
          skipped.push({ path, reason: err.reason });
          done++;
          opts.onProgress?.({ status: 'warn', task, message: `skipped ${path}: ${err.reason}`, path });
          report();
        }
      }
    } catch (err) {
      failure ??= err;
    } finally {
      readersLeft--;
      wakeEngine();
    }
  }

  const concurrency = Math.max(1, opts.decodeConcurrency ?? Math.min(8, os.availableParallelism() * 2));
  readersLeft = concurrency;
  const readers = Array.from({ length: concurrency }, () => reader());

  try {
    while (true) {
      if (signal?.aborted) throw new InterruptedError();
      if (failure) throw failure;
      // The first forward pass takes one image, so a rate and a time left show at once.
      const wanted = computed === 0 ? 1 : batchSize;
      if (queue.length < wanted && readersLeft > 0) {
        await new Promise<void>((r) => (waitingForData = r));
        continue;
      }
      if (queue.length === 0) break;
      const batch = queue.splice(0, wanted);
      const rooms = waitingForRoom;
      waitingForRoom = [];
      rooms.forEach((r) => r());
      const input = new Float32Array(batch.length * h * w * 3);
      batch.forEach((item, i) => preprocessInto(item.rgb, opts.preprocess, input, i * h * w * 3));
      const t = performance.now();
      const out = await untilAborted(extractor.run(input, batch.length), signal);
      engineSeconds += (performance.now() - t) / 1000;
      const entries = batch.map((item, i) => {
        const row = out.slice(i * dim, (i + 1) * dim);
        features.set(row, item.index * dim);
        ok[item.index] = 1;
        return { hash: item.hash, features: row };
      });
      await opts.cache?.put(entries);
      computed += batch.length;
      done += batch.length;
      report();
    }
    if (signal?.aborted) throw new InterruptedError();
    if (failure) throw failure;
  } catch (err) {
    failure ??= err;
    waitingForRoom.forEach((r) => r());
    throw err;
  } finally {
    await Promise.allSettled(readers);
  }
  const seconds = (performance.now() - started) / 1000;
  opts.onProgress?.({ status: 'done', task, message: `${computed} computed, ${hits} from cache, ${skipped.length} skipped in ${seconds.toFixed(1)} s` });
  skipped.sort((a, b) => (a.path < b.path ? -1 : 1));
  return {
    features,
    dim,
    ok,
    hashes,
    skipped,
    cache: { hits, misses: n - hits - skipped.length },
    computed,
    seconds,
    imagesPerSecond: seconds > 0 ? computed / seconds : 0,
    engineImagesPerSecond: engineSeconds > 0 ? computed / engineSeconds : 0,
  };
}

/** Stops waiting for a running batch as soon as the user interrupts (its result is dropped). */
function untilAborted<T>(work: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(new InterruptedError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new InterruptedError());
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
