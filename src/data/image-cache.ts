import { rmSync } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FinetuneError, InterruptedError } from '../errors.ts';
import type { OnProgress } from '../progress.ts';
import type { Skipped } from './files.ts';
import { ImageReadError, readImage, type ResizeMode } from './image.ts';

export interface ImageCacheOptions {
  /** [height, width] every image is resized to. */
  inputSize: readonly [number, number];
  resize?: ResizeMode;
  /** Bytes of pixels held in memory (default 1 GiB); the images beyond go to one file on disk. */
  budgetBytes?: number;
  /** Folder for that file (default the system's temporary folder); removed by dispose(). */
  dir?: string;
  /** Files decoded at once (sharp decodes on its own threads). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: OnProgress;
}

/**
 * Every image decoded and resized once, as uint8 RGB (HWC) at the input size, for training
 * loops that visit each image every epoch (fine-tuning) and augment it on the fly.
 */
export interface ImageCache {
  readonly count: number;
  /** [height, width]. */
  readonly size: readonly [number, number];
  readonly bytesPerImage: number;
  /** ok[i] = 1 when image i decoded; get(i) of an unreadable one throws. */
  readonly ok: Uint8Array;
  readonly skipped: Skipped[];
  /** Images held in memory (the first ones); the rest are read from the spill file. */
  readonly inMemory: number;
  /** Pixel bytes held in memory: never above the budget. */
  readonly memoryBytes: number;
  /** Path of the spill file, or null when everything fits in memory. */
  readonly spillFile: string | null;
  /** Image i's pixels (a fresh array the caller may change). */
  get(i: number): Promise<Uint8Array>;
  dispose(): Promise<void>;
}

export const IMAGE_CACHE_DEFAULTS = Object.freeze({ budgetBytes: 1 << 30, concurrency: 4 });

/** Spill folders still on disk: removed at exit if dispose() was never reached. */
const liveSpillDirs = new Set<string>();
let exitHookInstalled = false;
function removeAtExit(dir: string): void {
  liveSpillDirs.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const d of liveSpillDirs) rmSync(d, { recursive: true, force: true });
  });
}

export async function buildImageCache(files: string[], opts: ImageCacheOptions): Promise<ImageCache> {
  const [height, width] = opts.inputSize;
  if (!(Number.isInteger(height) && Number.isInteger(width) && height > 0 && width > 0)) throw new FinetuneError(`image cache: input size must be two whole numbers above 0, got ${opts.inputSize.join('×')}`);
  const bytesPerImage = height * width * 3;
  const budget = opts.budgetBytes ?? IMAGE_CACHE_DEFAULTS.budgetBytes;
  const inMemory = Math.min(files.length, Math.floor(Math.max(0, budget) / bytesPerImage));
  const memory: (Uint8Array | undefined)[] = new Array(inMemory);
  const ok = new Uint8Array(files.length);
  const skipped: Skipped[] = [];

  let spillDir: string | null = null;
  let spill: FileHandle | null = null;
  const cleanup = async () => {
    await spill?.close();
    spill = null;
    if (spillDir) {
      await rm(spillDir, { recursive: true, force: true });
      liveSpillDirs.delete(spillDir);
    }
  };
  if (inMemory < files.length) {
    spillDir = await mkdtemp(path.join(opts.dir ?? os.tmpdir(), 'finetune-images-'));
    removeAtExit(spillDir);
    spill = await open(path.join(spillDir, 'pixels.u8'), 'w+');
  }

  const onProgress = opts.onProgress;
  onProgress?.({ status: 'initiate', task: 'decode', message: `decoding ${files.length} images at ${height}×${width}`, total: files.length, unit: 'images' });
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) {
      if (opts.signal?.aborted) throw new InterruptedError();
      try {
        const { rgb } = await readImage(files[i], { size: [height, width], resize: opts.resize });
        if (i < inMemory) memory[i] = rgb;
        else await spill!.write(rgb, 0, bytesPerImage, (i - inMemory) * bytesPerImage);
        ok[i] = 1;
      } catch (err) {
        if (!(err instanceof ImageReadError)) throw err;
        skipped.push({ path: err.path, reason: err.reason });
      }
      onProgress?.({ status: 'progress', task: 'decode', current: ++done, total: files.length, unit: 'images' });
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? IMAGE_CACHE_DEFAULTS.concurrency) }, worker));
  } catch (err) {
    await cleanup();
    throw err;
  }
  onProgress?.({ status: 'done', task: 'decode', message: `${files.length - skipped.length} images decoded (${inMemory < files.length ? `${files.length - inMemory} on disk` : 'all in memory'})` });

  let disposed = false;
  return {
    count: files.length,
    size: [height, width],
    bytesPerImage,
    ok,
    skipped,
    inMemory,
    memoryBytes: memory.reduce((n, a) => n + (a?.byteLength ?? 0), 0),
    spillFile: spillDir && path.join(spillDir, 'pixels.u8'),
    async get(i) {
      if (disposed) throw new FinetuneError('the image cache was disposed');
      if (!Number.isInteger(i) || i < 0 || i >= files.length) throw new FinetuneError(`image cache: no image ${i} (it holds ${files.length})`);
      if (!ok[i]) throw new FinetuneError(`${files[i]}: not in the image cache (it could not be read)`);
      if (i < inMemory) return memory[i]!.slice();
      const out = new Uint8Array(bytesPerImage);
      await spill!.read(out, 0, bytesPerImage, (i - inMemory) * bytesPerImage);
      return out;
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      memory.length = 0;
      await cleanup();
    },
  };
}
