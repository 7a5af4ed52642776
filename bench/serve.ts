import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { benchJpegs } from './images.ts';
import { CLI, DARKNET_DIR, ROOT, SHARED, sharedHas } from './paths.ts';
import type { LoadOptions, LoadResult } from './serve-load.ts';
import { spawnTimed } from './spawn-timed.ts';
import { log, round } from './timing.ts';

const MOBILENET_V2_WEIGHTS = path.join(SHARED, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');
/** The bench server's --max-body: small, so that the oversized requests stay cheap to send. */
const BENCH_MAX_BODY = 2_000_000;

export interface ServeRun extends LoadResult {
  /** Server RSS, mean of the samples in the first and the last 5 s of the run, MB. */
  rssFirstMB: number;
  rssLastMB: number;
  rssChange: number;
}

export interface OfflineRun {
  oneS: number;
  allS: number;
  imagesPerS: number;
}

const summary = (r: { one: { exitS: number }; all: { exitS: number }; rate: number }): OfflineRun => ({ oneS: round(r.one.exitS, 2), allS: round(r.all.exitS, 2), imagesPerS: round(r.rate, 1) });

export interface ServeModelResult {
  backbone: string;
  trainS: number;
  /** `predict --json --no-cache` on the same photos: each photo twice, (N − 1) / (t(N) − t(1)) so that start-up is excluded; the mean of a run before and one after serving. */
  offline: { images: number; imagesPerS: number; before: OfflineRun; after: OfflineRun };
  clean: ServeRun & { ratioToOffline: number };
  malformed: ServeRun;
  exitCode: number | null;
}

export interface ServeResult {
  photos: string;
  concurrency: number;
  seconds: number;
  maxBody: number;
  models: Record<string, ServeModelResult | string>;
}

/**
 * `finetune serve` under load, loopback only: for each model, offline predict's rate on the
 * photos, then 32 clients (a second process, bench/serve-load.ts) for `seconds` clean and
 * `seconds` with every tenth request malformed, the server's RSS sampled all along.
 */
export async function benchServe(opts: { scratch: string; quick: boolean }): Promise<ServeResult> {
  const seconds = opts.quick ? 5 : 20;
  const concurrency = 32;
  const count = opts.quick ? 40 : 200;
  const scratch = await mkdtemp(path.join(opts.scratch, 'serve-'));
  const jpegs = await benchJpegs(count + 40, scratch);
  // Alternating cats and dogs: the first 40 train, the rest are served.
  const trainDir = path.join(scratch, 'train-data');
  for (const [i, file] of jpegs.paths.slice(0, 40).entries()) {
    const dir = path.join(trainDir, i % 2 === 0 ? 'cats' : 'dogs');
    await mkdir(dir, { recursive: true });
    await copyFile(file, path.join(dir, `${i}${path.extname(file)}`));
  }
  const photoDir = path.join(scratch, 'photos');
  const oneDir = path.join(scratch, 'one');
  // Offline predict gets each photo twice (under two names, --no-cache), so that its work
  // outweighs the noise in its start-up time, which is subtracted.
  const offlineDir = path.join(scratch, 'offline');
  for (const dir of [photoDir, oneDir, offlineDir]) await mkdir(dir, { recursive: true });
  const photos: string[] = [];
  for (const [i, file] of jpegs.paths.slice(40).entries()) {
    const to = path.join(photoDir, `p${String(i).padStart(4, '0')}.jpg`);
    await copyFile(file, to);
    await copyFile(file, path.join(offlineDir, path.basename(to)));
    await copyFile(file, path.join(offlineDir, `again-${path.basename(to)}`));
    photos.push(to);
  }
  await copyFile(photos[0], path.join(oneDir, path.basename(photos[0])));
  const env: NodeJS.ProcessEnv = { FINETUNE_HOME: path.join(scratch, 'home'), FINETUNE_OFFLINE: '1', FINETUNE_CACHE: path.join(scratch, 'cache'), NO_COLOR: '1' };

  const models: [string, string[]][] = [];
  if (sharedHas(DARKNET_DIR)) models.push(['darknet-tiny', ['--backbone', DARKNET_DIR]]);
  if (sharedHas(MOBILENET_V2_WEIGHTS)) {
    // Where the registry looks, so that train, predict and serve all find them.
    await mkdir(path.join(env.FINETUNE_HOME!, 'models'), { recursive: true });
    await copyFile(MOBILENET_V2_WEIGHTS, path.join(env.FINETUNE_HOME!, 'models', path.basename(MOBILENET_V2_WEIGHTS)));
    models.push(['mobilenet_v2', ['--backbone', 'mobilenet_v2']]);
  }
  // BENCH_SERVE_MODELS=darknet-tiny runs one of them (a quicker look while tuning).
  const wanted = process.env.BENCH_SERVE_MODELS?.split(',');
  if (wanted) models.splice(0, models.length, ...models.filter(([name]) => wanted.includes(name)));
  const result: ServeResult = { photos: `${jpegs.source.replace(/\(\d+ /, `(${photos.length} `)}`, concurrency, seconds, maxBody: BENCH_MAX_BODY, models: {} };
  if (models.length === 0) {
    result.models.none = '../shared/backbones absent: the serve bench needs darknet-tiny or mobilenet_v2 weights';
    return result;
  }
  for (const [name, backbone] of models) {
    try {
      result.models[name] = await benchModel(name, backbone, { scratch, env, trainDir, photoDir, oneDir, offlineDir, photos, seconds, concurrency });
    } catch (err) {
      result.models[name] = (err as Error).message;
      log(`serve ${name} failed: ${(err as Error).message}`);
    }
  }
  await rm(scratch, { recursive: true, force: true });
  return result;
}

interface ModelBenchContext {
  scratch: string;
  env: NodeJS.ProcessEnv;
  trainDir: string;
  photoDir: string;
  oneDir: string;
  offlineDir: string;
  photos: string[];
  seconds: number;
  concurrency: number;
}

async function benchModel(name: string, backbone: string[], c: ModelBenchContext): Promise<ServeModelResult> {
  const model = path.join(c.scratch, `model-${name}`);
  const train = await spawnTimed(process.execPath, [CLI, 'train', c.trainDir, ...backbone, '--epochs', '3', '--ensemble', '1', '--out', model, '--quiet'], { cwd: ROOT, env: c.env, timeoutS: 300 });
  if (train.code !== 0) throw new Error(`train ${name} exited with ${train.code}: ${train.stderr.trim().split('\n').pop()}`);
  log(`serve: trained a ${name} model on 40 photos in ${train.exitS.toFixed(1)} s`);

  const predict = async (dir: string) => {
    const r = await spawnTimed(process.execPath, [CLI, 'predict', dir, '--model', model, '--json', '--no-cache', '--quiet'], { cwd: ROOT, env: c.env, timeoutS: 300 });
    if (r.code !== 0) throw new Error(`predict ${name} exited with ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
    return r;
  };
  // Start-up excluded: the time for all photos less the time for one.
  const offline = async () => {
    const one = await predict(c.oneDir);
    const all = await predict(c.offlineDir);
    const rate = (2 * c.photos.length - 1) / (all.exitS - one.exitS);
    log(`serve: offline predict ${name}: ${2 * c.photos.length} photos in ${all.exitS.toFixed(1)} s, 1 in ${one.exitS.toFixed(1)} s → ${rate.toFixed(1)} images/s`);
    return { one, all, rate };
  };
  const before = await offline();
  const expected: LoadOptions['expected'] = {};
  for (const line of before.all.stdout.trim().split('\n')) {
    const p = JSON.parse(line) as { path: string; label: string; probability: number };
    if (path.basename(p.path).startsWith('again-')) continue;
    expected[path.join(c.photoDir, path.basename(p.path))] = { label: p.label, probability: p.probability };
  }

  const server = spawn(process.execPath, [CLI, 'serve', '--model', model, '--port', '0', '--json', '--max-body', String(BENCH_MAX_BODY), '--quiet'], { cwd: ROOT, env: { ...process.env, ...c.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  server.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  try {
    const url = await listening(server, () => stderr);
    const load = (malformedEvery: number) => runLoad({ url, files: c.photos, expected, seconds: c.seconds, concurrency: c.concurrency, malformedEvery, maxBody: BENCH_MAX_BODY }, server.pid!, c.scratch);
    const clean = await load(0);
    log(`serve ${name}: ${clean.good.imagesPerS.toFixed(1)} images/s, p50 ${clean.good.p50Ms.toFixed(0)} ms, p99 ${clean.good.p99Ms.toFixed(0)} ms, ${clean.errors} errors, ${clean.good.wrong} wrong, RSS ${clean.rssFirstMB} → ${clean.rssLastMB} MB`);
    const malformed = await load(10);
    log(`serve ${name} with 10% malformed: ${malformed.malformed.answered4xx}/${malformed.malformed.sent} malformed answered 4xx, ${malformed.good.correct}/${malformed.good.sent} good correct, ${malformed.errors} errors, RSS ${malformed.rssFirstMB} → ${malformed.rssLastMB} MB`);
    server.kill('SIGTERM');
    const exitCode = await new Promise<number | null>((resolve) => (server.exitCode !== null ? resolve(server.exitCode) : server.once('exit', (code) => resolve(code))));
    // The machine is shared and its speed drifts: offline is measured before and after serving, and the mean taken.
    const after = await offline();
    const offlineRate = (before.rate + after.rate) / 2;
    log(`serve ${name}: ${((clean.good.imagesPerS / offlineRate) * 100).toFixed(0)}% of offline predict's ${offlineRate.toFixed(1)} images/s (${before.rate.toFixed(1)} before, ${after.rate.toFixed(1)} after)`);
    return {
      backbone: name,
      trainS: round(train.exitS, 1),
      offline: { images: 2 * c.photos.length, imagesPerS: round(offlineRate, 1), before: summary(before), after: summary(after) },
      clean: { ...clean, ratioToOffline: round(clean.good.imagesPerS / offlineRate, 3) },
      malformed,
      exitCode,
    };
  } finally {
    if (server.exitCode === null) server.kill('SIGKILL');
  }
}

function listening(server: ChildProcess, stderr: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start in 120 s: ${stderr()}`)), 120_000);
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"event":"listening","url":"([^"]+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr().trim().split('\n').pop()}`)));
  });
}

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

