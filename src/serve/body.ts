import type { IncomingMessage } from 'node:http';
import { formatBytes } from '../fs/sizes.ts';
import { Busboy } from '@fastify/busboy';

/** An answer other than 200, with the reason for the client. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The client went away before its request was complete: nobody to answer. */
export class ClientGoneError extends Error {
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientGoneError';
  }
}

export interface Upload {
  /** The part's file name for multipart uploads, `image` for a raw body. */
  name: string;
  bytes: Buffer;
}

export interface BodyLimits {
  maxBody: number;
  maxFiles: number;
}


/**
 * The images of a POST body: the body itself (`Content-Type: image/*` or
 * `application/octet-stream`) or each file part of `multipart/form-data`, in order. A body
 * over `maxBody` is refused by its Content-Length before any of it is read, or as soon as
 * the count passes the limit; the caller then closes the connection instead of reading on.
 */
export async function readUploads(req: IncomingMessage, limits: BodyLimits): Promise<Upload[]> {
  const tooLarge = () => new HttpError(413, `request body over the limit of ${formatBytes(limits.maxBody)} (--max-body)`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBody) throw tooLarge();
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  if (type.startsWith('multipart/form-data')) return readMultipart(req, limits, tooLarge);
  if (type.startsWith('image/') || type.startsWith('application/octet-stream')) {
    const bytes = await readRaw(req, limits.maxBody, tooLarge);
    if (bytes.byteLength === 0) throw new HttpError(400, 'empty body: send the image bytes');
    return [{ name: 'image', bytes }];
  }
  throw new HttpError(415, `Content-Type ${type || '(none)'}: send image bytes with Content-Type image/* (or application/octet-stream), or multipart/form-data with one file part per image`);
}

function readRaw(req: IncomingMessage, maxBody: number, tooLarge: () => HttpError): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > maxBody) {
        cleanup();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onGone = () => {
      cleanup();
      reject(new ClientGoneError());
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onGone);
      req.off('error', onGone);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onGone);
    req.on('error', onGone);
  });
}

function readMultipart(req: IncomingMessage, limits: BodyLimits, tooLarge: () => HttpError): Promise<Upload[]> {
  return new Promise((resolve, reject) => {
    let parser: ReturnType<typeof Busboy>;
    try {
      parser = Busboy({ headers: req.headers as { 'content-type': string }, limits: { fileSize: limits.maxBody, files: limits.maxFiles, fields: 32, parts: limits.maxFiles + 32 } });
    } catch (err) {
      reject(new HttpError(400, `multipart body: ${(err as Error).message}`));
      return;
    }
    const files: Promise<Upload>[] = [];
    let size = 0;
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      req.unpipe(parser);
      req.off('data', count);
      reject(err);
    };
    const count = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > limits.maxBody) fail(tooLarge());
    };
    parser.on('file', (_field, stream, filename) => {
      const chunks: Buffer[] = [];
      const index = files.length;
      // Settles only on success: a failing part fails the whole request at once instead.
      files.push(
        new Promise<Upload>((done) => {
          stream.on('data', (chunk: Buffer) => chunks.push(chunk));
          stream.on('limit', () => fail(tooLarge()));
          stream.on('end', () => done({ name: filename || `file ${index + 1}`, bytes: Buffer.concat(chunks) }));
          stream.on('error', (err: Error) => fail(new HttpError(400, `malformed multipart body: ${err.message}`)));
        }),
      );
    });
    parser.on('filesLimit', () => fail(new HttpError(413, `more than ${limits.maxFiles} files in one request (--max-files)`)));
    parser.on('error', (err: unknown) => fail(new HttpError(400, `malformed multipart body: ${(err as Error).message ?? err}`)));
    parser.on('finish', () => {
      if (failed) return;
      void Promise.all(files).then((uploads) => {
        if (failed) return;
        if (uploads.length === 0) fail(new HttpError(400, 'multipart body without a file part: send each image as a file'));
        else resolve(uploads);
      });
    });
    req.on('data', count);
    req.on('aborted', () => fail(new ClientGoneError()));
    req.on('error', () => fail(new ClientGoneError()));
    req.pipe(parser);
  });
}
