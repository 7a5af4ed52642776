/**
 * Byte layout of the feature cache's pack and index files.
 *
 * A pack is a 32-byte header followed by fixed-size records (the namespace fixes the vector
 * length and the pack fixes the precision), so record k lives at a computable offset: a torn
 * tail is just `size` not reaching the end of a record, and one bad record never hides the
 * records after it.
 *
 *   pack header  0 magic 'FCPK' | 4 version u16 | 6 dtype u16 | 8 dim u32 | 12 recordSize u32
 *                16..27 zero   | 28 crc32 of bytes 0..27
 *   record       0 magic 'FCR1' | 4 crc32(specId ‖ bytes 8..end) | 8 key: sha256, 32 bytes
 *                40 scaleExp i32 | 44 zero u32 | 48 payload (dim × 2 or 4 bytes), zero-padded
 *                to a multiple of 8 so typed-array views over a whole read stay aligned
 *
 * The record checksum covers the key and the spec id, so a record moved, misindexed or
 * copied into another namespace fails it just as a flipped payload byte does.
 *
 * An index file `<pack>.idx` lists the keys of a pack's records, 40 bytes each:
 * key (32) | record number u32 | crc32 of the first 36 bytes. It saves reading the headers
 * of a pack that is gigabytes long; it is trusted only where its checksum holds and the
 * record is complete, and every read checks the record itself anyway.
 */
import zlib from 'node:zlib';

export const PACK_MAGIC = 0x4b504346; // 'FCPK' little-endian
export const RECORD_MAGIC = 0x31524346; // 'FCR1'
export const PACK_VERSION = 1;
export const PACK_HEADER_SIZE = 32;
export const RECORD_HEADER_SIZE = 48;
export const INDEX_ENTRY_SIZE = 40;
export const KEY_SIZE = 32;

export type Precision = 'float16' | 'float32';
const DTYPE_CODE: Record<Precision, number> = { float16: 1, float32: 2 };

export function bytesPerValue(precision: Precision): number {
  return precision === 'float16' ? 2 : 4;
}

export function recordSize(dim: number, precision: Precision): number {
  return RECORD_HEADER_SIZE + Math.ceil((dim * bytesPerValue(precision)) / 8) * 8;
}

export const crc32: (data: Uint8Array, value?: number) => number = zlib.crc32;

export interface PackHeader {
  precision: Precision;
  dim: number;
  recordSize: number;
}

export function encodePackHeader(dim: number, precision: Precision): Buffer {
  const buf = Buffer.alloc(PACK_HEADER_SIZE);
  buf.writeUInt32LE(PACK_MAGIC, 0);
  buf.writeUInt16LE(PACK_VERSION, 4);
  buf.writeUInt16LE(DTYPE_CODE[precision], 6);
  buf.writeUInt32LE(dim, 8);
  buf.writeUInt32LE(recordSize(dim, precision), 12);
  buf.writeUInt32LE(crc32(buf.subarray(0, 28)), 28);
  return buf;
}

/** undefined when the bytes are not a pack header this version can read. */
export function decodePackHeader(buf: Buffer): PackHeader | undefined {
  if (buf.length < PACK_HEADER_SIZE) return undefined;
  if (buf.readUInt32LE(0) !== PACK_MAGIC || buf.readUInt16LE(4) !== PACK_VERSION) return undefined;
  if (buf.readUInt32LE(28) !== crc32(buf.subarray(0, 28))) return undefined;
  const code = buf.readUInt16LE(6);
  const precision = code === 1 ? 'float16' : code === 2 ? 'float32' : undefined;
  if (!precision) return undefined;
  const dim = buf.readUInt32LE(8);
  const size = buf.readUInt32LE(12);
  if (dim === 0 || size !== recordSize(dim, precision)) return undefined;
  return { precision, dim, recordSize: size };
}

/** Keys are sha256 hex digests; stored as their 32 bytes. */
export function keyBytes(hash: string): Buffer {
  if (!/^[0-9a-fA-F]{64}$/.test(hash)) {
    throw new TypeError(`feature cache key must be a sha256 hex digest (64 hex digits), got ${JSON.stringify(hash)}`);
  }
  return Buffer.from(hash, 'hex');
}

export function recordChecksum(specSeed: number, record: Uint8Array): number {
  return crc32(record.subarray(8), specSeed);
}

export function encodeIndexEntry(target: Buffer, offset: number, key: Uint8Array, recordNumber: number): void {
  target.set(key, offset);
  target.writeUInt32LE(recordNumber, offset + KEY_SIZE);
  target.writeUInt32LE(crc32(target.subarray(offset, offset + 36)), offset + 36);
}
