/**
 * `finetune data pull dogscats` without the network, with the zip its error message asks for:
 * a zip already at $FINETUNE_HOME/downloads/dogscats.zip is checked (size; md5 where one is
 * published, and it says when none is) and unpacked without a request; `--from FILE` takes a
 * zip from anywhere. A mirror that counts requests proves that nothing is downloaded.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pullDataset } from '../src/data/datasets.ts';
import type { ProgressEvent } from '../src/progress.ts';
import { errorLines, makeZip, runFinetune, show, startMirror, type MirrorServer } from './fixtures/models-cli.ts';

let tmp = '';
let zip: Buffer;
let mirror: MirrorServer;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-pull-offline-'));
  zip = makeZip([
    { name: 'dogscats/' },
    { name: 'dogscats/train/cats/cat.1.jpg', data: 'c1' },
    { name: 'dogscats/train/dogs/dog.1.jpg', data: 'd1' },
    { name: 'dogscats/valid/cats/cat.2.jpg', data: 'c2' },
    { name: 'dogscats/valid/dogs/dog.2.jpg', data: 'd2' },
  ]);
  // Serves a different zip: any file from it would show that a download happened.
  mirror = await startMirror({ 'dogscats.zip': makeZip([{ name: 'dogscats/' }, { name: 'dogscats/from-the-network.txt', data: 'x' }]) });
});
after(async () => {
  await mirror.close();
  await rm(tmp, { recursive: true, force: true });
});

const unpacked = (dir: string) => ['train/cats/cat.1.jpg', 'valid/dogs/dog.2.jpg'].every((rel) => existsSync(path.join(dir, 'dogscats', rel)));

async function placeZip(home: string, bytes: Buffer): Promise<string> {
  const at = path.join(home, 'downloads', 'dogscats.zip');
  await mkdir(path.dirname(at), { recursive: true });
  await writeFile(at, bytes);
  return at;
}

describe('data pull with the zip already on disk (library)', () => {
  const withHome = async <T>(home: string, run: () => Promise<T>): Promise<T> => {
    const saved = process.env.FINETUNE_HOME;
    process.env.FINETUNE_HOME = home;
    try {
      return await run();
    } finally {
      if (saved === undefined) delete process.env.FINETUNE_HOME;
      else process.env.FINETUNE_HOME = saved;
    }
  };

  test('size and md5 as published: unpacked offline, and it says the file was verified', async () => {
    const home = path.join(tmp, 'home-lib');
    await placeZip(home, zip);
    const events: ProgressEvent[] = [];
    const md5 = createHash('md5').update(zip).digest('hex');
    const dir = path.join(tmp, 'lib-data');
    const result = await withHome(home, () => pullDataset('dogscats', { dir, offline: true, expect: { bytes: zip.length, md5 }, onProgress: (e) => events.push(e) }));
    assert.equal(result.path, path.join(dir, 'dogscats'));
    assert.ok(unpacked(dir));
    assert.ok(events.some((e) => e.status === 'done' && /md5 .* as published/.test(e.message ?? '')), JSON.stringify(events));
  });

  test('no md5 published: checked by size, with a warning saying so', async () => {
    const home = path.join(tmp, 'home-lib-nomd5');
    await placeZip(home, zip);
    const events: ProgressEvent[] = [];
    const dir = path.join(tmp, 'lib-data-nomd5');
    await withHome(home, () => pullDataset('dogscats', { dir, offline: true, expect: { bytes: zip.length }, onProgress: (e) => events.push(e) }));
    assert.ok(unpacked(dir));
    assert.ok(events.some((e) => e.status === 'warn' && /no md5 is published/.test(e.message)), JSON.stringify(events));
  });

  test('a wrong md5: refused, nothing unpacked', async () => {
    const home = path.join(tmp, 'home-lib-badmd5');
    await placeZip(home, zip);
    const dir = path.join(tmp, 'lib-data-badmd5');
    await assert.rejects(withHome(home, () => pullDataset('dogscats', { dir, offline: true, expect: { bytes: zip.length, md5: '0'.repeat(32) } })), /md5 .* is not the published 0{32}/);
    assert.equal(existsSync(path.join(dir, 'dogscats')), false);
  });
});

describe('data pull with the zip already on disk (CLI)', () => {
  test('a placed zip whose size differs from the published one: exit 1, the sizes and --from named, no download', async () => {
    const home = path.join(tmp, 'home-cli');
    const at = await placeZip(home, zip);
    const requests = mirror.requests.length;
    const dir = path.join(tmp, 'cli-data');
    const r = await runFinetune(['data', 'pull', 'dogscats', '--dir', dir], { home, cwd: tmp, env: { FINETUNE_MIRROR: mirror.url } });
    assert.equal(r.code, 1, show(r));
    assert.equal(errorLines(r).length, 1, show(r));
    assert.match(errorLines(r)[0], new RegExp(`${at} is ${zip.length} bytes, but the published dogscats.zip is 857214334 bytes.*--from ${at}`));
    assert.equal(mirror.requests.length, requests, 'nothing downloaded');
    assert.equal(existsSync(path.join(dir, 'dogscats')), false);
  });

  test('--from FILE: a zip from anywhere is unpacked without a request (its size differs: a warning)', async () => {
    const home = path.join(tmp, 'home-from');
    const file = path.join(tmp, 'somewhere', 'my copy.zip');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, zip);
    const requests = mirror.requests.length;
    const dir = path.join(tmp, 'from-data');
    const r = await runFinetune(['data', 'pull', 'dogscats', '--dir', dir, '--from', file, '--json'], { home, cwd: tmp, env: { FINETUNE_MIRROR: mirror.url } });
    assert.equal(r.code, 0, show(r));
    assert.ok(unpacked(dir), show(r));
    assert.equal(mirror.requests.length, requests, 'nothing downloaded');
    assert.match(r.stderr, /is \d+ bytes, not the published 857214334/);
    assert.equal(JSON.parse(r.stdout).path, path.join(dir, 'dogscats'));
  });

  test('--from a file that is not there: exit 2 naming it', async () => {
    const r = await runFinetune(['data', 'pull', 'dogscats', '--dir', path.join(tmp, 'x'), '--from', path.join(tmp, 'nope.zip')], { home: path.join(tmp, 'home-nope'), cwd: tmp });
    assert.equal(r.code, 2, show(r));
    assert.match(errorLines(r)[0], /--from .*nope\.zip: no such file or folder/);
  });
});
