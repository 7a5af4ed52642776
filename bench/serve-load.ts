/**
 * The load generator of `npm run bench -- --only serve`, in a process of its own (so the
 * server's figures are not its own client's): `concurrency` clients, each posting one photo
 * after another over keep-alive connections for `seconds`, every answer checked against what
 * offline `predict --json` said for that photo. With `malformedEvery` = 10, every tenth request
 * is garbage, a truncated photo or a body over --max-body, in turn.
 *
 *   node --import tsx bench/serve-load.ts OPTIONS.json RESULT.json
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Pool } from 'undici';

export interface LoadOptions {
  url: string;
  files: string[];
  /** Offline predict's answer per file. */
  expected: Record<string, { label: string; probability: number }>;
  seconds: number;
  concurrency: number;
  malformedEvery: number;
  maxBody: number;
}

export interface LoadResult {
  seconds: number;
  requests: number;
  good: { sent: number; correct: number; wrong: number; imagesPerS: number; p50Ms: number; p99Ms: number };
  malformed: { sent: number; answered4xx: number; byKind: Record<string, Record<string, number>> };
  /** Transport failures and answers with an unexpected status. */
  errors: number;
  errorSamples: string[];
  /** Good answers completed per second of the run, one entry a second. */
  perSecond: number[];
}

const KINDS = ['garbage', 'truncated', 'oversized'] as const;

async function main(): Promise<void> {
  const [optionsFile, resultFile] = process.argv.slice(2);
  const o = JSON.parse(readFileSync(optionsFile, 'utf8')) as LoadOptions;
  const photos = o.files.map((f) => ({ file: f, bytes: readFileSync(f) }));
  let seed = 99;
  const noise = (n: number) => Buffer.from(Array.from({ length: n }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24)));
  const bad: Record<(typeof KINDS)[number], Buffer> = {
    garbage: noise(20_000),
    truncated: photos[0].bytes.subarray(0, photos[0].bytes.length >> 1),
    oversized: noise(o.maxBody + 100_000),
  };
  const pool = new Pool(o.url, { connections: o.concurrency, pipelining: 1 });
  const latencies: number[] = [];
  const result: LoadResult = {
    seconds: o.seconds,
    requests: 0,
    good: { sent: 0, correct: 0, wrong: 0, imagesPerS: 0, p50Ms: 0, p99Ms: 0 },
    malformed: { sent: 0, answered4xx: 0, byKind: {} },
    errors: 0,
    errorSamples: [],
    perSecond: [],
  };
  const fail = (why: string) => {
    result.errors++;
    if (result.errorSamples.length < 10) result.errorSamples.push(why);
  };
  const started = performance.now();
  const end = started + o.seconds * 1000;
  let next = 0;
  let malformedNext = 0;

  async function client(): Promise<void> {
    while (performance.now() < end) {
      const n = next++;
      result.requests++;
      const malformed = o.malformedEvery > 0 && n % o.malformedEvery === o.malformedEvery - 1;
      if (malformed) {
        const kind = KINDS[malformedNext++ % KINDS.length];
        result.malformed.sent++;
        try {
          const res = await pool.request({ path: '/predict', method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: bad[kind] });
          await res.body.text();
          const counts = (result.malformed.byKind[kind] ??= {});
          counts[res.statusCode] = (counts[res.statusCode] ?? 0) + 1;
          if (res.statusCode >= 400 && res.statusCode < 500) result.malformed.answered4xx++;
          else fail(`${kind}: status ${res.statusCode}`);
        } catch (err) {
          fail(`${kind}: ${(err as Error).message}`);
        }
        continue;
      }
      const photo = photos[n % photos.length];
      result.good.sent++;
      const t = performance.now();
      try {
        const res = await pool.request({ path: '/predict', method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: photo.bytes });
        const text = await res.body.text();
        if (res.statusCode !== 200) {
          fail(`status ${res.statusCode}: ${text.slice(0, 200)}`);
          continue;
        }
        const done = performance.now();
        latencies.push(done - t);
        const second = Math.floor((done - started) / 1000);
        if (second < o.seconds) result.perSecond[second] = (result.perSecond[second] ?? 0) + 1;
        const answer = JSON.parse(text) as { label: string; probability: number };
        const want = o.expected[photo.file];
        if (answer.label === want.label && Math.abs(answer.probability - want.probability) < 1e-3) result.good.correct++;
        else {
          result.good.wrong++;
          if (result.errorSamples.length < 10) result.errorSamples.push(`${photo.file}: ${answer.label} ${answer.probability} vs ${want.label} ${want.probability}`);
        }
      } catch (err) {
        fail((err as Error).message);
      }
    }
  }

  await Promise.all(Array.from({ length: o.concurrency }, () => client()));
  const elapsed = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : 0);
  result.good.imagesPerS = latencies.length / elapsed;
  result.good.p50Ms = at(0.5);
  result.good.p99Ms = at(0.99);
  result.perSecond = Array.from({ length: o.seconds }, (_, i) => result.perSecond[i] ?? 0);
  writeFileSync(resultFile, JSON.stringify(result));
}

await main();
