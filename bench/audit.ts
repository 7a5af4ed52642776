/**
 * `npm run bench -- --only audit`: label noise and near-duplicates planted in copies (symbolic
 * links in a temporary folder) of ../shared/data/dogscats and eurosat, audited with darknet-tiny
 * and mobilenet_v2 features. The copies link the same bytes, so a warm feature cache serves them.
 *
 *   node --import tsx bench/audit.ts [--only dogscats-darknet,eurosat-mobilenet,…] [--epochs N]
 */
import { mkdir, readdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { audit, type AuditResult } from '../src/audit/audit.ts';
import { labelQuality, LABEL_SCORES } from '../src/audit/label-issues.ts';
import { createRng, shuffleInPlace } from '../src/data/random.ts';
import { DARKNET_DIR, DOGSCATS_DIR, SHARED, sharedHas } from './paths.ts';

const EUROSAT_DIR = path.join(SHARED, 'data', 'eurosat');
const MOBILENET_V2_WEIGHTS = path.join(SHARED, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');
const FLIP_SHARE = 0.05;
const PLANTED_DUPLICATES = 50;
const SEED = 2024;

const BACKBONES = {
  darknet: { backbone: DARKNET_DIR, target: { dogscats: 0.8, eurosat: 0.7 } },
  mobilenet: { backbone: 'mobilenet_v2', weights: MOBILENET_V2_WEIGHTS, target: { dogscats: 0.9, eurosat: 0.8 } },
} as const;

interface Planted {
  root: string;
  /** Paths (in the copy) whose folder says another class than the original. */
  flipped: Set<string>;
  /** [original, near-duplicate] paths in the copy. */
  duplicates: [string, string][];
}

async function listClassFolder(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort();
}

/**
 * The data set as symbolic links under `root` with 5% of the images linked from another class's
 * folder (seeded; a random other class), and `duplicates` re-encoded copies of random images:
 * 5% cropped off, resized to 80%, JPEG quality 60, put in train or valid at random.
 */
export async function plant(source: string, splits: string[], root: string, duplicates: number): Promise<Planted> {
  const rng = createRng(SEED);
  const classes = (await readdir(path.join(source, splits[0]))).sort();
  const files: { split: string; label: number; name: string }[] = [];
  for (const split of splits) for (const [label, c] of classes.entries()) for (const name of await listClassFolder(path.join(source, split, c))) files.push({ split, label, name });
  const order = shuffleInPlace(files.map((_, i) => i), rng);
  const flips = new Set(order.slice(0, Math.round(files.length * FLIP_SHARE)));
  const copies = order.slice(flips.size, flips.size + duplicates);
  const planted: Planted = { root, flipped: new Set(), duplicates: [] };
  for (const split of splits) for (const c of classes) await mkdir(path.join(root, split, c), { recursive: true });
  for (const [i, f] of files.entries()) {
    let label = f.label;
    if (flips.has(i)) label = (f.label + 1 + Math.floor(rng() * (classes.length - 1))) % classes.length;
    const target = path.join(root, f.split, classes[label], f.name);
    await symlink(path.join(source, f.split, classes[f.label], f.name), target);
    if (label !== f.label) planted.flipped.add(target);
  }
  for (const i of copies) {
    const f = files[i];
    const original = path.join(source, f.split, classes[f.label], f.name);
    const split = splits.length > 1 && rng() < 0.5 ? splits[1 - splits.indexOf(f.split)] : f.split;
    const copy = path.join(root, split, classes[f.label], `near-dup-${f.name.replace(/\.\w+$/, '')}.jpg`);
    const image = sharp(original).rotate();
    const { width = 0, height = 0 } = await sharp(original).rotate().toBuffer({ resolveWithObject: true }).then((r) => r.info);
    const [cw, ch] = [Math.round(width * 0.95), Math.round(height * 0.95)];
    const left = Math.floor(rng() * (width - cw + 1));
    const top = Math.floor(rng() * (height - ch + 1));
    await image
      .extract({ left, top, width: cw, height: ch })
      .resize(Math.max(1, Math.round(width * 0.8)), Math.max(1, Math.round(height * 0.8)), { fit: 'fill' })
      .jpeg({ quality: 60 })
      .toFile(copy);
    // Sources come after the flipped images in the shuffled order: never flipped themselves.
    planted.duplicates.push([path.join(root, f.split, classes[f.label], f.name), copy]);
  }
  return planted;
}

function recallAtTop(result: AuditResult, flipped: Set<string>, order: number[]): number {
  const top = order.slice(0, 2 * flipped.size);
  return top.filter((i) => flipped.has(result.images[i].path)).length / Math.max(1, flipped.size);
}

function labelFigures(result: AuditResult, planted: Planted) {
  const k = result.classes.length;
  const labels = result.images.map((img) => result.classes.indexOf(img.label));
  const byMethod = Object.fromEntries(
    LABEL_SCORES.map((method) => {
      const q = labels.map((y, i) => labelQuality(result.scores.outOfFold.subarray(i * k, (i + 1) * k), y, method));
      const order = q.map((_, i) => i).sort((a, b) => q[a] - q[b]);
      return [method, recallAtTop(result, planted.flipped, order)];
    }),
  );
  const flaggedHits = result.labelIssues.filter((l) => planted.flipped.has(l.path)).length;
  return {
    flipped: planted.flipped.size,
    recallTop2x: byMethod,
    flagged: result.labelIssues.length,
    flaggedPrecision: flaggedHits / Math.max(1, result.labelIssues.length),
    flaggedRecall: flaggedHits / Math.max(1, planted.flipped.size),
  };
}

function duplicateFigures(result: AuditResult, planted: Planted, thresholds: number[]) {
  const key = (a: string, b: string) => (a < b ? `${a}\n${b}` : `${b}\n${a}`);
  const plantedKeys = new Set(planted.duplicates.map(([a, b]) => key(a, b)));
  const sims = new Map(result.duplicates.map((d) => [key(d.a, d.b), d]));
  const plantedSims = planted.duplicates.map(([a, b]) => sims.get(key(a, b))?.score ?? -1).sort((a, b) => a - b);
  const originals = result.images.length - planted.duplicates.length;
  const at = thresholds.map((t) => {
    const found = plantedSims.filter((s) => s >= t).length;
    const others = result.duplicates.filter((d) => d.score >= t && !plantedKeys.has(key(d.a, d.b)));
    return { threshold: t, found: found / planted.duplicates.length, falsePairs: others.length, falsePer1000: (others.length / originals) * 1000, exact: others.filter((d) => d.exact).length };
  });
  return { planted: planted.duplicates.length, plantedScore: { min: plantedSims[0], p5: plantedSims[Math.floor(plantedSims.length * 0.05)], median: plantedSims[Math.floor(plantedSims.length / 2)] }, at };
}

async function run(name: string, data: 'dogscats' | 'eurosat', net: keyof typeof BACKBONES, scratch: string, epochs?: number) {
  const b = BACKBONES[net];
  const source = data === 'dogscats' ? DOGSCATS_DIR : EUROSAT_DIR;
  const root = path.join(scratch, name);
  const planted = data === 'dogscats' ? await plant(source, ['train', 'valid'], root, PLANTED_DUPLICATES) : await plant(path.dirname(source), [path.basename(source)], root, 0);
  const dataDir = data === 'dogscats' ? root : path.join(root, 'eurosat');
  const cpu = process.cpuUsage();
  const started = performance.now();
  const result = await audit(dataDir, { backbone: b.backbone, weights: 'weights' in b ? b.weights : undefined, download: false, duplicateThreshold: 0.15, seed: 42, epochs });
  const wall = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const labels = labelFigures(result, planted);
  const figures = {
    name,
    images: result.counts.images,
    backbone: result.settings.backbone,
    labels: { ...labels, target: b.target[data], met: labels.recallTop2x[result.settings.labelScore] >= b.target[data] },
    duplicates: data === 'dogscats' ? duplicateFigures(result, planted, [0.25, 0.3, 0.35, 0.4, 0.45, 0.5]) : undefined,
    seconds: { wall, cpu: (used.user + used.system) / 1e6, ...result.timing, cacheHits: result.cache.hits, cacheMisses: result.cache.misses },
  };
  process.stderr.write(`${JSON.stringify(figures)}\n`);
  return figures;
}

export const AUDIT_RUNS = ['dogscats-darknet', 'dogscats-mobilenet', 'eurosat-darknet', 'eurosat-mobilenet'] as const;

export async function benchAudit(scratch: string, only: readonly string[] = AUDIT_RUNS, epochs?: number) {
  if (!sharedHas(DOGSCATS_DIR) || !sharedHas(EUROSAT_DIR) || !sharedHas(DARKNET_DIR)) return `skipped: ${SHARED} lacks data/dogscats, data/eurosat or backbones/darknet-tiny`;
  const out = [];
  for (const name of only) {
    const [data, net] = name.split('-') as ['dogscats' | 'eurosat', keyof typeof BACKBONES];
    if (net === 'mobilenet' && !sharedHas(MOBILENET_V2_WEIGHTS)) continue;
    out.push(await run(name, data, net, scratch, epochs));
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.dirname, 'audit.ts')) {
  const { values } = parseArgs({ options: { only: { type: 'string' }, epochs: { type: 'string' } } });
  const { mkdtemp, rm } = await import('node:fs/promises');
  const os = await import('node:os');
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'finetune-bench-audit-'));
  try {
    const figures = await benchAudit(scratch, values.only ? values.only.split(',') : AUDIT_RUNS, values.epochs ? Number(values.epochs) : undefined);
    process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

type AuditFigures = Awaited<ReturnType<typeof run>>;

/** One line per run for the bench's footnotes. */
export function auditNotes(figures: AuditFigures[] | string | undefined): string[] {
  if (figures === undefined) return [];
  if (typeof figures === 'string') return [`audit ${figures}`];
  return figures.map((f) => {
    const l = f.labels;
    const recall = Object.entries(l.recallTop2x).map(([m, r]) => `${m} ${(r * 100).toFixed(0)}%`).join(', ');
    const at = f.duplicates?.at.find((a) => a.threshold === 0.35);
    const dup = at ? `; planted near-duplicates found ${(at.found * 100).toFixed(0)}% at score ≥ 0.35, ${at.falsePer1000.toFixed(1)} false pairs per 1,000 images` : '';
    return `audit ${f.name} (${f.images} images): ${l.flipped} flipped labels, ${recall} of them in the top 2×${l.flipped} (target ${l.target * 100}%${l.met ? ', met' : ', MISSED'})${dup}; ${f.seconds.wall.toFixed(1)} s wall, ${f.seconds.cpu.toFixed(1)} s CPU from a warm cache`;
  });
}
