/**
 * One feature spec's slice of the cache: the packs in `<dir>/<specId>/`, an in-memory index
 * from content hash to record, and this process's own pack for appends.
 *
 * Concurrency: every writer (one namespace object in one process) appends only to a pack it
 * created itself with O_EXCL, named by time, pid and random bytes; it never appends to a pack
 * someone else made, not even one left by a dead process. So writers need no locks and never
 * interleave bytes, a torn tail left by a SIGKILL stays a harmless partial record at the end
 * of a pack nobody extends, and readers just take every complete record of every pack. The
 * price is one pack per writing run; packs are read with a handful of large reads, so many
 * packs stay cheap.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { FinetuneError } from '../errors.ts';
import { writeFileAtomic } from '../fs/atomic.ts';
import { reasonOf } from '../fs/reasons.ts';
import { decodeFloat16, encodeFloat16, float16ScaleExp } from './cache-float16.ts';
import {
  INDEX_ENTRY_SIZE,
  KEY_SIZE,
  PACK_HEADER_SIZE,
  RECORD_HEADER_SIZE,
  RECORD_MAGIC,
  crc32,
  decodePackHeader,
  encodeIndexEntry,
  encodePackHeader,
  keyBytes,
  recordChecksum,
  type PackHeader,
  type Precision,
} from './cache-format.ts';

export interface NamespaceStats {
  hits: number;
  misses: number;
  corrupt: number;
}

export interface FeatureNamespace {
  readonly id: string;
  readonly dim: number;
  has(contentHash: string): boolean;
  /** The stored vector (a fresh Float32Array of length dim), or undefined; corrupt entries are misses. */
  get(contentHash: string): Promise<Float32Array | undefined>;
  getMany(contentHashes: string[]): Promise<(Float32Array | undefined)[]>;
  /** Appends; the entries are on disk (fdatasync'd) when it resolves. Known hashes are skipped. */
  put(entries: { hash: string; features: Float32Array }[]): Promise<void>;
  readonly stats: NamespaceStats;
}

interface Pack {
  file: string;
  handle: FileHandle;
  header: PackHeader;
}

interface Location {
  pack: Pack;
  record: number;
}

/** A read covers several records when they are this close, and never more than READ_LIMIT. */
const READ_GAP = 256 * 1024;
const READ_LIMIT = 16 * 1024 * 1024;
/** Below this record size a header scan reads records whole, in READ_LIMIT chunks. */
const SCAN_WHOLE_RECORDS = 64 * 1024;

/** `err` is a file-system error, or the reason already in words. */
export function cacheWriteError(target: string, err: unknown, verb = 'write'): FinetuneError {
  const reason = typeof err === 'string' ? err : reasonOf(err);
  return new FinetuneError(
    `cannot ${verb} the feature cache at ${target}: ${reason}; choose a ${verb === 'read' ? 'readable' : 'writable'} folder with --cache-dir, or run with --no-cache`,
    undefined,
    { cause: err },
  );
}

function recordOffset(pack: Pack, record: number): number {
  return PACK_HEADER_SIZE + record * pack.header.recordSize;
}

/** Typed-array views need aligned offsets; unpooled buffers start at byte 0 of their memory. */
function alignedBuffer(size: number): Buffer {
  return Buffer.allocUnsafeSlow(size);
}

