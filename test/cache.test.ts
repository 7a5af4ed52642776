import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, open, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FinetuneError } from '../src/errors.ts';
import { FeatureCache, specId, type FeatureSpec } from '../src/features/cache.ts';
import { decodeFloat16, encodeFloat16 } from '../src/features/cache-float16.ts';
import { PACK_HEADER_SIZE, RECORD_HEADER_SIZE, recordSize } from '../src/features/cache-format.ts';
import { WRITER_SPEC, hashFor, vectorFor } from './fixtures/cache-writer.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const writerScript = path.join(repoRoot, 'test/fixtures/cache-writer.ts');
const tempDirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-cache-'));
  tempDirs.push(dir);
  return dir;
}

after(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

const spec: FeatureSpec = WRITER_SPEC;

/** float16 with a per-vector scale: every element within 1e-3 relative (plus a hair for ~0). */
function assertClose(actual: Float32Array | undefined, expected: Float32Array, what = 'vector'): void {
  assert.ok(actual, `${what} should be a hit`);
  assert.equal(actual.length, expected.length);
  let maxAbs = 0;
  for (const v of expected) maxAbs = Math.max(maxAbs, Math.abs(v));
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (err > 1e-3 * Math.abs(expected[i]) + 1e-7 * maxAbs) {
      assert.fail(`${what}[${i}] = ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

async function packFiles(dir: string): Promise<string[]> {
  const nsDir = path.join(dir, specId(spec));
  return (await readdir(nsDir)).filter((n) => n.endsWith('.pack')).map((n) => path.join(nsDir, n));
}

async function writeEntries(dir: string, prefix: string, count: number, dim: number): Promise<string[]> {
  const cache = await FeatureCache.open(dir);
  const ns = await cache.namespace(spec, dim);
  const hashes = Array.from({ length: count }, (_, i) => hashFor(prefix, i));
  await ns.put(hashes.map((hash) => ({ hash, features: vectorFor(hash, dim) })));
  await cache.close();
  return hashes;
}

describe('float16 conversion', () => {
  test('special values and rounding', () => {
    const src = new Float32Array([0, -0, 1, -2, 65504, 1 + 2 ** -11, 6e-8, 2 ** -20, Infinity, -Infinity, NaN, 70000, 0.1]);
    const half = new Uint16Array(src.length);
    encodeFloat16(src, half);
    const back = new Float32Array(src.length);
    decodeFloat16(half, back);
    assert.deepEqual([...half.slice(0, 5)], [0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff]);
    assert.equal(back[5], 1 + 2 ** -10, 'half-way rounds up');
    assert.equal(back[6], 2 ** -24, 'smallest subnormal');
    assert.equal(back[7], 2 ** -20, 'subnormal exact');
    assert.equal(back[8], Infinity);
    assert.equal(back[9], -Infinity);
    assert.ok(Number.isNaN(back[10]));
    assert.equal(back[11], Infinity, 'overflow');
    assert.ok(Math.abs(back[12] - 0.1) <= 0.1 * 2 ** -11);
  });

  test('relative error ≤ 2^-11 over the normal range, with a scale', () => {
    const src = new Float32Array(10000).map((_, i) => (i % 2 ? -1 : 1) * 2 ** ((i % 60) - 20) * (1 + (i % 977) / 977));
    const half = new Uint16Array(src.length);
    const back = new Float32Array(src.length);
    encodeFloat16(src, half, 20);
    decodeFloat16(half, back, 20);
    for (let i = 0; i < src.length; i++) {
      if (Math.abs(src[i]) < 2 ** 6 || Math.abs(src[i]) > 2 ** 35) continue; // outside half range after 2^-20
      assert.ok(Math.abs(back[i] - src[i]) <= Math.abs(src[i]) * 2 ** -11, `${src[i]} → ${back[i]}`);
    }
  });
});

describe('specId', () => {
  test('is stable, key-order independent, ignores extra fields, and changes with any field', () => {
    const reordered = Object.fromEntries(Object.entries(spec).reverse()) as unknown as FeatureSpec;
    assert.match(specId(spec), /^[0-9a-f]{16}$/);
    assert.equal(specId(reordered), specId(spec));
    assert.equal(specId({ ...spec, extra: 1 } as FeatureSpec), specId(spec));
    assert.notEqual(specId({ ...spec, augment: 'flip' }), specId(spec));
    assert.notEqual(specId({ ...spec, inputSize: [224, 224] }), specId(spec));
    assert.throws(() => specId({ ...spec, layer: undefined } as unknown as FeatureSpec), /layer/);
  });
});

describe('FeatureCache', () => {
  test('put/get round trip within 1e-3 relative, also for wide-range vectors', async () => {
    const dir = await tempDir();
    const cache = await FeatureCache.open(path.join(dir, 'nested', 'cache'));
    const ns = await cache.namespace(spec, 300);
    const hashes = Array.from({ length: 40 }, (_, i) => hashFor('rt', i));
    const wide = new Float32Array(300).map((_, i) => (i % 3 === 0 ? 0 : (i % 2 ? 1 : -1) * 10 ** ((i % 12) - 4)));
    const vectors = hashes.map((h, i) => (i === 0 ? wide : vectorFor(h, 300)));
    assert.equal(ns.has(hashes[0]), false);
    assert.equal(await ns.get(hashes[0]), undefined);
    await ns.put(hashes.map((hash, i) => ({ hash, features: vectors[i] })));
    assert.equal(ns.has(hashes[0]), true);
    assert.equal(ns.has(hashes[0].toUpperCase()), true);
    assertClose(await ns.get(hashes[0]), wide, 'wide');
    const many = await ns.getMany([...hashes, hashFor('rt', 999)]);
    hashes.forEach((h, i) => assertClose(many[i], vectors[i], `vector ${i}`));
    assert.equal(many[40], undefined);
    assert.deepEqual(ns.stats, { hits: 41, misses: 2, corrupt: 0 });
    await assert.rejects(() => ns.put([{ hash: hashFor('rt', 50), features: new Float32Array(5) }]), RangeError);
    await assert.rejects(() => ns.put([{ hash: 'not-a-hash', features: new Float32Array(300) }]), TypeError);
    await cache.close();
  });

  test('precision float32 is exact; a different spec is a miss', async () => {
    const dir = await tempDir();
    const cache = await FeatureCache.open(dir, { precision: 'float32' });
    const ns = await cache.namespace(spec, 33);
    const hash = hashFor('exact', 0);
    const v = vectorFor(hash, 33);
    await ns.put([{ hash, features: v }]);
    assert.deepEqual(await ns.get(hash), v);
    const other = await cache.namespace({ ...spec, augment: 'flip' }, 33);
    assert.equal(other.has(hash), false);
    assert.equal(await other.get(hash), undefined);
    await cache.close();
    // Precision is a writing choice: a float16 cache reads float32 packs.
    const reopened = await FeatureCache.open(dir);
    assert.deepEqual(await (await reopened.namespace(spec, 33)).get(hash), v);
    await reopened.close();
  });

  test('reopen after close sees entries, also with the index files deleted', async () => {
    const dir = await tempDir();
    const hashes = await writeEntries(dir, 'reopen', 25, 64);
    const c1 = await FeatureCache.open(dir);
    const got = await (await c1.namespace(spec, 64)).getMany(hashes);
    hashes.forEach((h, i) => assertClose(got[i], vectorFor(h, 64)));
    await c1.close();
    for (const pack of await packFiles(dir)) await unlink(pack.replace(/\.pack$/, '.idx'));
    const c2 = await FeatureCache.open(dir);
    const ns = await c2.namespace(spec, 64);
    assert.ok(hashes.every((h) => ns.has(h)), 'index rebuilt from the packs');
    const rebuilt = await ns.getMany(hashes);
    hashes.forEach((h, i) => assertClose(rebuilt[i], vectorFor(h, 64)));
    await c2.close();
  });

  test('large records (header-by-header scan) are found without index files', async () => {
    const dir = await tempDir();
    const dim = 20_000; // 80 KB float32 records: headers are read one by one, not whole records
    const writer = await FeatureCache.open(dir, { precision: 'float32' });
    const hashes = Array.from({ length: 6 }, (_, i) => hashFor('large', i));
    await (await writer.namespace(spec, dim)).put(hashes.map((hash) => ({ hash, features: vectorFor(hash, dim) })));
    await writer.close();
    const [pack] = await packFiles(dir);
    await unlink(pack.replace(/\.pack$/, '.idx'));
    await truncate(pack, (await stat(pack)).size - 100);
    const cache = await FeatureCache.open(dir);
    const got = await (await cache.namespace(spec, dim)).getMany(hashes);
    for (let i = 0; i < 5; i++) assert.deepEqual(got[i], vectorFor(hashes[i], dim));
    assert.equal(got[5], undefined);
    await cache.close();
  });

  test('a pack truncated mid-record: that entry is a miss, earlier ones hit, a re-put works', async () => {
    const dir = await tempDir();
    const dim = 100;
    const hashes = await writeEntries(dir, 'trunc', 10, dim);
    const [pack] = await packFiles(dir);
    const size = (await stat(pack)).size;
    assert.equal(size, PACK_HEADER_SIZE + 10 * recordSize(dim, 'float16'));
    await truncate(pack, size - Math.floor(recordSize(dim, 'float16') / 2));

    const c1 = await FeatureCache.open(dir);
    const ns = await c1.namespace(spec, dim);
    const got = await ns.getMany(hashes);
    for (let i = 0; i < 9; i++) assertClose(got[i], vectorFor(hashes[i], dim), `entry ${i}`);
    assert.equal(got[9], undefined);
    await ns.put([{ hash: hashes[9], features: vectorFor(hashes[9], dim) }]);
    assertClose(await ns.get(hashes[9]), vectorFor(hashes[9], dim));
    await c1.close();

    const c2 = await FeatureCache.open(dir);
    const all = await (await c2.namespace(spec, dim)).getMany(hashes);
    hashes.forEach((h, i) => assertClose(all[i], vectorFor(h, dim), `entry ${i} after reopen`));
    await c2.close();
  });

  test('a flipped byte (payload or key) is a counted miss, never wrong data', async () => {
    const dir = await tempDir();
    const dim = 50;
    const hashes = await writeEntries(dir, 'flip', 5, dim);
    const [pack] = await packFiles(dir);
    const rs = recordSize(dim, 'float16');
    const fh = await open(pack, 'r+');
    for (const at of [PACK_HEADER_SIZE + 2 * rs + RECORD_HEADER_SIZE + 11, PACK_HEADER_SIZE + 3 * rs + 20]) {
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0] ^= 0x10;
      await fh.write(b, 0, 1, at);
    }
    await fh.close();

    const cache = await FeatureCache.open(dir);
    const ns = await cache.namespace(spec, dim);
    const got = await ns.getMany(hashes);
    assert.equal(got[2], undefined);
    assert.equal(got[3], undefined);
    for (const i of [0, 1, 4]) assertClose(got[i], vectorFor(hashes[i], dim));
    assert.deepEqual(ns.stats, { hits: 3, misses: 2, corrupt: 2 });
    assert.equal(ns.has(hashes[2]), false, 'dropped from the index');
    assert.equal(await ns.get(hashes[2]), undefined);
    assert.equal(ns.stats.corrupt, 2, 'not read again');
    await cache.close();
  });

  test('when the newest copy of a key is corrupt, an older copy is served', async () => {
    const dir = await tempDir();
    const dim = 16;
    const hash = hashFor('dup', 0);
    const a = await FeatureCache.open(dir);
    const b = await FeatureCache.open(dir);
    const nsA = await a.namespace(spec, dim);
    const nsB = await b.namespace(spec, dim); // opened before a's put, so it does not know the key
    await nsA.put([{ hash, features: vectorFor(hash, dim) }]);
    await new Promise((r) => setTimeout(r, 20)); // distinct mtimes: b's pack is the newer
    await nsB.put([{ hash, features: vectorFor(hash, dim) }]);
    await a.close();
    await b.close();
    const packs = await packFiles(dir);
    const mtimes = await Promise.all(packs.map(async (p) => (await stat(p)).mtimeMs));
    const newest = packs[mtimes.indexOf(Math.max(...mtimes))];
    const fh = await open(newest, 'r+');
    await fh.write(Buffer.from([0xff, 0xff]), 0, 2, PACK_HEADER_SIZE + RECORD_HEADER_SIZE);
    await fh.close();
    const c = await FeatureCache.open(dir);
    const ns = await c.namespace(spec, dim);
    assertClose(await ns.get(hash), vectorFor(hash, dim));
    assert.deepEqual(ns.stats, { hits: 1, misses: 0, corrupt: 1 });
    await c.close();
  });

  test('info() counts entries and bytes per spec; clear() empties the cache', async () => {
    const dir = await tempDir();
    const cache = await FeatureCache.open(dir);
    const flip = { ...spec, augment: 'flip' };
    const ns1 = await cache.namespace(spec, 8);
    const ns2 = await cache.namespace(flip, 8);
    const h = (i: number) => hashFor('info', i);
    await ns1.put([0, 1, 2].map((i) => ({ hash: h(i), features: vectorFor(h(i), 8) })));
    await ns1.put([2, 3].map((i) => ({ hash: h(i), features: vectorFor(h(i), 8) }))); // 2 is known: skipped
    await ns2.put([{ hash: h(0), features: vectorFor(h(0), 8) }]);
    await writeFile(path.join(dir, 'leftover.tmp'), 'x');

    const info = await cache.info();
    assert.equal(info.dir, path.resolve(dir));
    assert.equal(info.entries, 5);
    const byId = new Map(info.specs.map((s) => [s.id, s]));
    assert.equal(byId.get(specId(spec))?.entries, 4);
    assert.equal(byId.get(specId(flip))?.entries, 1);
    assert.deepEqual(byId.get(specId(flip))?.spec, flip);
    for (const s of info.specs) assert.ok(s.bytes >= PACK_HEADER_SIZE + s.entries * recordSize(8, 'float16'));
    assert.ok(info.bytes >= info.specs.reduce((t, s) => t + s.bytes, 0));

    await cache.clear();
    const empty = await cache.info();
    assert.equal(empty.entries, 0);
    assert.deepEqual(empty.specs, []);
    assert.deepEqual((await readdir(dir)).sort(), ['CACHEDIR.TAG']);
    assert.equal(ns1.has(h(0)), false);
    assert.equal(await ns1.get(h(0)), undefined);
    await ns1.put([{ hash: h(0), features: vectorFor(h(0), 8) }]);
    assertClose(await ns1.get(h(0)), vectorFor(h(0), 8));
    assert.equal((await cache.info()).entries, 1);
    await cache.close();
  });

  test('a cache folder that cannot be created is a FinetuneError naming it and the flags', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'a-file');
    await writeFile(file, '');
    const target = path.join(file, 'cache');
    await assert.rejects(
      () => FeatureCache.open(target),
      (err: unknown) =>
        err instanceof FinetuneError && err.message.includes(target) && /--cache-dir/.test(err.message) && /--no-cache/.test(err.message),
    );
  });
});

function startWriter(dir: string, prefix: string, count: number | 'loop', dim: number, batch: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', writerScript, dir, prefix, String(count), String(dim), String(batch)], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const lines: string[] = [];
  const waiters: { match: (l: string) => boolean; resolve: () => void }[] = [];
  let buffered = '';
  child.stdout!.on('data', (d) => {
    buffered += d;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      for (const w of waiters.splice(0)) (w.match(line) ? w.resolve() : waiters.push(w));
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = (match: (l: string) => boolean) =>
    lines.some(match)
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          waiters.push({ match, resolve });
          exited.then(() => reject(new Error(`writer exited before the expected output: ${stderr}`)));
        });
  return { child, lines, waitFor, exited, stderr: () => stderr };
}

function killQuietly(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

describe('FeatureCache across processes', () => {
  test('two processes writing one namespace at once: all 400 entries readable and correct', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const dim = 256;
    const writers = ['p1', 'p2'].map((p) => startWriter(dir, p, 200, dim, 16));
    try {
      await Promise.all(writers.map((w) => w.waitFor((l) => l === 'ready')));
      for (const w of writers) w.child.stdin!.write('go\n');
      const codes = await Promise.all(writers.map((w) => w.exited));
      assert.deepEqual(codes, [0, 0], writers.map((w) => w.stderr()).join('\n'));
    } finally {
      writers.forEach((w) => killQuietly(w.child));
    }
    assert.equal((await packFiles(dir)).length, 2, 'one pack per writer');
    const cache = await FeatureCache.open(dir);
    const ns = await cache.namespace(spec, dim);
    const hashes = ['p1', 'p2'].flatMap((p) => Array.from({ length: 200 }, (_, i) => hashFor(p, i)));
    const got = await ns.getMany(hashes);
    hashes.forEach((h, i) => assertClose(got[i], vectorFor(h, dim), `entry ${i}`));
    assert.equal(ns.stats.corrupt, 0);
    assert.equal((await cache.info()).entries, 400);
    await cache.close();
  });

  test('a writer killed with SIGKILL mid-loop leaves a cache that serves only correct entries', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const dim = 4096;
    const batch = 32;
    const w = startWriter(dir, 'killed', 'loop', dim, batch);
    let durable = 0;
    try {
      await w.waitFor((l) => l === 'ready');
      w.child.stdin!.write('go\n');
      await w.waitFor((l) => l === 'put 96');
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 15)));
      w.child.kill('SIGKILL');
      await w.exited;
      durable = Math.max(...w.lines.filter((l) => l.startsWith('put ')).map((l) => Number(l.slice(4))));
    } finally {
      killQuietly(w.child);
    }
    const cache = await FeatureCache.open(dir);
    const ns = await cache.namespace(spec, dim);
    const hashes = Array.from({ length: durable + 10 * batch }, (_, i) => hashFor('killed', i));
    const got = await ns.getMany(hashes);
    got.forEach((v, i) => {
      if (i < durable) assertClose(v, vectorFor(hashes[i], dim), `durable entry ${i}`);
      else if (v) assertClose(v, vectorFor(hashes[i], dim), `entry ${i}`);
    });
    const missing = hashes.filter((_, i) => !got[i]).slice(0, 3);
    await ns.put(missing.map((hash) => ({ hash, features: vectorFor(hash, dim) })));
    for (const h of missing) assertClose(await ns.get(h), vectorFor(h, dim));
    await cache.close();
  });
});

describe('FeatureCache speed', () => {
  test('getMany over 25,000 cached 512-float vectors', { timeout: 60_000 }, async (t) => {
    const dir = await tempDir();
    const dim = 512;
    const count = 25_000;
    const hashes = Array.from({ length: count }, (_, i) => hashFor('speed', i));
    const writer = await FeatureCache.open(dir);
    const wns = await writer.namespace(spec, dim);
    const source = new Float32Array(dim * 64);
    for (let i = 0; i < source.length; i++) source[i] = ((i * 2654435761) % 1000) / 37 - 10;
    const vectorOf = (i: number) => source.subarray((i % 64) * dim, (i % 64 + 1) * dim);
    const writeStart = performance.now();
    for (let start = 0; start < count; start += 1000) {
      await wns.put(hashes.slice(start, start + 1000).map((hash, k) => ({ hash, features: vectorOf(start + k) })));
    }
    const writeMs = performance.now() - writeStart;
    await writer.close();

    const readStart = performance.now();
    const cache = await FeatureCache.open(dir);
    const ns = await cache.namespace(spec, dim);
    const openMs = performance.now() - readStart;
    const got = await ns.getMany(hashes);
    const readMs = performance.now() - readStart;
    t.diagnostic(`25,000 × 512: write ${writeMs.toFixed(0)} ms; open ${openMs.toFixed(0)} ms, open + getMany ${readMs.toFixed(0)} ms`);
    assert.equal(ns.stats.hits, count);
    for (const i of [0, 1, 12_345, count - 1]) assertClose(got[i], vectorOf(i), `vector ${i}`);
    assert.ok(readMs < 6000, `loading took ${readMs.toFixed(0)} ms`);
    await cache.close();
  });
});