async function runLoad(options: LoadOptions, serverPid: number, scratch: string): Promise<ServeRun> {
  const dir = await mkdtemp(path.join(scratch, 'load-'));
  const optionsFile = path.join(dir, 'options.json');
  const resultFile = path.join(dir, 'result.json');
  await writeFile(optionsFile, JSON.stringify(options));
  const samples: { t: number; mb: number }[] = [];
  const started = performance.now();
  const sampler = setInterval(() => samples.push({ t: (performance.now() - started) / 1000, mb: rssMB(serverPid) }), 250);
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'serve-load.ts'), optionsFile, resultFile], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) throw new Error(`the load generator exited with ${code}: ${stderr.trim().split('\n').pop()}`);
  } finally {
    clearInterval(sampler);
  }
  const load = JSON.parse(await readFile(resultFile, 'utf8')) as LoadResult;
  // The load generator's own start-up is in the samples: the run is its last `seconds`.
  const end = samples.at(-1)?.t ?? 0;
  const runStart = end - options.seconds;
  const mean = (from: number, to: number) => {
    const s = samples.filter((x) => x.t >= from && x.t < to).map((x) => x.mb);
    return s.length ? s.reduce((a, b) => a + b, 0) / s.length : 0;
  };
  const rssFirstMB = round(mean(runStart, runStart + 5), 1);
  const rssLastMB = round(mean(end - 5, end + 1), 1);
  return { ...load, rssFirstMB, rssLastMB, rssChange: round(rssFirstMB ? rssLastMB / rssFirstMB - 1 : 0, 3) };
}
