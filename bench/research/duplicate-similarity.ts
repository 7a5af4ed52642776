/**
 * Which similarity tells planted near-duplicates (5% crop, 80% resize, JPEG 60) from the rest:
 * pooled features whole or average half only, centred or not, plain cosine or CSLS
 * (2·cos − r_a − r_b, r = mean similarity to the 10 nearest). Prints, per variant, the planted
 * pairs found at the threshold that lets through 10 false pairs per 1,000 images.
 *
 *   node --import tsx bench/research/duplicate-similarity.ts [darknet|mobilenet]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadDataset } from '../../src/data/layout.ts';
import { openFusedSource } from '../../src/features/source.ts';
import { centredUnitRows } from '../../src/audit/neighbours.ts';
import { plant } from '../audit.ts';
import { DARKNET_DIR, DOGSCATS_DIR, SHARED } from '../paths.ts';

const net = process.argv[2] ?? 'darknet';
const choice =
  net === 'darknet'
    ? { backbone: DARKNET_DIR }
    : { backbone: 'mobilenet_v2', weights: path.join(SHARED, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5') };
const scratch = await mkdtemp(path.join(os.tmpdir(), 'finetune-dupsim-'));
try {
  const planted = await plant(DOGSCATS_DIR, ['train', 'valid'], path.join(scratch, 'd'), 50);
  const ds = await loadDataset(planted.root);
  const paths = [...ds.train, ...ds.valid].map((s) => s.path);
  const source = await openFusedSource([{ ...choice, backbone: choice.backbone, pooling: 'avgmax' }], { download: false });
  const r = await source.extract(paths);
  await source.close();
  const n = paths.length;
  const index = new Map(paths.map((p, i) => [p, i]));
  const plantedPairs = planted.duplicates.map(([a, b]) => [index.get(a)!, index.get(b)!]);
  const isPlanted = new Set(plantedPairs.map(([a, b]) => `${Math.min(a, b)},${Math.max(a, b)}`));
  const half = r.dim / 2;
  const slice = (from: number, to: number) => {
    const out = new Float32Array(n * (to - from));
    for (let i = 0; i < n; i++) out.set(r.features.subarray(i * r.dim + from, i * r.dim + to), i * (to - from));
    return out;
  };
  const unitOnly = (x: Float32Array, d: number) => {
    const out = new Float32Array(x);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += out[i * d + j] ** 2;
      const k = 1 / Math.sqrt(s || 1);
      for (let j = 0; j < d; j++) out[i * d + j] *= k;
    }
    return out;
  };
  const variants: [string, Float32Array, number][] = [
    ['avgmax centred', centredUnitRows(r.features, n, r.dim), r.dim],
    ['avgmax raw', unitOnly(r.features, r.dim), r.dim],
    ['avg centred', centredUnitRows(slice(0, half), n, half), half],
    ['avg raw', unitOnly(slice(0, half), half), half],
    ['max centred', centredUnitRows(slice(half, r.dim), n, half), half],
  ];
  for (const [name, u, d] of variants) {
    const sims = new Float32Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = i; j < n; j++) {
        let s = 0;
        for (let t = 0; t < d; t++) s += u[i * d + t] * u[j * d + t];
        sims[i * n + j] = s;
        sims[j * n + i] = s;
      }
    const r10 = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const row = Array.from(sims.subarray(i * n, (i + 1) * n)).filter((_, j) => j !== i).sort((a, b) => b - a);
      r10[i] = row.slice(0, 10).reduce((a, b) => a + b, 0) / 10;
    }
    for (const csls of [false, true]) {
      const pairs: { s: number; planted: boolean }[] = [];
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) pairs.push({ s: csls ? 2 * sims[i * n + j] - r10[i] - r10[j] : sims[i * n + j], planted: isPlanted.has(`${i},${j}`) });
      pairs.sort((a, b) => b.s - a.s);
      const allowed = Math.floor((10 * (n - 50)) / 1000);
      let falses = 0;
      let found = 0;
      let threshold = 0;
      for (const p of pairs) {
        if (p.planted) found++;
        else if (++falses > allowed) break;
        threshold = p.s;
      }
      const plantedSims = pairs.filter((p) => p.planted).map((p) => p.s);
      console.log(`${net} ${name}${csls ? ' CSLS' : ''}: ${found}/50 found at threshold ${threshold.toFixed(3)} (≤ ${allowed} false pairs); planted min ${Math.min(...plantedSims).toFixed(3)}`);
    }
  }
} finally {
  await rm(scratch, { recursive: true, force: true });
}
