import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { download, hashFile, OfflineError } from '../src/net/download.ts';
import { FinetuneError, InterruptedError, ModelFileError } from '../src/errors.ts';
import type { ProgressEvent } from '../src/progress.ts';
import { startProxy, startServer, unusedPort, type TestServer } from './fixtures/http-server.ts';

const PROXY_VARS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'];

describe('download', () => {
  let server: TestServer;
  let dir: string;
  let md5: string;
  let sha256: string;
  const savedEnv: Record<string, string | undefined> = {};
  let n = 0;
  /** A fresh path in a folder that exists; download() itself must create missing folders. */
  const destFor = (create = false) => {
    const dest = path.join(dir, `sub${n}`, `weights-${n++}.h5`);
    if (create) mkdirSync(path.dirname(dest), { recursive: true });
    return dest;
  };

  before(async () => {
    // A proxy configured on the developer's machine must not capture 127.0.0.1 traffic here.
    for (const name of PROXY_VARS) {
      savedEnv[name] = process.env[name];
      delete process.env[name];
    }
    server = await startServer();
    dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-download-'));
    md5 = createHash('md5').update(server.data).digest('hex');
    sha256 = createHash('sha256').update(server.data).digest('hex');
  });

  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
    for (const name of PROXY_VARS) {
      if (savedEnv[name] === undefined) delete process.env[name];
      else process.env[name] = savedEnv[name];
    }
  });

  const requestsTo = (mode: string) => server.requests.filter((r) => r.mode === mode);

  test('downloads the whole file, verifies md5 and sha256, reports progress in bytes', async () => {
    const dest = destFor();
    const events: ProgressEvent[] = [];
    const result = await download(server.url(), dest, { md5, sha256, onProgress: (e) => events.push(e) });

    assert.deepEqual(await readFile(dest), server.data);
    assert.equal(existsSync(`${dest}.part`), false);
    assert.deepEqual(result, { path: dest, bytes: server.data.length, md5, sha256, resumed: false });

    assert.equal(events[0].status, 'initiate');
    assert.equal(events[0].status === 'initiate' && events[0].total, server.data.length);
    assert.equal(events.at(-1)?.status, 'done');
    const progress = events.filter((e) => e.status === 'progress');
    assert.ok(progress.length >= 1);
    for (const e of events) assert.equal(e.task, 'download');
    let last = -1;
    for (const e of progress) {
      assert.ok(e.current > last, 'current increases');
      assert.equal(e.total, server.data.length);
      assert.equal(typeof e.info?.bytesPerSecond, 'number');
      last = e.current;
    }
    assert.equal(last, server.data.length);
  });

  test('hashFile gives both hashes and the size in one pass', async () => {
    const file = path.join(dir, 'hash-me.bin');
    await writeFile(file, server.data);
    assert.deepEqual(await hashFile(file), { md5, sha256, bytes: server.data.length });
  });

  test('resumes with a Range request after the connection drops mid-body', async () => {
    const dest = destFor();
    const result = await download(server.url('drop'), dest, { md5, retries: 2 });

    assert.deepEqual(await readFile(dest), server.data);
    assert.equal(result.resumed, true);
    assert.equal(result.md5, md5);
    const reqs = requestsTo('drop');
    assert.equal(reqs.length, 2);
    assert.equal(reqs[0].range, undefined);
    assert.match(reqs[1].range ?? '', /^bytes=[1-9]\d*-$/);
  });

  test('resumes from a .part left by an earlier run, and re-hashes the whole file', async () => {
    const dest = destFor(true);
    const half = Math.floor(server.data.length / 2);
    await writeFile(`${dest}.part`, server.data.subarray(0, half));
    const before = server.requests.length;

    const result = await download(server.url(), dest, { md5, sha256 });

    assert.equal(result.resumed, true);
    assert.equal(result.sha256, sha256);
    assert.deepEqual(await readFile(dest), server.data);
    assert.equal(server.requests[before].range, `bytes=${half}-`);
  });

  test('a complete .part (server answers 416) is verified and kept without downloading again', async () => {
    const dest = destFor(true);
    await writeFile(`${dest}.part`, server.data);
    const result = await download(server.url(), dest, { md5 });
    assert.equal(result.resumed, true);
    assert.deepEqual(await readFile(dest), server.data);
  });

  test('a server that ignores Range still yields the right file', async () => {
    const dest = destFor(true);
    await writeFile(`${dest}.part`, server.data.subarray(0, 1000));
    const result = await download(server.url('ignore-range'), dest, { md5 });
    assert.equal(result.resumed, false);
    assert.deepEqual(await readFile(dest), server.data);
    assert.equal(requestsTo('ignore-range').at(-1)?.range, 'bytes=1000-');
  });

  test('a wrong hash moves the file to .corrupt and names URL, both hashes and the bad file', async () => {
    const dest = destFor();
    const wrong = '0'.repeat(32);
    await assert.rejects(download(server.url(), dest, { md5: wrong }), (err: Error) => {
      assert.ok(err instanceof ModelFileError);
      assert.ok(err.message.includes(server.url()));
      assert.ok(err.message.includes(wrong));
      assert.ok(err.message.includes(md5));
      assert.ok(err.message.includes(`${dest}.corrupt`));
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    assert.equal(existsSync(dest), false);
    assert.equal(existsSync(`${dest}.part`), false);
    assert.deepEqual(await readFile(`${dest}.corrupt`), server.data);
  });

  test('HTTP 404 fails at once with the status and the URL', async () => {
    const dest = destFor();
    const url = server.url('404');
    await assert.rejects(download(url, dest), (err: Error) => {
      assert.ok(err instanceof FinetuneError);
      assert.equal(err.message, `download of ${url} failed: HTTP 404 Not Found`);
      return true;
    });
    assert.equal(requestsTo('404').length, 1, 'no retries on an HTTP error');
    assert.equal(existsSync(dest), false);
  });

  test('follows redirects', async () => {
    const dest = destFor();
    await download(server.url('redirect'), dest, { sha256 });
    assert.deepEqual(await readFile(dest), server.data);
  });

  test('a stalled server is abandoned after idleTimeoutMs with a clear error; the .part stays', async () => {
    const dest = destFor();
    const t0 = Date.now();
    await assert.rejects(download(server.url('slow'), dest, { idleTimeoutMs: 300, retries: 1 }), (err: Error) => {
      assert.ok(err instanceof FinetuneError);
      assert.match(err.message, /after 2 attempts: no data for 0\.3 s/);
      assert.ok(err.message.includes(server.url('slow')));
      return true;
    });
    assert.ok(Date.now() - t0 < 3000);
    assert.equal(existsSync(dest), false);
    assert.equal(existsSync(`${dest}.part`), true);
    // The retry resumed after the bytes that did arrive.
    assert.equal(requestsTo('slow').at(-1)?.range, 'bytes=16-');
  });

  test('connection refused → OfflineError quickly, naming the URL and where to put the file', async () => {
    const port = await unusedPort();
    const url = `http://127.0.0.1:${port}/vgg16.h5`;
    const dest = destFor();
    const t0 = Date.now();
    await assert.rejects(download(url, dest), (err: Error) => {
      assert.ok(err instanceof OfflineError);
      assert.equal(err.exitCode, 1);
      assert.ok(err.message.includes(url));
      assert.ok(err.message.includes(dest));
      assert.match(err.message, /ECONNREFUSED/);
      return true;
    });
    assert.ok(Date.now() - t0 < 2000);
  });

  test('offline: true throws OfflineError without any request', async () => {
    const before = server.requests.length;
    const dest = destFor();
    await assert.rejects(download(server.url(), dest, { offline: true, md5 }), (err: Error) => {
      assert.ok(err instanceof OfflineError);
      assert.ok(err.message.includes(server.url()) && err.message.includes(dest) && err.message.includes(md5));
      return true;
    });
    assert.equal(server.requests.length, before);
  });

  test('an aborted signal stops the download with InterruptedError', async () => {
    const controller = new AbortController();
    const dest = destFor();
    const pending = download(server.url('slow'), dest, { signal: controller.signal, idleTimeoutMs: 10_000 });
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(pending, InterruptedError);
  });

  test('HTTP_PROXY sends the request through the proxy', async () => {
    const proxy = await startProxy();
    process.env.HTTP_PROXY = proxy.url;
    try {
      const dest = destFor();
      await download(server.url(), dest, { md5 });
      assert.deepEqual(await readFile(dest), server.data);
      assert.deepEqual(proxy.seen, [server.url()]);

      // NO_PROXY exempts the host again.
      process.env.NO_PROXY = '127.0.0.1';
      await download(server.url(), destFor(), { md5 });
      assert.equal(proxy.seen.length, 1);
    } finally {
      delete process.env.HTTP_PROXY;
      delete process.env.NO_PROXY;
      await proxy.close();
    }
  });
});
