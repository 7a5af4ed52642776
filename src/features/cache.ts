/**
 * The content-addressed on-disk feature cache: one float vector per (feature spec, image
 * content hash), so re-training a head or adding images never re-runs the backbone on an
 * image it has already seen.
 *
 *   <dir>/CACHEDIR.TAG              tells backup tools to skip the folder
 *   <dir>/<specId>/spec.json        the spec and vector length, for `info()`
 *   <dir>/<specId>/<run>.pack       append-only records (layout in cache-format.ts)
 *   <dir>/<specId>/<run>.idx        keys of that pack's records (an optimisation; packs are the truth)
 *
 * Vectors are stored as float16 by default (half the disk, relative error ≤ 5e-4 thanks to a
 * per-vector power-of-two scale); `precision: 'float32'` stores them exactly.
 */
import { createHash } from 'node:crypto';
import { access, constants, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Precision } from './cache-format.ts';
import { PackedNamespace, cacheWriteError, type FeatureNamespace } from './cache-namespace.ts';
import { reasonOf } from '../fs/reasons.ts';

export type { FeatureNamespace, NamespaceStats } from './cache-namespace.ts';
export type { Precision } from './cache-format.ts';

export interface FeatureSpec {
  backbone: string;
  weightsChecksum: string;
  layer: string;
  pooling: string;
  preprocess: string;
  inputSize: [number, number];
  resize: string;
  /** 'none' or an augmentation variant id like 'flip'. */
  augment: string;
}

export interface CacheInfo {
  dir: string;
  entries: number;
  bytes: number;
  specs: { id: string; spec: FeatureSpec; entries: number; bytes: number }[];
}

export interface FeatureCacheOptions {
  /** How new vectors are written; both are always readable. Default 'float16'. */
  precision?: Precision;
}

/**
 * How a cache folder is opened. write: created if missing, and one that cannot be written is
 * an error. read: nothing is written, not even the folder (a missing one is an empty cache).
 * auto: write where possible, else read what is there (`writable` false, `readOnlyReason` says why).
 */
export type CacheAccess = 'write' | 'read' | 'auto';

/** The first line of CACHEDIR.TAG's comment: how a folder is known to be a finetune cache. */
const TAG_COMMENT = '# This folder is a finetune feature cache; it can be deleted and rebuilt.';

/** What a folder given as the cache holds: nothing yet, a finetune cache, or someone else's files. */
export async function cacheFolderKind(dir: string): Promise<'missing' | 'empty' | 'cache' | 'other'> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw cacheWriteError(dir, err, 'read');
  }
  if (names.length === 0) return 'empty';
  const tag = await readFile(path.join(dir, 'CACHEDIR.TAG'), 'utf8').catch(() => '');
  if (tag.includes(TAG_COMMENT)) return 'cache';
  return names.every((n) => SPEC_DIR.test(n) || /\.(tmp|lock)$/.test(n)) ? 'cache' : 'other';
}

/** Only these fields name a spec: extra properties on the object must not change the id. */
const SPEC_FIELDS = {
  backbone: 'string',
  weightsChecksum: 'string',
  layer: 'string',
  pooling: 'string',
  preprocess: 'string',
  inputSize: 'size',
  resize: 'string',
  augment: 'string',
} as const satisfies Record<keyof FeatureSpec, 'string' | 'size'>;

/** Bumped when the meaning of a stored vector changes, so old entries stop matching. */
const KEY_VERSION = 'finetune-feature-cache/1';
const SPEC_DIR = /^[0-9a-f]{16}$/;
const SPEC_FILE = 'spec.json';

function canonicalSpec(spec: FeatureSpec): FeatureSpec {
  const out: Record<string, unknown> = {};
  for (const field of Object.keys(SPEC_FIELDS).sort() as (keyof FeatureSpec)[]) {
    const value = spec[field];
    const ok =
      SPEC_FIELDS[field] === 'string'
        ? typeof value === 'string'
        : Array.isArray(value) && value.length === 2 && value.every((v) => Number.isInteger(v) && v > 0);
    if (!ok) throw new TypeError(`feature spec field ${field} is ${JSON.stringify(value)}: expected ${SPEC_FIELDS[field] === 'string' ? 'a string' : '[height, width]'}`);
    out[field] = Array.isArray(value) ? [value[0], value[1]] : value;
  }
  return out as unknown as FeatureSpec;
}

/** 16 hex digits of sha256 over the spec's fields in sorted order: stable across key order and runs. */
export function specId(spec: FeatureSpec): string {
  const text = `${KEY_VERSION}\n${JSON.stringify(canonicalSpec(spec))}`;
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

interface SpecFile {
  id: string;
  dim: number;
  spec: FeatureSpec;
}

async function readSpecFile(file: string): Promise<SpecFile | undefined> {
  try {
    const json = JSON.parse(await readFile(file, 'utf8')) as Partial<SpecFile>;
    if (typeof json.id !== 'string' || !Number.isInteger(json.dim) || !json.spec) return undefined;
    return { id: json.id, dim: json.dim!, spec: canonicalSpec(json.spec) };
  } catch {
    return undefined;
  }
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    total += await stat(path.join(dir, entry.name)).then((s) => s.size, () => 0);
  }
  return total;
}

