/**
 * `npm run bench` — speed figures of finetune measured in one run on this machine, so ratios
 * between them share the machine's state. Prints a table; writes bench/results.json.
 *
 *   npm run bench -- --quick                 fewer runs and images (a smoke test, not figures to quote)
 *   npm run bench -- --only gemm,onnx,cache  parts by name or number (below)
 *
 * Parts: 1 gemm · 2 vgg (= onnx + wasm) · 3 torch · 4 pipeline · 5 predict · 6 rss · 7 cache · 8 head · 9 serve · 10 finetune · 11 audit · 12 onnx-file
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { auditNotes, benchAudit } from './audit.ts';
import type { CacheResult } from './cache.ts';
import type { FineTuneBenchRow } from './finetune.ts';
import { runPart } from './child.ts';
import type { GemmResult } from './gemm.ts';
import type { HeadBenchResult } from './head.ts';
import type { OnnxFileResult } from './onnx-file.ts';
import { benchJpegs, type BenchImages } from './images.ts';
import { DARKNET_DIR, ROOT, sharedHas } from './paths.ts';
import { benchTorch, benchTorchFineTune, type TorchFineTuneResult, type TorchResult } from './peer.ts';
import { buildRows } from './rows.ts';
import { benchServe, type ServeResult } from './serve.ts';
import type { RssResult } from './rss-extract.ts';
import { benchStartup, type StartupResult } from './startup.ts';
import { formatTable } from './table.ts';
import { round } from './timing.ts';
import type { VggOnnxResult } from './vgg-onnx.ts';
import type { VggWasmResult } from './vgg-wasm.ts';

const PART_NAMES: Record<string, string[]> = {
  '1': ['gemm'],
  gemm: ['gemm'],
  '2': ['onnx', 'wasm'],
  vgg: ['onnx', 'wasm'],
  onnx: ['onnx'],
  wasm: ['wasm'],
  '3': ['torch'],
  torch: ['torch'],
  '4': ['pipeline'],
  pipeline: ['pipeline'],
  '5': ['predict'],
  predict: ['predict'],
  '6': ['rss'],
  rss: ['rss'],
  '7': ['cache'],
  cache: ['cache'],
  '8': ['head'],
  head: ['head'],
  '9': ['serve'],
  serve: ['serve'],
  '10': ['finetune'],
  finetune: ['finetune'],
  '11': ['audit'],
  audit: ['audit'],
  '12': ['onnx-file'],
  'onnx-file': ['onnx-file'],
};
const ALL = ['gemm', 'onnx', 'wasm', 'torch', 'pipeline', 'predict', 'rss', 'cache', 'head', 'serve', 'finetune', 'audit', 'onnx-file'];

export interface BenchResults {
  startedAt: string;
  seconds?: number;
  quick: boolean;
  parts: string[];
  machine: { cpus: number; cpuModel: string; node: string; platform: string; loadavgStart: number[]; loadavgEnd?: number[] };
  flopsPerImage?: number;
  images?: string;
  gemm?: GemmResult;
  vggOnnx?: VggOnnxResult;
  vggWasm?: VggWasmResult;
  torch?: TorchResult | string;
  startup?: StartupResult;
  rss?: { small: RssResult; large: RssResult };
  cache?: CacheResult;
  head?: HeadBenchResult;
  serve?: ServeResult;
  finetune?: {
    vgg16?: FineTuneBenchRow;
    mobilenet_v2?: FineTuneBenchRow;
    torch: { vgg16?: TorchFineTuneResult | string; mobilenet_v2?: TorchFineTuneResult | string };
  };
  audit?: Awaited<ReturnType<typeof benchAudit>>;
  onnxFile?: OnnxFileResult;
  errors: Record<string, string>;
}

function options() {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } },
  });
  if (values.help) {
    process.stdout.write(`usage: npm run bench -- [--quick] [--only PART,...]\nparts: 1 gemm, 2 vgg (onnx, wasm), 3 torch, 4 pipeline, 5 predict, 6 rss, 7 cache, 8 head, 9 serve, 10 finetune, 11 audit, 12 onnx-file\n`);
    process.exit(0);
  }
  let parts = ALL;
  if (values.only) {
    const asked = values.only.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
    const unknown = asked.filter((p) => !PART_NAMES[p]);
    if (unknown.length) {
      process.stderr.write(`bench: unknown part ${unknown.join(', ')}; use ${Object.keys(PART_NAMES).join(', ')}\n`);
      process.exit(2);
    }
    const chosen = new Set(asked.flatMap((p) => PART_NAMES[p]));
    parts = ALL.filter((p) => chosen.has(p));
  }
  const quick = values.quick;
  return {
    quick,
    parts,
    runs: quick ? 1 : 3,
    gemmRuns: quick ? 3 : 10,
    onnxBatches: [1, 8, 32],
    wasmBatches: [1, 8],
    pipelineImages: quick ? 100 : 300,
    pipelineBatch: 8,
    rssSizes: quick ? ([200, 800] as const) : ([500, 2000] as const),
    cacheEntries: 25_000,
    // 5 heads × 10 epochs on 25,000 × 2,560 features (issue #14); --quick: 2 epochs.
    head: { rows: 25_000, dim: 2560, heads: 5, epochs: quick ? 2 : 10, batch: 256 },
    // A VGG16 step of 16 images at 224² takes about a minute on 2 cores: one timed step after the warm-up.
    fineTuneRuns: quick ? 1 : { vgg16: 1, mobilenet_v2: 3 },
  };
}

async function main(): Promise<void> {
  const o = options();
  const started = performance.now();
  const results: BenchResults = {
    startedAt: new Date().toISOString(),
    quick: o.quick,
    parts: o.parts,
    machine: { cpus: os.availableParallelism(), cpuModel: os.cpus()[0]?.model ?? '?', node: process.version, platform: `${process.platform}-${process.arch}`, loadavgStart: os.loadavg().map((l) => round(l, 2)) },
    errors: {},
  };
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'finetune-bench-'));
  const has = (p: string) => o.parts.includes(p);
  const attempt = async (part: string, fn: () => Promise<void>) => {
    process.stderr.write(`bench: ${part}\n`);
    try {
      await fn();
    } catch (err) {
      results.errors[part] = (err as Error).message;
      process.stderr.write(`bench: ${part} failed: ${(err as Error).message}\n`);
    }
  };
  let images: BenchImages | undefined;
  const jpegs = async () => (images ??= await benchJpegs(o.pipelineImages, scratch));

  try {
    if (has('gemm')) await attempt('gemm', async () => void (results.gemm = await runPart<GemmResult>('gemm', { n: 2048, runs: o.gemmRuns }, { timeoutS: 300 })));
    if (has('onnx') || has('pipeline')) {
      await attempt(has('onnx') ? 'onnx' : 'pipeline', async () => {
        const imgs = has('pipeline') ? await jpegs() : undefined;
        results.images = imgs?.source;
        const pipeline = imgs && { paths: imgs.paths, source: imgs.source, batch: o.pipelineBatch, runs: o.runs };
        results.vggOnnx = await runPart<VggOnnxResult>('vgg-onnx', { batches: has('onnx') ? o.onnxBatches : [], runs: o.runs, pipeline }, { timeoutS: 1800 });
      });
    }
    if (has('wasm')) await attempt('wasm', async () => void (results.vggWasm = await runPart<VggWasmResult>('vgg-wasm', { batches: o.wasmBatches, runs: o.runs }, { timeoutS: 1200 })));
    if (has('torch')) await attempt('torch', async () => void (results.torch = await benchTorch({ batch: 8, runs: o.runs })));
    results.flopsPerImage = results.vggOnnx?.flopsPerImage ?? results.vggWasm?.flopsPerImage;
    if (!results.flopsPerImage && (has('torch') || has('onnx'))) {
      results.flopsPerImage = (await runPart<{ flopsPerImage: number }>('vgg-flops', {}, { timeoutS: 120 })).flopsPerImage;
    }
    if (has('predict')) {
      await attempt('predict', async () => {
        const { paths } = await jpegs();
        results.startup = await benchStartup({ scratch: path.join(scratch, 'predict'), trainImages: paths.slice(0, 12), predictImage: paths[paths.length - 1], runs: o.runs });
      });
    }
    if (has('rss')) {
      await attempt('rss', async () => {
        const { paths } = await jpegs();
        const backbone = sharedHas(DARKNET_DIR) ? DARKNET_DIR : null;
        const one = (n: number) => runPart<RssResult>('rss-extract', { backbone, files: paths, n, batch: 16 }, { timeoutS: 1200 });
        results.rss = { small: await one(o.rssSizes[0]), large: await one(o.rssSizes[1]) };
      });
    }
    if (has('cache')) {
      await attempt('cache', async () => void (results.cache = await runPart<CacheResult>('cache', { dir: path.join(scratch, 'cache'), entries: o.cacheEntries, dim: 512, runs: o.runs }, { timeoutS: 600 })));
    }
    if (has('head')) {
      // The GEMM ceiling of this same run is what the head's rate is read against.
      if (!results.gemm) await attempt('gemm', async () => void (results.gemm = await runPart<GemmResult>('gemm', { n: 2048, runs: o.gemmRuns }, { timeoutS: 300 })));
      await attempt('head', async () => void (results.head = await runPart<HeadBenchResult>('head', o.head, { timeoutS: 900 })));
    }
    if (has('serve')) await attempt('serve', async () => void (results.serve = await benchServe({ scratch, quick: o.quick })));
    if (has('finetune')) {
      const ft: NonNullable<BenchResults['finetune']> = { torch: {} };
      results.finetune = ft;
      for (const model of ['vgg16', 'mobilenet_v2'] as const) {
        const runs = typeof o.fineTuneRuns === 'number' ? o.fineTuneRuns : o.fineTuneRuns[model];
        await attempt(`finetune ${model}`, async () => void (ft[model] = await runPart<FineTuneBenchRow>('finetune', { model, batch: 16, runs }, { timeoutS: 900 })));
        await attempt(`finetune torch ${model}`, async () => void (ft.torch[model] = await benchTorchFineTune({ model, batch: 16, steps: runs })));
      }
    }
    if (has('audit')) await attempt('audit', async () => void (results.audit = await benchAudit(path.join(scratch, 'audit'))));
    if (has('onnx-file')) {
      await attempt('onnx-file', async () => void (results.onnxFile = await runPart<OnnxFileResult>('onnx-file', { batch: 8, rounds: o.runs, runs: o.quick ? 1 : 3 }, { timeoutS: 600 })));
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }

  results.machine.loadavgEnd = os.loadavg().map((l) => round(l, 2));
  results.seconds = round((performance.now() - started) / 1000, 1);
  const { rows, notes } = buildRows(results);
  notes.push(...auditNotes(results.audit));
  const file = path.join(ROOT, 'bench', 'results.json');
  await writeFile(file, `${JSON.stringify({ ...results, table: rows, notes }, null, 2)}\n`);
  const m = results.machine;
  process.stdout.write(
    `\nfinetune bench${o.quick ? ' (--quick: fewer runs, not figures to quote)' : ''} — ${m.cpus} cores (${m.cpuModel}), Node ${m.node}, ` +
      `load average ${m.loadavgStart[0]} at start, ${m.loadavgEnd?.[0]} at end; ${results.seconds} s\n\n${formatTable(rows)}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n\nwrote ${path.relative(process.cwd(), file)}\n`,
  );
  if (Object.keys(results.errors).length) process.exitCode = 1;
}

await main();
