/**
 * `finetune serve`: every endpoint, batching, each kind of bad input, and the process's life
 * (drain on SIGTERM, reload on SIGHUP with requests in flight). Loopback only, tiny backbone.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, mkdtemp, rm, cp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadModel, predict, saveModel, serve, train, type PredictionServer, type ServeOptions } from '../src/index.ts';
import { decompressionBomb } from './fixtures/bad-inputs.ts';
import { makeHeldOutImages, makeImageDataset, type HeldOutImage } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
let tmp: string;
let modelDir: string;
let twoClassDir: string;
let fusedDir: string;
let images: HeldOutImage[];
let bytes: Buffer[];
const savedHome = process.env.FINETUNE_HOME;
const engine = { engine: 'onnx', backend: 'cpu' } as const;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-serve-'));
  process.env.FINETUNE_HOME = path.join(tmp, 'home');
  const tiny = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 5 });
  const options = { backbone: tiny.folder, layer: 'block2_pool', ...engine, cacheDir: false, epochs: 8, lr: 0.01, seed: 42, ensemble: 1 } as const;
  const three = await makeImageDataset(path.join(tmp, 'data3'), { layout: 'fastai', classes: 3, perClass: 12, validPerClass: 4, size: 48, seed: 1 });
  modelDir = path.join(tmp, 'model3');
  await saveModel(modelDir, await train(three.root, options), { remember: false });
  const two = await makeImageDataset(path.join(tmp, 'data2'), { layout: 'fastai', classes: 2, perClass: 12, validPerClass: 4, size: 48, seed: 3 });
  twoClassDir = path.join(tmp, 'model2');
  await saveModel(twoClassDir, await train(two.root, options), { remember: false });
  fusedDir = path.join(tmp, 'fused');
  await saveModel(fusedDir, await train(three.root, { ...options, backbone: [tiny.folder, tiny.folder], inputSize: [[32, 32], [48, 48]] }), { remember: false });
  images = await makeHeldOutImages(path.join(tmp, 'held-out'), { classes: 3, count: 4, size: 48, seed: 2 });
  bytes = await Promise.all(images.map((i) => readFile(i.path)));
});
after(async () => {
  if (savedHome === undefined) delete process.env.FINETUNE_HOME;
  else process.env.FINETUNE_HOME = savedHome;
  await rm(tmp, { recursive: true, force: true });
});

async function withServer(opts: ServeOptions, body: (server: PredictionServer) => Promise<void>): Promise<void> {
  const server = await serve({ model: modelDir, port: 0, ...engine, ...opts });
  try {
    await body(server);
  } finally {
    await server.close(2000);
  }
}

const postImage = (url: string, body: Buffer, type = 'image/jpeg') => fetch(url, { method: 'POST', body: new Uint8Array(body), headers: { 'Content-Type': type } });
const blob = (b: Buffer, type?: string) => new Blob([new Uint8Array(b)], type ? { type } : {});

/** What `finetune predict --json` answers for the held-out images, per path. */
async function offline(tta = false, dir = modelDir) {
  const model = await loadModel(dir);
  try {
    return await predict(model, images.map((i) => i.path), { ...engine, cacheDir: false, tta });
  } finally {
    model.head.dispose();
  }
}

function assertSameProbabilities(got: Record<string, number>, want: Record<string, number>): void {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
  for (const [name, p] of Object.entries(want)) assert.ok(Math.abs(got[name] - p) < 1e-5, `${name}: ${got[name]} vs ${p}`);
}

