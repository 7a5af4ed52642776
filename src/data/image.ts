import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import type { CropBox } from './augment.ts';

/**
 * The one place sharp decodes images. EXIF orientation is applied before resizing, alpha is
 * dropped (flattened on white, as a viewer shows it), grey and CMYK become sRGB.
 */
export type ResizeMode = 'squash' | 'crop';

/** Refuse decompression bombs by their declared size, before any pixel is decoded. */
export const MAX_INPUT_PIXELS = 100_000_000;

export interface DecodedImage {
  /** RGB bytes, HWC, length height*width*3. */
  rgb: Uint8Array;
  width: number;
  height: number;
}

export interface ReadOptions {
  size: readonly [number, number];
  resize?: ResizeMode;
  /** Mirror left-right after resizing (augmentation, test-time augmentation). */
  flip?: boolean;
  /** Take this region of the oriented image before resizing (random-crop augmentation). */
  crop?: CropBox;
  /** A lower limit than MAX_INPUT_PIXELS (a server bounds the memory one request may take). */
  maxPixels?: number;
}

/** Why a file could not be used, as one short phrase for the skipped list. */
export class ImageReadError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'ImageReadError';
  }
}

export interface LoadedFile {
  bytes: Buffer;
  /** sha256 of the file's bytes: the feature cache's image key. */
  hash: string;
}

export async function loadFile(path: string): Promise<LoadedFile> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImageReadError(path, code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory' : `cannot read (${code ?? err})`);
  }
  return { bytes, hash: createHash('sha256').update(bytes).digest('hex') };
}

export async function decodeImage(path: string, bytes: Buffer, opts: ReadOptions): Promise<DecodedImage> {
  if (bytes.byteLength === 0) throw new ImageReadError(path, 'empty file');
  const [height, width] = opts.size;
  const limit = Math.min(opts.maxPixels ?? MAX_INPUT_PIXELS, MAX_INPUT_PIXELS);
  try {
    let pipeline = sharp(bytes, { limitInputPixels: limit, failOn: 'error', animated: false }).rotate();
    if (opts.crop) pipeline = pipeline.extract(await cropRegion(bytes, opts.crop));
    pipeline = pipeline
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .resize(width, height, { fit: opts.resize === 'crop' ? 'cover' : 'fill', position: 'centre' });
    if (opts.flip) pipeline = pipeline.flop();
    const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    const rgb = info.channels === 3 ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : toRgb(data, info.channels);
    return { rgb, width: info.width, height: info.height };
  } catch (err) {
    throw new ImageReadError(path, await describeSharpError(err, bytes, limit));
  }
}

/** Pixels of a fractional crop box in the EXIF-oriented image (orientations 5–8 swap the sides). */
async function cropRegion(bytes: Buffer, box: CropBox): Promise<{ left: number; top: number; width: number; height: number }> {
  const meta = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
  const swap = (meta.orientation ?? 1) >= 5;
  const fullWidth = (swap ? meta.height : meta.width) ?? 1;
  const fullHeight = (swap ? meta.width : meta.height) ?? 1;
  const width = Math.max(1, Math.round(box.width * fullWidth));
  const height = Math.max(1, Math.round(box.height * fullHeight));
  return {
    left: Math.min(fullWidth - width, Math.round(box.left * fullWidth)),
    top: Math.min(fullHeight - height, Math.round(box.top * fullHeight)),
    width,
    height,
  };
}

export async function readImage(path: string, opts: ReadOptions): Promise<DecodedImage & LoadedFile> {
  const file = await loadFile(path);
  return { ...file, ...(await decodeImage(path, file.bytes, opts)) };
}

function toRgb(data: Buffer, channels: number): Uint8Array {
  const pixels = data.byteLength / channels;
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const g = data[i * channels];
    out[i * 3] = g;
    out[i * 3 + 1] = channels >= 3 ? data[i * channels + 1] : g;
    out[i * 3 + 2] = channels >= 3 ? data[i * channels + 2] : g;
  }
  return out;
}

/**
 * libvips keeps one error buffer for all its threads, so while several images decode at once
 * a decode error's text may be empty or belong to another file. Only sharp's own checks (format
 * sniffing, the pixel limit) give text that can be trusted; any other failure is named from the
 * file's header, which is read alone.
 */
async function describeSharpError(err: unknown, bytes: Buffer, limit: number): Promise<string> {
  const message = err instanceof Error ? err.message : String(err);
  if (/pixel limit/i.test(message)) return `image too large (over ${limit / 1e6} megapixels)`;
  if (/unsupported image format/i.test(message)) return 'not an image sharp can decode';
  const format = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS })
    .metadata()
    .then((m) => m.format, () => undefined);
  return format ? `corrupt or truncated image (${format})` : 'not an image sharp can decode';
}

/** A small JPEG as a data: URI for the HTML report. */
export async function thumbnailDataUri(path: string, size = 128): Promise<string> {
  const jpeg = await sharp(path, { limitInputPixels: MAX_INPUT_PIXELS, animated: false })
    .rotate()
    .flatten({ background: '#ffffff' })
    .resize(size, size, { fit: 'inside' })
    .jpeg({ quality: 70 })
    .toBuffer();
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}
