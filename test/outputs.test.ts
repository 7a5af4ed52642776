/**
 * Every output checked before the work, and a failure that leaves nothing behind: read-only
 * and full disks (real tmpfs mounts, so root's bypass of permission bits does not hide them),
 * an --out overlapping the data, a cache that cannot be written, `cache clear` on a stranger's
 * folder.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { EXIT } from '../src/errors.ts';
import { saveBundle } from '../src/bundle/save.ts';
import { loadBundle } from '../src/bundle/load.ts';
import { BUNDLE_FORMAT, BUNDLE_VERSION, type Manifest } from '../src/bundle/manifest.ts';
import { TINY_LAYER, buildGoodData, writeTinyBackbone } from './fixtures/bad-inputs.ts';
import { errorLines, runFinetune, show } from './fixtures/models-cli.ts';
import { cannotMount, mountTmpfs } from './fixtures/tmpfs.ts';

let root = '';
let data = '';
let backbone = '';
let home = '';
const mounts: { unmount(): void }[] = [];

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'finetune-outputs-'));
  data = path.join(root, 'data');
  home = path.join(root, 'home');
  await buildGoodData(data, 3);
  backbone = await writeTinyBackbone(path.join(root, 'backbone'));
});

after(async () => {
  for (const m of mounts) m.unmount();
  await rm(root, { recursive: true, force: true });
});

const tiny = ['--backbone', () => backbone, '--layer', TINY_LAYER, '--engine', 'tfjs', '--epochs', '2', '--hidden', '8', '--ensemble', '1'];
const flags = () => tiny.map((f) => (typeof f === 'function' ? f() : f));
const cli = (args: string[]) => runFinetune(args, { home, cwd: root });
const warnings = (stderr: string, pattern: RegExp) => stderr.split('\n').filter((l) => pattern.test(l));

async function readOnlyMount(name: string, fill?: (dir: string) => Promise<void>): Promise<string | undefined> {
  const dir = path.join(root, name);
  const m = await mountTmpfs(dir, '4m');
  if (!m) return undefined;
  mounts.push(m);
  await fill?.(dir);
  m.readOnly();
  return dir;
}

describe('outputs that cannot be written fail before any work', { skip: cannotMount() }, () => {
  test('a read-only --out: exit 2, one line naming it and "read-only file system", nothing extracted', async () => {
    const ro = (await readOnlyMount('ro-out'))!;
    const r = await cli(['train', data, ...flags(), '--out', path.join(ro, 'model')]);
    assert.equal(r.code, EXIT.usage, show(r));
    assert.deepEqual(errorLines(r).length, 1, show(r));
    assert.match(errorLines(r)[0], new RegExp(`cannot write the model folder ${path.join(ro, 'model')}.*read-only file system`));
    assert.doesNotMatch(r.stderr, /extracting features/);
  });

  test('a read-only --report folder: exit 2 before extracting, naming the report', async () => {
    const ro = (await readOnlyMount('ro-report'))!;
    const r = await cli(['train', data, ...flags(), '--out', path.join(root, 'm-report'), '--report', path.join(ro, 'r.html')]);
    assert.equal(r.code, EXIT.usage, show(r));
    assert.match(errorLines(r)[0], /cannot write --report .*r\.html: read-only file system; choose another --report/);
    assert.doesNotMatch(r.stderr, /extracting features/);
    await assert.rejects(readdir(path.join(root, 'm-report')), 'no model folder made');
  });

  test('predict --csv / --kaggle and evaluate --report in a read-only folder: exit 2 before extracting', async () => {
    const ro = (await readOnlyMount('ro-tables'))!;
    const model = path.join(root, 'm-tables');
    const t = await cli(['train', data, ...flags(), '--out', model, '--no-cache']);
    assert.equal(t.code, EXIT.ok, show(t));
    for (const [args, flag] of [
      [['predict', '--model', model, '--no-cache', '--csv', path.join(ro, 'p.csv'), path.join(data, 'valid/a/a-0.jpg')], '--csv'],
      [['predict', '--model', model, '--no-cache', '--kaggle', path.join(ro, 'k.csv'), path.join(data, 'valid/a/a-0.jpg')], '--kaggle'],
      [['evaluate', data, '--model', model, '--no-cache', '--report', path.join(ro, 'r.html')], '--report'],
    ] as const) {
      const r = await cli([...args]);
      assert.equal(r.code, EXIT.usage, show(r));
      assert.equal(errorLines(r).length, 1, show(r));
      assert.match(errorLines(r)[0], new RegExp(`cannot write ${flag} ${ro}/\\w+\\.\\w+: read-only file system; choose another ${flag}`));
      assert.doesNotMatch(r.stderr, /extracting features/);
    }
  });

  test('a read-only FINETUNE_HOME: the model is saved, and a warning says it is not remembered as the last one', async () => {
    const ro = (await readOnlyMount('ro-home'))!;
    const model = path.join(root, 'm-home');
    const r = await runFinetune(['train', data, ...flags(), '--out', model, '--no-cache'], { home: ro, cwd: root });
    assert.equal(r.code, EXIT.ok, show(r));
    assert.match(r.stderr, new RegExp(`cannot remember ${model} as the last model trained \\(${ro}/last-model: read-only file system\\); predict and evaluate need --model ${model}`));
    const p = await runFinetune(['predict', '--model', model, '--no-cache', path.join(data, 'valid/a/a-0.jpg')], { home: ro, cwd: root });
    assert.equal(p.code, EXIT.ok, show(p));
  });

  test('an empty read-only cache: train refuses before extracting; predict warns once and answers', async () => {
    const ro = (await readOnlyMount('ro-empty-cache'))!;
    const r = await cli(['train', data, ...flags(), '--out', path.join(root, 'm-cache'), '--cache-dir', ro]);
    assert.equal(r.code, EXIT.usage, show(r));
    assert.match(errorLines(r)[0], new RegExp(`cannot write the feature cache ${ro}: read-only file system; choose a writable --cache-dir, or run with --no-cache`));
    assert.doesNotMatch(r.stderr, /extracting features/);

    const ok = await cli(['train', data, ...flags(), '--out', path.join(root, 'm-cache'), '--no-cache']);
    assert.equal(ok.code, EXIT.ok, show(ok));
    const p = await cli(['predict', '--model', path.join(root, 'm-cache'), '--cache-dir', ro, '--json', path.join(data, 'valid/a/a-0.jpg'), path.join(data, 'valid/b/b-0.jpg')]);
    assert.equal(p.code, EXIT.ok, show(p));
    assert.equal(p.stdout.trim().split('\n').length, 2, show(p));
    assert.equal(warnings(p.stderr, /feature cache/).length, 1, show(p));
    assert.match(p.stderr, /cannot be written \(read-only file system\): reading the features it holds, saving no new ones/);
  });

  test('a filled read-only cache is read by train, predict, evaluate and cache info', async () => {
    const model = path.join(root, 'm-filled');
    const ro = (await readOnlyMount('ro-filled-cache', async (dir) => {
      const first = await cli(['train', data, ...flags(), '--out', model, '--cache-dir', dir]);
      assert.equal(first.code, EXIT.ok, show(first));
    }))!;
    const again = await cli(['train', data, ...flags(), '--out', model, '--cache-dir', ro, '--json']);
    assert.equal(again.code, EXIT.ok, show(again));
    assert.deepEqual(JSON.parse(again.stdout).cache, { hits: 12, misses: 0 });
    assert.equal(warnings(again.stderr, /feature cache/).length, 1, show(again));

    const p = await cli(['predict', '--model', model, '--cache-dir', ro, path.join(data, 'valid/a/a-0.jpg')]);
    assert.equal(p.code, EXIT.ok, show(p));
    assert.match(p.stderr, /1 from cache/);
    const e = await cli(['evaluate', data, '--model', model, '--cache-dir', ro, '--json']);
    assert.equal(e.code, EXIT.ok, show(e));
    const info = await cli(['cache', 'info', '--cache-dir', ro, '--json']);
    assert.equal(info.code, EXIT.ok, show(info));
    assert.equal(JSON.parse(info.stdout).entries, 12);
  });

  test('predict on a full cache disk warns once and answers every image', async () => {
    const dir = path.join(root, 'full-cache');
    const m = (await mountTmpfs(dir, '64k'))!;
    mounts.push(m);
    const model = path.join(root, 'm-full');
    const t = await cli(['train', data, ...flags(), '--out', model, '--no-cache']);
    assert.equal(t.code, EXIT.ok, show(t));
    // The cache folder exists and is tagged; then the disk fills up.
    await mkdir(path.join(dir, 'cache'));
    await writeFile(path.join(dir, 'cache/CACHEDIR.TAG'), 'Signature: 8a477f597d28d172789f06886806bc55\n# This folder is a finetune feature cache; it can be deleted and rebuilt.\n');
    await writeFile(path.join(dir, 'filler'), Buffer.alloc(64 * 1024)).catch(() => undefined);
    const images = ['a', 'b'].flatMap((c) => [0, 1, 2].map((i) => path.join(data, `train/${c}/${c}-${i}.jpg`)));
    const p = await cli(['predict', '--model', model, '--cache-dir', path.join(dir, 'cache'), '--json', ...images]);
    assert.equal(p.code, EXIT.ok, show(p));
    assert.equal(p.stdout.trim().split('\n').length, 6);
    assert.equal(warnings(p.stderr, /feature cache/).length, 1, show(p));
    assert.match(p.stderr, /no space left on device/);
  });
});

function tinyHead(units: number): tf.LayersModel {
  // Dense(64 → units): units × 260 bytes of weights, so the size of a save is chosen here.
  return tf.sequential({ layers: [tf.layers.dense({ inputShape: [64], units, kernelInitializer: 'ones' })] });
}

const manifest = (classes: number): Omit<Manifest, 'head'> =>
  ({
    format: BUNDLE_FORMAT,
    formatVersion: BUNDLE_VERSION,
    createdAt: new Date().toISOString(),
    classes: Array.from({ length: classes }, (_, i) => `c${i}`),
    backbones: [{ id: 'x', checksum: 'y', layer: 'z', pooling: 'avg', preprocess: 'unit', inputSize: [32, 32], resize: 'squash', featureSize: 64 }],
    featureSize: 64,
    temperature: 1,
    training: {},
    counts: { train: 1, valid: 0, skipped: 0 },
    metrics: { epochs: 1, bestEpoch: 1 },
    history: [],
    versions: {},
  }) as unknown as Omit<Manifest, 'head'>;

describe('a full disk during a save', { skip: cannotMount() }, () => {
  test('names the path and the reason, leaves no partial head-* folder, keeps the previous model; the next save removes orphans', async () => {
    const dir = path.join(root, 'full');
    const m = (await mountTmpfs(dir, '1m'))!;
    mounts.push(m);
    const out = path.join(dir, 'model');
    const small = tinyHead(2);
    await saveBundle(out, small, manifest(2));
    const before = await readdir(out);
    // Fill the disk to ~100 KB free, then try to save a 260 KB head.
    const fill = path.join(dir, 'filler');
    const room = 1024 * 1024 - 100 * 1024 - 3 * 4096;
    await writeFile(fill, Buffer.alloc(room));
    const big = tinyHead(1000);
    await assert.rejects(saveBundle(out, big, manifest(1000)), (err: Error) => {
      assert.match(err.message, new RegExp(`cannot save the model in ${out}: no space left on device; the previous model there is unchanged`));
      return true;
    });
    assert.deepEqual((await readdir(out)).sort(), before.sort(), 'nothing of the failed save is left');
    const kept = await loadBundle(out);
    assert.equal(kept.manifest.classes.length, 2, 'the previous model still loads');
    kept.head.dispose();

    // Orphans: a dead process's head, and one of a live pid untouched for an hour, go; a live
    // pid's fresh head (a concurrent save in progress) stays.
    await rm(fill);
    const dead = `head-abc-999999999-deadbeef`;
    const stale = `head-abc-1-0badf00d`;
    const live = `head-abc-1-0000beef`;
    for (const name of [dead, stale, live]) await mkdir(path.join(out, name));
    const hourAgo = new Date(Date.now() - 3600_000);
    const { utimes } = await import('node:fs/promises');
    await utimes(path.join(out, stale), hourAgo, hourAgo);
    await writeFile(fill, Buffer.alloc(room));
    await assert.rejects(saveBundle(out, big, manifest(1000)));
    const afterFailure = await readdir(out);
    assert.ok(!afterFailure.includes(dead) && !afterFailure.includes(stale), `orphans removed by a failed save: ${afterFailure}`);
    assert.ok(afterFailure.includes(live), 'a live save is left alone');
    await rm(fill);
    await saveBundle(out, big, manifest(1000));
    const saved = await loadBundle(out);
    assert.equal(saved.manifest.classes.length, 1000, 'after freeing space the save succeeds');
    saved.head.dispose();
    small.dispose();
    big.dispose();
  });
});

describe('--out overlapping the data is refused before any work', () => {
  for (const [name, out] of [
    ['inside the data folder', () => path.join(data, 'model')],
    ['the data folder itself', () => data],
    ['holding the data folder', () => root],
    ['a symlink into the data folder', () => path.join(root, 'link-to-data', 'model')],
  ] as const) {
    test(`--out ${name}: exit 2, nothing written`, async () => {
      await symlink(data, path.join(root, 'link-to-data')).catch(() => undefined);
      const listing = async () => JSON.stringify([await readdir(data, { recursive: true }), await readdir(root)]);
      const beforeRun = await listing();
      const r = await cli(['train', data, ...flags(), '--out', out()]);
      assert.equal(r.code, EXIT.usage, show(r));
      assert.equal(errorLines(r).length, 1, show(r));
      assert.match(errorLines(r)[0], /--out .* (is inside|contains) the data folder/);
      assert.doesNotMatch(r.stderr, /extracting features/);
      assert.equal(await listing(), beforeRun);
    });
  }
});

describe('cache clear', () => {
  test('on a folder that is not a finetune cache: exit 2, nothing deleted or written', async () => {
    const folder = path.join(root, 'my-photos');
    await mkdir(folder);
    await writeFile(path.join(folder, 'holiday.jpg'), 'x');
    await mkdir(path.join(folder, '0123456789abcdef'));
    const r = await cli(['cache', 'clear', '--cache-dir', folder]);
    assert.equal(r.code, EXIT.usage, show(r));
    assert.match(errorLines(r)[0], /my-photos is not a finetune feature cache.*nothing was deleted/);
    assert.deepEqual((await readdir(folder)).sort(), ['0123456789abcdef', 'holiday.jpg']);
    const info = await cli(['cache', 'info', '--cache-dir', path.join(root, 'no-cache-here')]);
    assert.equal(info.code, EXIT.ok, show(info));
    await assert.rejects(readdir(path.join(root, 'no-cache-here')), 'cache info creates nothing');
    assert.equal(await readFile(path.join(folder, 'holiday.jpg'), 'utf8'), 'x');
  });
});