/** Value of one sample line of the Prometheus text. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  assert.ok(line, `no ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

describe('finetune serve: endpoints', () => {
  test('GET /healthz names the model and its classes; unknown routes 404, wrong methods 405', async () => {
    await withServer({}, async (server) => {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${server.url}/healthz`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: 'ok', model: 'model3', classes: ['checker', 'circle', 'stripes'] });
      assert.equal((await fetch(`${server.url}/nothing`)).status, 404);
      const wrong = await fetch(`${server.url}/predict`);
      assert.equal(wrong.status, 405);
      assert.equal(wrong.headers.get('allow'), 'POST');
    });
  });

  test('POST /predict with image bytes answers what predict answers; ?top=K and ?tta=1', async () => {
    const [plain, mirrored] = [await offline(false), await offline(true)];
    await withServer({}, async (server) => {
      for (const [i, want] of plain.entries()) {
        assert.ok('label' in want);
        const res = await postImage(`${server.url}/predict`, bytes[i]);
        assert.equal(res.status, 200);
        const got = (await res.json()) as { label: string; probability: number; probabilities: Record<string, number> };
        assert.equal(got.label, want.label);
        assert.ok(Math.abs(got.probability - want.probability) < 1e-5);
        assertSameProbabilities(got.probabilities, want.probabilities);
      }
      const top = (await (await postImage(`${server.url}/predict?top=2`, bytes[0])).json()) as { probabilities: Record<string, number> };
      const ranked = Object.values(top.probabilities);
      assert.equal(ranked.length, 2);
      assert.ok(ranked[0] >= ranked[1]);
      const tta = (await (await postImage(`${server.url}/predict?tta=1`, bytes[1])).json()) as { probabilities: Record<string, number> };
      assert.ok('probabilities' in mirrored[1]);
      assertSameProbabilities(tta.probabilities, mirrored[1].probabilities);
      const bad = await postImage(`${server.url}/predict?top=0`, bytes[0]);
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { error: string }).error, /\?top=0: must be a whole number of at least 1/);
    });
  });

  test('a fused model (one backbone at two input sizes) answers what predict answers', async () => {
    const want = await offline(false, fusedDir);
    await withServer({ model: fusedDir }, async (server) => {
      for (const i of [0, 6]) {
        const got = (await (await postImage(`${server.url}/predict`, bytes[i])).json()) as { label: string; probabilities: Record<string, number> };
        const w = want[i];
        assert.ok('label' in w);
        assert.equal(got.label, w.label);
        assertSameProbabilities(got.probabilities, w.probabilities);
      }
    });
  });

  test('multipart with several files answers a JSON array in the same order', async () => {
    const want = await offline();
    await withServer({}, async (server) => {
      const form = new FormData();
      const order = [5, 0, 9, 3];
      for (const i of order) form.append('images', blob(bytes[i], 'image/jpeg'), path.basename(images[i].path));
      const res = await fetch(`${server.url}/predict`, { method: 'POST', body: form });
      assert.equal(res.status, 200);
      const got = (await res.json()) as { file: string; label: string; probabilities: Record<string, number> }[];
      assert.deepEqual(got.map((g) => g.file), order.map((i) => path.basename(images[i].path)));
      order.forEach((i, at) => {
        const w = want[i];
        assert.ok('label' in w);
        assert.equal(got[at].label, w.label);
        assertSameProbabilities(got[at].probabilities, w.probabilities);
      });
    });
  });

  test('concurrent requests are batched, each answered correctly; GET /metrics counts requests, latency, batch sizes, queue depth', async () => {
    const want = await offline();
    await withServer({ maxBatch: 8, maxWaitMs: 50 }, async (server) => {
      const answers = await Promise.all(bytes.map((b) => postImage(`${server.url}/predict`, b).then(async (r) => ({ status: r.status, body: (await r.json()) as { label: string } }))));
      answers.forEach((a, i) => {
        assert.equal(a.status, 200);
        assert.equal(a.body.label, (want[i] as { label: string }).label);
      });
      const res = await fetch(`${server.url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      assert.equal(sample(text, 'finetune_requests_total{path="/predict",status="200"}'), bytes.length);
      assert.equal(sample(text, 'finetune_request_duration_seconds_count'), bytes.length);
      const batches = sample(text, 'finetune_batch_size_count');
      assert.ok(batches - sample(text, 'finetune_batch_size_bucket{le="1"}') >= 1, 'no batch larger than one image');
      assert.ok(batches <= Math.ceil(bytes.length / 2), `${batches} batches for ${bytes.length} concurrent requests`);
      assert.equal(sample(text, 'finetune_images_total'), bytes.length);
      assert.equal(sample(text, 'finetune_queue_depth'), 0);
      assert.equal(sample(text, 'finetune_requests_in_flight'), 0);
    });
  });
});

describe('finetune serve: bad input never takes it down', () => {
  test('non-image, truncated, empty, wrong Content-Type: 400/415 with the reason; the server answers on', async () => {
    await withServer({}, async (server) => {
      const cases: [Buffer, string, number, RegExp][] = [
        [Buffer.from('this is not a picture at all, just text'), 'image/jpeg', 400, /not an image sharp can decode/],
        [bytes[0].subarray(0, bytes[0].length >> 1), 'image/jpeg', 400, /corrupt or truncated image \(jpeg\)/],
        [Buffer.alloc(0), 'image/png', 400, /empty body/],
        [bytes[0], 'text/plain', 415, /Content-Type text\/plain: send image bytes/],
      ];
      for (const [body, type, status, reason] of cases) {
        const res = await postImage(`${server.url}/predict`, body, type);
        assert.equal(res.status, status, String(reason));
        assert.match(((await res.json()) as { error: string }).error, reason);
      }
      const form = new FormData();
      form.append('a', blob(bytes[0]), 'good.jpg');
      form.append('b', blob(Buffer.from('garbage')), 'bad.jpg');
      const res = await fetch(`${server.url}/predict`, { method: 'POST', body: form });
      assert.equal(res.status, 400);
      assert.match(((await res.json()) as { error: string }).error, /^bad\.jpg: not an image sharp can decode/);
      assert.equal((await postImage(`${server.url}/predict`, bytes[0])).status, 200);
    });
  });

  test('a decompression bomb is refused by its header in under a second, memory bounded', async () => {
    await withServer({ maxPixels: 20_000_000 }, async (server) => {
      for (const side of [30_000, 6_000]) {
        const bomb = decompressionBomb(side);
        const rss = process.memoryUsage().rss;
        const started = performance.now();
        const res = await postImage(`${server.url}/predict`, bomb, 'image/png');
        const ms = performance.now() - started;
        assert.equal(res.status, 400);
        assert.match(((await res.json()) as { error: string }).error, /image too large \(over 20 megapixels\)/);
        assert.ok(ms < 1000, `${side}² bomb took ${ms.toFixed(0)} ms`);
        assert.ok(process.memoryUsage().rss - rss < 100e6, 'memory grew by more than 100 MB');
      }
    });
  });

  test('a body over --max-body gets 413 by its Content-Length, and mid-stream when chunked', async () => {
    await withServer({ maxBody: 10_000 }, async (server) => {
      const big = Buffer.alloc(200_000, 7);
      const res = await postImage(`${server.url}/predict`, big);
      assert.equal(res.status, 413);
      assert.match(((await res.json()) as { error: string }).error, /over the limit of 10\.0 kB \(--max-body\)/);
      const chunked = await rawRequest(server.url, { chunks: Array.from({ length: 50 }, () => Buffer.alloc(4000, 1)), headers: { 'Content-Type': 'image/jpeg', 'Transfer-Encoding': 'chunked' } });
      assert.equal(chunked.status, 413);
      assert.ok(chunked.sent < 50 * 4000, 'the whole body was read');
      assert.equal((await postImage(`${server.url}/predict`, bytes[0])).status, 200);
    });
  });

  test('a full queue answers 503 with Retry-After; the others are answered', async () => {
    await withServer({ maxBatch: 1, maxQueue: 1, maxWaitMs: 0 }, async (server) => {
      const all = await Promise.all([...bytes, ...bytes].map((b) => postImage(`${server.url}/predict`, b).then(async (r) => ({ status: r.status, retry: r.headers.get('retry-after'), body: (await r.json()) as { error?: string } }))));
      const refused = all.filter((a) => a.status === 503);
      assert.ok(refused.length > 0, 'no request was refused');
      for (const r of refused) {
        assert.equal(r.retry, '1');
        assert.match(r.body.error ?? '', /queue is full .*--max-queue 1/);
      }
      assert.ok(all.every((a) => a.status === 200 || a.status === 503));
      assert.ok(all.some((a) => a.status === 200));
    });
  });

  test('a client that disconnects mid-upload frees its slot; a slow request times out (--timeout-ms)', async () => {
    await withServer({ timeoutMs: 400 }, async (server) => {
      const gone = rawRequest(server.url, { chunks: [bytes[0].subarray(0, 100)], headers: { 'Content-Type': 'image/jpeg', 'Content-Length': String(bytes[0].length) }, destroyAfterMs: 50 });
      await gone.catch(() => undefined);
      const deadline = Date.now() + 3000;
      let text = '';
      while (Date.now() < deadline) {
        text = await (await fetch(`${server.url}/metrics`)).text();
        if (sample(text, 'finetune_requests_in_flight') === 0 && text.includes('status="499"')) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(sample(text, 'finetune_requests_in_flight'), 0);
      assert.equal(sample(text, 'finetune_requests_total{path="/predict",status="499"}'), 1);
      const slow = await rawRequest(server.url, { chunks: [bytes[0].subarray(0, 100)], headers: { 'Content-Type': 'image/jpeg', 'Content-Length': String(bytes[0].length) }, holdOpen: true });
      assert.equal(slow.status, 503);
      assert.match(slow.body, /no answer within 400 ms \(--timeout-ms\)/);
      assert.equal((await postImage(`${server.url}/predict`, bytes[0])).status, 200);
    });
  });
});

describe('finetune serve: reload', () => {
  test('POST /reload swaps the model; a broken one is refused and the old one kept', async () => {
    const dir = path.join(tmp, 'swap');
    await cp(modelDir, dir, { recursive: true });
    const server = await serve({ model: dir, port: 0, ...engine });
    try {
      await rm(dir, { recursive: true });
      await cp(twoClassDir, dir, { recursive: true });
      const ok = await fetch(`${server.url}/reload`, { method: 'POST' });
      assert.equal(ok.status, 200);
      assert.deepEqual(((await ok.json()) as { classes: string[] }).classes, ['circle', 'stripes']);
      await writeFile(path.join(dir, 'finetune.json'), '{ broken');
      const refused = await fetch(`${server.url}/reload`, { method: 'POST' });
      assert.equal(refused.status, 500);
      assert.match(((await refused.json()) as { error: string }).error, /finetune\.json is not valid JSON.*; still serving the model loaded before/);
      const health = (await (await fetch(`${server.url}/healthz`)).json()) as { classes: string[] };
      assert.deepEqual(health.classes, ['circle', 'stripes']);
      const answer = (await (await postImage(`${server.url}/predict`, bytes[0])).json()) as { probabilities: Record<string, number> };
      assert.deepEqual(Object.keys(answer.probabilities).sort(), ['circle', 'stripes']);
      assert.equal(server.metrics.answered('/reload', 500), 1);
    } finally {
      await server.close(2000);
    }
  });
});

describe('finetune serve: the process', () => {
  test('SIGHUP with requests in flight: those finish on the old model, later ones use the new; SIGTERM drains and exits 0', async () => {
    const dir = path.join(tmp, 'cli-model');
    await cp(modelDir, dir, { recursive: true });
    const child = spawnServe(['--model', dir, '--max-wait-ms', '600', '--max-batch', '64', '--drain-ms', '5000']);
    try {
      const url = await listeningUrl(child);
      // These wait 600 ms for a batch: the reload happens while they are queued.
      const inFlight = bytes.slice(0, 6).map((b) => postImage(`${url}/predict`, b).then(async (r) => ({ status: r.status, body: (await r.json()) as { probabilities: Record<string, number> } })));
      await new Promise((r) => setTimeout(r, 150));
      await rm(dir, { recursive: true });
      await cp(twoClassDir, dir, { recursive: true });
      child.kill('SIGHUP');
      await waitForOutput(child, /reloaded model cli-model/);
      for (const answer of await Promise.all(inFlight)) {
        assert.equal(answer.status, 200);
        assert.equal(Object.keys(answer.body.probabilities).length, 3, 'an in-flight request was answered by the new model');
      }
      const after = (await (await postImage(`${url}/predict`, bytes[0])).json()) as { probabilities: Record<string, number> };
      assert.deepEqual(Object.keys(after.probabilities).sort(), ['circle', 'stripes']);

      const draining = bytes.slice(0, 4).map((b) => postImage(`${url}/predict`, b).then((r) => r.status));
      await new Promise((r) => setTimeout(r, 150));
      const stopped = performance.now();
      child.kill('SIGTERM');
      assert.deepEqual(await Promise.all(draining), [200, 200, 200, 200]);
      assert.equal(await exitCode(child), 0);
      assert.ok(performance.now() - stopped < 5000, 'did not exit within --drain-ms');
      assert.match(output.get(child) ?? '', /stopping: 4 requests in flight to finish[\s\S]*stopped/);
      await assert.rejects(fetch(`${url}/healthz`));
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('serve --help lists every flag with the library defaults; a bad size is a usage error', async () => {
    const help = spawnServe(['--help']);
    assert.equal(await exitCode(help), 0);
    const text = (output.get(help) ?? '').replace(/\s+/g, ' ');
    for (const flag of ['--model', '--port', '--host', '--max-batch', '--max-wait-ms', '--max-queue', '--max-body', '--max-files', '--max-pixels', '--timeout-ms', '--drain-ms', '--access-log', '--json']) assert.ok(text.includes(flag), `help mentions ${flag}`);
    assert.match(text, /--port <n> .*\(default: 8080\)/);
    assert.match(text, /--host <address> .*\(default: "127\.0\.0\.1"\)/);
    assert.match(text, /--max-body <size> .*\(default: 20MB\)/);
    const bad = spawnServe(['--max-body', '20XB']);
    assert.equal(await exitCode(bad), 2);
    assert.match(errors.get(bad) ?? '', /--max-body needs a size such as 20MB, 512kB or 1000000, got "20XB"/);
  });

  test('a port in use is a usage error naming --port (exit 2)', async () => {
    const blocker = http.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const child = spawnServe(['--model', modelDir, '--port', String(port)]);
      assert.equal(await exitCode(child), 2);
      assert.match(errors.get(child) ?? '', new RegExp(`--port ${port}: address 127\\.0\\.0\\.1:${port} is in use`));
    } finally {
      blocker.close();
    }
  });
});

const output = new WeakMap<ChildProcess, string>();
const closed = new WeakMap<ChildProcess, Promise<number | null>>();
/** The exit code, once the output is all read. */
const exitCode = (child: ChildProcess) => closed.get(child)!;
const errors = new WeakMap<ChildProcess, string>();