async function readFully(handle: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function writeFully(handle: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await handle.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/** Makes a new file's name durable, not just its bytes. Not every platform can sync a folder. */
async function syncFolder(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    await handle.sync().finally(() => handle.close());
  } catch {
    // Best effort: the data itself is synced on every put.
  }
}

export class PackedNamespace implements FeatureNamespace {
  readonly stats: NamespaceStats = { hits: 0, misses: 0, corrupt: 0 };
  private readonly index = new Map<string, Location>();
  /** Older copies of a key (two runs computed the same image): fallbacks if the newest is corrupt. */
  private readonly older = new Map<string, Location[]>();
  private readonly packs: Pack[] = [];
  private writer: { pack: Pack; indexHandle: FileHandle; records: number } | undefined;
  private writeQueue: Promise<void> = Promise.resolve();
  private readonly specSeed: number;
  private closed = false;

  private constructor(
    readonly id: string,
    readonly dim: number,
    private readonly dir: string,
    private readonly specJson: string,
    private readonly precision: Precision,
  ) {
    this.specSeed = crc32(Buffer.from(id, 'utf8'));
  }

  /** `specJson` is written beside the packs on the first put (for `info()`). */
  static async load(id: string, dim: number, dir: string, specJson: string, precision: Precision): Promise<PackedNamespace> {
    const ns = new PackedNamespace(id, dim, dir, specJson, precision);
    await ns.loadPacks();
    return ns;
  }

  get entries(): number {
    return this.index.size;
  }

  has(contentHash: string): boolean {
    return this.index.has(contentHash.toLowerCase());
  }

  async get(contentHash: string): Promise<Float32Array | undefined> {
    return (await this.getMany([contentHash]))[0];
  }

  async getMany(contentHashes: string[]): Promise<(Float32Array | undefined)[]> {
    this.assertOpen();
    const results: (Float32Array | undefined)[] = new Array(contentHashes.length).fill(undefined);
    let pending = contentHashes.map((hash, slot) => ({ slot, key: hash.toLowerCase() }));
    // Each round reads the current location of every pending key; a corrupt record is dropped
    // and, if an older copy exists, that copy is tried in the next round.
    while (pending.length > 0) {
      const wanted = pending.flatMap(({ slot, key }) => {
        const at = this.index.get(key);
        return at ? [{ slot, key, at }] : [];
      });
      if (wanted.length === 0) break;
      const vectors = await this.readRecords(wanted);
      const retry: typeof pending = [];
      wanted.forEach((w, i) => {
        if (vectors[i]) {
          results[w.slot] = vectors[i];
          return;
        }
        this.stats.corrupt++;
        this.index.delete(w.key);
        const fallback = this.older.get(w.key)?.pop();
        if (fallback) {
          this.index.set(w.key, fallback);
          retry.push({ slot: w.slot, key: w.key });
        }
      });
      pending = retry;
    }
    for (const r of results) {
      if (r) this.stats.hits++;
      else this.stats.misses++;
    }
    return results;
  }

  async put(entries: { hash: string; features: Float32Array }[]): Promise<void> {
    this.assertOpen();
    const fresh = new Map<string, Float32Array>();
    for (const { hash, features } of entries) {
      keyBytes(hash); // validates the key before anything is written
      if (features.length !== this.dim) {
        throw new RangeError(`feature vector for ${hash} has ${features.length} values, this cache namespace holds ${this.dim}`);
      }
      const key = hash.toLowerCase();
      // Copied: the write may wait behind earlier puts, and callers reuse batch buffers.
      if (!this.index.has(key)) fresh.set(key, features.slice());
    }
    // Serialised so that record numbers and file offsets are assigned in one order.
    const run = this.writeQueue.then(() => this.append(fresh));
    this.writeQueue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writeQueue;
    await this.releaseFiles();
  }

  /** Forgets everything (the files were deleted by `clear()`); later puts start a new pack. */
  async reset(): Promise<void> {
    await this.writeQueue;
    await this.releaseFiles();
  }

  private async releaseFiles(): Promise<void> {
    const handles = this.packs.map((p) => p.handle);
    if (this.writer) handles.push(this.writer.indexHandle);
    this.packs.length = 0;
    this.writer = undefined;
    this.index.clear();
    this.older.clear();
    await Promise.allSettled(handles.map((h) => h.close()));
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`feature cache namespace ${this.id} is closed`);
  }

  private addLocation(key: string, at: Location): void {
    const previous = this.index.get(key);
    if (previous) {
      const list = this.older.get(key) ?? [];
      list.push(previous);
      this.older.set(key, list);
    }
    this.index.set(key, at);
  }

  private async loadPacks(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.pack'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw cacheWriteError(this.dir, err, 'read');
    }
    const found: { file: string; size: number; mtime: number }[] = [];
    for (const name of names) {
      const file = path.join(this.dir, name);
      try {
        const s = await stat(file);
        if (s.isFile()) found.push({ file, size: s.size, mtime: s.mtimeMs });
      } catch {
        // Deleted between readdir and stat: nothing to load.
      }
    }
    // Oldest first, so that when a key occurs twice the newest copy is the one served.
    found.sort((a, b) => a.mtime - b.mtime || a.file.localeCompare(b.file));
    for (const f of found) await this.loadPack(f.file, f.size);
  }

  private async loadPack(file: string, size: number): Promise<void> {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch {
      return;
    }
    let pack: Pack | undefined;
    try {
      const headerBytes = alignedBuffer(PACK_HEADER_SIZE);
      const header = (await readFully(handle, headerBytes, 0)) === PACK_HEADER_SIZE ? decodePackHeader(headerBytes) : undefined;
      // A pack for another vector length (the spec's dim changed) holds nothing this view can serve.
      if (header && header.dim === this.dim) {
        pack = { file, handle, header };
        this.packs.push(pack);
        await this.indexPack(pack, size);
      }
    } catch {
      // An unreadable pack (I/O error) is a pack of misses; what was indexed before the error stays.
    }
    if (!pack) await handle.close().catch(() => undefined);
  }

  private async indexPack(pack: Pack, size: number): Promise<void> {
    const complete = Math.max(0, Math.floor((size - PACK_HEADER_SIZE) / pack.header.recordSize));
    if (complete === 0) return;
    const covered = new Uint8Array(complete);
    await this.loadIndexFile(pack, complete, covered);
    // Records the index file does not vouch for (missing, torn or stale index): read their headers.
    let start = 0;
    while (start < complete) {
      if (covered[start]) {
        start++;
        continue;
      }
      let end = start;
      while (end < complete && !covered[end]) end++;
      await this.scanHeaders(pack, start, end);
      start = end;
    }
  }

  private async loadIndexFile(pack: Pack, complete: number, covered: Uint8Array): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await readFile(pack.file.replace(/\.pack$/, '.idx'));
    } catch {
      return;
    }
    for (let off = 0; off + INDEX_ENTRY_SIZE <= bytes.length; off += INDEX_ENTRY_SIZE) {
      if (bytes.readUInt32LE(off + 36) !== crc32(bytes.subarray(off, off + 36))) continue;
      const record = bytes.readUInt32LE(off + KEY_SIZE);
      if (record >= complete || covered[record]) continue;
      covered[record] = 1;
      this.addLocation(bytes.toString('hex', off, off + KEY_SIZE), { pack, record });
    }
  }

  private async scanHeaders(pack: Pack, start: number, end: number): Promise<void> {
    const size = pack.header.recordSize;
    const take = (buf: Buffer, at: number, record: number) => {
      if (buf.readUInt32LE(at) !== RECORD_MAGIC) return;
      this.addLocation(buf.toString('hex', at + 8, at + 8 + KEY_SIZE), { pack, record });
    };
    if (size <= SCAN_WHOLE_RECORDS) {
      const perRead = Math.max(1, Math.floor(READ_LIMIT / size));
      for (let first = start; first < end; first += perRead) {
        const count = Math.min(perRead, end - first);
        const buf = alignedBuffer(count * size);
        const got = Math.floor((await readFully(pack.handle, buf, recordOffset(pack, first))) / size);
        for (let i = 0; i < got; i++) take(buf, i * size, first + i);
      }
    } else {
      const buf = alignedBuffer(8 + KEY_SIZE);
      for (let record = start; record < end; record++) {
        if ((await readFully(pack.handle, buf, recordOffset(pack, record))) === buf.length) take(buf, 0, record);
      }
    }
  }

  /**
   * Reads the records at `wanted` with as few reads as possible: sorted per pack, neighbours
   * merged into one read. Returns undefined for any record that fails its checks.
   */
  private async readRecords(wanted: { key: string; at: Location }[]): Promise<(Float32Array | undefined)[]> {
    const out: (Float32Array | undefined)[] = new Array(wanted.length).fill(undefined);
    const byPack = new Map<Pack, number[]>();
    wanted.forEach((w, i) => {
      const list = byPack.get(w.at.pack) ?? [];
      list.push(i);
      byPack.set(w.at.pack, list);
    });
    for (const [pack, items] of byPack) {
      const size = pack.header.recordSize;
      items.sort((a, b) => wanted[a].at.record - wanted[b].at.record);
      let i = 0;
      while (i < items.length) {
        const first = wanted[items[i]].at.record;
        let j = i + 1;
        while (j < items.length) {
          const rec = wanted[items[j]].at.record;
          const gap = (rec - wanted[items[j - 1]].at.record - 1) * size;
          if (gap > READ_GAP || (rec + 1 - first) * size > READ_LIMIT) break;
          j++;
        }
        const last = wanted[items[j - 1]].at.record;
        const buf = alignedBuffer((last + 1 - first) * size);
        let got = 0;
        try {
          got = await readFully(pack.handle, buf, recordOffset(pack, first));
        } catch {
          // An unreadable range reads as corrupt records: recomputed, never served.
        }
        for (let k = i; k < j; k++) {
          const w = wanted[items[k]];
          const at = (w.at.record - first) * size;
          if (at + size <= got) out[items[k]] = this.decodeRecord(buf, at, size, pack.header, w.key);
        }
        i = j;
      }
    }
    return out;
  }

  private decodeRecord(buf: Buffer, at: number, size: number, header: PackHeader, key: string): Float32Array | undefined {
    if (buf.readUInt32LE(at) !== RECORD_MAGIC) return undefined;
    if (buf.toString('hex', at + 8, at + 8 + KEY_SIZE) !== key) return undefined;
    if (buf.readUInt32LE(at + 4) !== recordChecksum(this.specSeed, buf.subarray(at, at + size))) return undefined;
    const scaleExp = buf.readInt32LE(at + 40);
    const payload = buf.byteOffset + at + RECORD_HEADER_SIZE;
    const vector = new Float32Array(this.dim);
    if (header.precision === 'float16') {
      decodeFloat16(new Uint16Array(buf.buffer, payload, this.dim), vector, scaleExp);
    } else {
      vector.set(new Float32Array(buf.buffer, payload, this.dim));
    }
    return vector;
  }

  private async append(fresh: Map<string, Float32Array>): Promise<void> {
    // A key may have been stored by an earlier put that was queued when this one was called.
    for (const key of fresh.keys()) if (this.index.has(key)) fresh.delete(key);
    if (fresh.size === 0) return;
    const writer = await this.openWriter();
    const size = writer.pack.header.recordSize;
    const records = alignedBuffer(fresh.size * size).fill(0);
    const indexEntries = Buffer.alloc(fresh.size * INDEX_ENTRY_SIZE);
    let n = 0;
    for (const [key, features] of fresh) {
      const at = n * size;
      const kb = keyBytes(key);
      records.writeUInt32LE(RECORD_MAGIC, at);
      records.set(kb, at + 8);
      const payload = records.byteOffset + at + RECORD_HEADER_SIZE;
      if (this.precision === 'float16') {
        const scaleExp = float16ScaleExp(features);
        records.writeInt32LE(scaleExp, at + 40);
        encodeFloat16(features, new Uint16Array(records.buffer, payload, this.dim), scaleExp);
      } else {
        new Float32Array(records.buffer, payload, this.dim).set(features);
      }
      records.writeUInt32LE(recordChecksum(this.specSeed, records.subarray(at, at + size)), at + 4);
      encodeIndexEntry(indexEntries, n * INDEX_ENTRY_SIZE, kb, writer.records + n);
      n++;
    }
    try {
      await writeFully(writer.pack.handle, records, recordOffset(writer.pack, writer.records));
      await writer.pack.handle.datasync();
    } catch (err) {
      throw cacheWriteError(writer.pack.file, err);
    }
    try {
      // Not synced: a lost or torn index entry only means that record's header gets scanned.
      await writeFully(writer.indexHandle, indexEntries, writer.records * INDEX_ENTRY_SIZE);
    } catch {
      // Same: the pack is the truth.
    }
    n = 0;
    for (const key of fresh.keys()) this.addLocation(key, { pack: writer.pack, record: writer.records + n++ });
    writer.records += n;
  }

  private async openWriter(): Promise<NonNullable<PackedNamespace['writer']>> {
    if (this.writer) return this.writer;
    const name = `${Date.now().toString(36)}-${process.pid}-${randomBytes(4).toString('hex')}`;
    const file = path.join(this.dir, `${name}.pack`);
    let handle: FileHandle | undefined;
    try {
      await mkdir(this.dir, { recursive: true });
      await this.writeSpecJson();
      handle = await open(file, 'wx+');
      const headerBytes = encodePackHeader(this.dim, this.precision);
      await writeFully(handle, headerBytes, 0);
      const indexHandle = await open(path.join(this.dir, `${name}.idx`), 'wx');
      await syncFolder(this.dir);
      const pack: Pack = { file, handle, header: decodePackHeader(headerBytes)! };
      this.packs.push(pack);
      this.writer = { pack, indexHandle, records: 0 };
      return this.writer;
    } catch (err) {
      await handle?.close().catch(() => undefined);
      throw cacheWriteError(this.dir, err);
    }
  }

  /** Atomic (temp + rename), so a reader never sees half a spec.json. */
  private async writeSpecJson(): Promise<void> {
    const target = path.join(this.dir, 'spec.json');
    try {
      if ((await readFile(target, 'utf8')) === this.specJson) return;
    } catch {
      // Missing or unreadable: write it.
    }
    await writeFileAtomic(target, this.specJson);
  }
}
