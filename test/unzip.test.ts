import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { extractZip } from '../src/data/unzip.ts';
import { FinetuneError, UsageError } from '../src/errors.ts';
import type { ProgressEvent } from '../src/progress.ts';
import { makeZip, type ZipEntryInput } from './fixtures/zip.ts';


describe('extractZip', () => {
  let dir: string;
  let n = 0;
  const fresh = (stem: string) => path.join(dir, `${stem}-${n++}`);
  const writeZip = async (entries: ZipEntryInput[]) => {
    const file = fresh('archive') + '.zip';
    await writeFile(file, makeZip(entries));
    return file;
  };
  /** Nothing at dest and no temporary sibling left behind. */
  const assertNothingLeft = async (dest: string) => {
    assert.equal(existsSync(dest), false);
    const leftovers = (await readdir(dir)).filter((f) => f.startsWith(path.basename(dest)));
    assert.deepEqual(leftovers, []);
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-unzip-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('extracts files and folders, stored and deflated, and reports progress', async () => {
    const big = Buffer.alloc(200_000, 'cat ');
    const zip = await writeZip([
      { name: 'dogscats/' },
      { name: 'dogscats/train/cats/cat.1.jpg', data: 'meow' },
      { name: 'dogscats/train/dogs/dog.1.jpg', data: big, deflate: true },
      { name: 'dogscats/valid/cats/cat.2.jpg', data: '' },
    ]);
    const dest = fresh('out');
    const events: ProgressEvent[] = [];
    const result = await extractZip(zip, dest, { onProgress: (e) => events.push(e) });

    assert.deepEqual(result, { files: 3, bytes: 4 + big.length });
    assert.equal(await readFile(path.join(dest, 'dogscats/train/cats/cat.1.jpg'), 'utf8'), 'meow');
    assert.deepEqual(await readFile(path.join(dest, 'dogscats/train/dogs/dog.1.jpg')), big);
    assert.equal((await readFile(path.join(dest, 'dogscats/valid/cats/cat.2.jpg'))).length, 0);
    assert.deepEqual(await readdir(dir).then((l) => l.filter((f) => f.includes('.extracting-'))), []);

    assert.deepEqual(events.map((e) => e.status)[0], 'initiate');
    assert.equal(events.at(-1)?.status, 'done');
    const last = events.filter((e) => e.status === 'progress').at(-1);
    assert.equal(last?.status === 'progress' && last.current, 4);
  });

  test('stripComponents drops leading folders', async () => {
    const zip = await writeZip([{ name: 'top/a/b.txt', data: 'x' }, { name: 'top/c.txt', data: 'y' }]);
    const dest = fresh('out');
    await extractZip(zip, dest, { stripComponents: 1 });
    assert.deepEqual((await readdir(dest)).sort(), ['a', 'c.txt']);
    assert.equal(await readFile(path.join(dest, 'a/b.txt'), 'utf8'), 'x');
  });

  test('an existing empty destination is fine', async () => {
    const zip = await writeZip([{ name: 'a.txt', data: 'a' }]);
    const dest = fresh('out');
    await mkdir(dest);
    await extractZip(zip, dest);
    assert.equal(await readFile(path.join(dest, 'a.txt'), 'utf8'), 'a');
  });

  for (const evil of ['../escaped.txt', 'ok/../../escaped.txt', '/etc/evil.txt']) {
    test(`refuses the zip-slip entry ${evil} and extracts nothing`, async () => {
      const zip = await writeZip([{ name: 'fine.txt', data: 'fine' }, { name: evil, data: 'evil' }]);
      const dest = fresh('out');
      await assert.rejects(extractZip(zip, dest), (err: Error) => {
        assert.ok(err instanceof FinetuneError);
        assert.ok(err.message.includes(evil), err.message);
        assert.ok(err.message.includes(zip));
        return true;
      });
      await assertNothingLeft(dest);
      assert.equal(existsSync(path.join(dir, 'escaped.txt')), false);
    });
  }

  test('refuses symbolic links', async () => {
    const zip = await writeZip([{ name: 'link', data: '/etc/passwd', mode: 0o120777 }]);
    const dest = fresh('out');
    await assert.rejects(extractZip(zip, dest), (err: Error) => {
      assert.ok(err instanceof FinetuneError);
      assert.match(err.message, /symbolic link "link"/);
      return true;
    });
    await assertNothingLeft(dest);
  });

  test('a file that is not a zip is refused, naming the file', async () => {
    const file = fresh('garbage') + '.zip';
    await writeFile(file, Buffer.alloc(1000, 7));
    const dest = fresh('out');
    await assert.rejects(extractZip(file, dest), (err: Error) => {
      assert.ok(err instanceof FinetuneError);
      assert.ok(err.message.includes(file));
      assert.match(err.message, /not a valid zip/);
      return true;
    });
    await assertNothingLeft(dest);
  });

  test('damaged file data (CRC mismatch) is refused and nothing is left at the destination', async () => {
    const bytes = makeZip([{ name: 'a.txt', data: 'first file' }, { name: 'b.txt', data: 'second file' }]);
    bytes[30 + 'a.txt'.length + 2] ^= 0xff; // flip a byte inside a.txt's data
    const file = fresh('damaged') + '.zip';
    await writeFile(file, bytes);
    const dest = fresh('out');
    await assert.rejects(extractZip(file, dest), (err: Error) => {
      assert.ok(err instanceof FinetuneError);
      assert.ok(err.message.includes(file) && err.message.includes('a.txt'), err.message);
      return true;
    });
    await assertNothingLeft(dest);
  });

  test('a missing zip file is a UsageError', async () => {
    await assert.rejects(extractZip(fresh('missing') + '.zip', fresh('out')), UsageError);
  });

  test('a non-empty destination is refused and left untouched', async () => {
    const zip = await writeZip([{ name: 'a.txt', data: 'new' }]);
    const dest = fresh('out');
    await mkdir(dest);
    await writeFile(path.join(dest, 'mine.txt'), 'user data');
    await assert.rejects(extractZip(zip, dest), (err: Error) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.exitCode, 2);
      assert.ok(err.message.includes(dest));
      return true;
    });
    assert.deepEqual(await readdir(dest), ['mine.txt']);
  });

  test('an aborted signal stops before anything lands at the destination', async () => {
    const zip = await writeZip([{ name: 'a.txt', data: 'a' }]);
    const dest = fresh('out');
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(extractZip(zip, dest, { signal: controller.signal }), (err: Error) => err.name === 'InterruptedError');
    await assertNothingLeft(dest);
  });
});