function spawnServe(args: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'main.ts'), 'serve', '--port', '0', '--engine', 'onnx', '--backend', 'cpu', ...args], {
    cwd: ROOT,
    env: { ...process.env, FINETUNE_HOME: process.env.FINETUNE_HOME },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  output.set(child, '');
  errors.set(child, '');
  closed.set(child, new Promise((resolve) => child.once('close', (code) => resolve(code))));
  child.stdout!.on('data', (d: Buffer) => output.set(child, output.get(child) + d.toString()));
  child.stderr!.on('data', (d: Buffer) => errors.set(child, errors.get(child) + d.toString()));
  return child;
}

async function waitForOutput(child: ChildProcess, pattern: RegExp, ms = 30_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const m = (output.get(child) ?? '').match(pattern);
    if (m) return m;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${pattern} in the output:\n${output.get(child)}\n${errors.get(child)}`);
}

async function listeningUrl(child: ChildProcess): Promise<string> {
  return (await waitForOutput(child, /listening on (http:\/\/127\.0\.0\.1:\d+)/))[1];
}

/** A request written by hand: chunks sent one by one, optionally left open or cut off. */
function rawRequest(url: string, opts: { chunks: Buffer[]; headers: Record<string, string>; destroyAfterMs?: number; holdOpen?: boolean }): Promise<{ status: number; body: string; sent: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/predict`, { method: 'POST', headers: opts.headers });
    let sent = 0;
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, sent }));
      res.on('error', reject);
    });
    req.on('error', reject);
    (async () => {
      for (const chunk of opts.chunks) {
        if (req.destroyed) return;
        const more = req.write(chunk);
        sent += chunk.byteLength;
        if (!more) await new Promise((r) => req.once('drain', r));
        await new Promise((r) => setImmediate(r));
      }
      if (opts.destroyAfterMs !== undefined) setTimeout(() => (req.destroy(), reject(new Error('cut off'))), opts.destroyAfterMs);
      else if (!opts.holdOpen) req.end();
    })().catch(reject);
  });
}