export class FeatureCache {
  private readonly namespaces = new Map<string, Promise<PackedNamespace>>();
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly precision: Precision,
    /** Why nothing can be written here (a read-only cache), or undefined when it can be. */
    readonly readOnlyReason?: string,
  ) {}

  get writable(): boolean {
    return this.readOnlyReason === undefined;
  }

  /**
   * Opens the cache at `dir` (see CacheAccess). With the default 'write', a folder that cannot
   * be created or written is a FinetuneError.
   */
  static async open(dir: string, options: FeatureCacheOptions & { access?: CacheAccess } = {}): Promise<FeatureCache> {
    const { precision = 'float16', access: mode = 'write' } = options;
    const resolved = path.resolve(dir);
    if (mode === 'read') return new FeatureCache(resolved, precision, 'opened for reading only');
    try {
      await mkdir(resolved, { recursive: true });
      const tag = path.join(resolved, 'CACHEDIR.TAG');
      await writeFile(tag, `Signature: 8a477f597d28d172789f06886806bc55\n${TAG_COMMENT}\n`, { flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      await access(resolved, constants.W_OK);
    } catch (err) {
      if (mode === 'auto') return new FeatureCache(resolved, precision, reasonOf(err));
      throw cacheWriteError(resolved, err);
    }
    return new FeatureCache(resolved, precision);
  }

  /**
   * The view of one spec's vectors, each `dim` floats long. One object per (spec, dim) per
   * cache; it sees what was on disk when first opened plus its own puts.
   */
  async namespace(spec: FeatureSpec, dim: number, options: FeatureCacheOptions = {}): Promise<FeatureNamespace> {
    this.assertOpen();
    if (!Number.isInteger(dim) || dim <= 0) throw new RangeError(`feature vector length must be a positive integer, got ${dim}`);
    const id = specId(spec);
    const mapKey = `${id}/${dim}`;
    let ns = this.namespaces.get(mapKey);
    if (!ns) {
      const specJson = `${JSON.stringify({ id, dim, spec: canonicalSpec(spec) } satisfies SpecFile, null, 2)}\n`;
      ns = PackedNamespace.load(id, dim, path.join(this.dir, id), specJson, options.precision ?? this.precision);
      this.namespaces.set(mapKey, ns);
      ns.catch(() => this.namespaces.delete(mapKey));
    }
    return ns;
  }

  /** Entries and bytes per spec, read from disk (so other processes' writes count too). */
  async info(): Promise<CacheInfo> {
    this.assertOpen();
    const info: CacheInfo = { dir: this.dir, entries: 0, bytes: 0, specs: [] };
    const entries = await readdir(this.dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw cacheWriteError(this.dir, err, 'read');
    });
    for (const entry of entries) {
      const full = path.join(this.dir, entry.name);
      if (entry.isFile()) {
        info.bytes += await stat(full).then((s) => s.size, () => 0);
        continue;
      }
      if (!entry.isDirectory() || !SPEC_DIR.test(entry.name)) continue;
      const bytes = await folderBytes(full);
      info.bytes += bytes;
      const meta = await readSpecFile(path.join(full, SPEC_FILE));
      if (!meta || meta.id !== entry.name) continue;
      const ns = await PackedNamespace.load(meta.id, meta.dim, full, '', this.precision);
      const entries = ns.entries;
      await ns.close();
      info.entries += entries;
      info.specs.push({ id: meta.id, spec: meta.spec, entries, bytes });
    }
    info.specs.sort((a, b) => a.spec.backbone.localeCompare(b.spec.backbone) || a.id.localeCompare(b.id));
    return info;
  }

  /** Removes every entry and any temp or lock files; open namespaces become empty and stay usable. */
  async clear(): Promise<void> {
    this.assertOpen();
    if (!this.writable) throw cacheWriteError(this.dir, this.readOnlyReason);
    for (const ns of this.namespaces.values()) await (await ns.catch(() => undefined))?.reset();
    for (const entry of await readdir(this.dir, { withFileTypes: true })) {
      const full = path.join(this.dir, entry.name);
      const ours = entry.isDirectory() ? SPEC_DIR.test(entry.name) : /\.(tmp|lock)$/.test(entry.name);
      if (!ours) continue;
      try {
        await rm(full, { recursive: true, force: true });
      } catch (err) {
        throw cacheWriteError(full, err);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.namespaces.values()];
    this.namespaces.clear();
    await Promise.allSettled(all.map(async (ns) => (await ns).close()));
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`feature cache ${this.dir} is closed`);
  }
}

