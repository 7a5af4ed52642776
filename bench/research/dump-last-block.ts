/**
 * Writes what bench/research/finetune-last-block.py needs to fine-tune darknet-tiny's last
 * layers (conv2d_11 … conv2d_15, each with its BatchNormalization) outside tfjs: their input
 * (max_pooling2d_4, 18×18×256 at 288²) for dogscats train/ and valid/ and for the 3000
 * kaggle-flat photos, plain and mirrored (≈ 3.3 GB), and the layers' weights.
 *   node --import tsx bench/research/dump-last-block.ts [OUT_DIR=/tmp/finetune-last-block]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadTfjsFolder } from '../../src/formats/tfjs-folder.ts';
import { loadDataset } from '../../src/data/layout.ts';
import { openFeatureSource } from '../../src/features/source.ts';

const out = process.argv[2] ?? '/tmp/finetune-last-block';
const size = 288;
const shared = path.resolve('..', 'shared');
const darknet = path.join(shared, 'backbones', 'darknet-tiny');
await mkdir(out, { recursive: true });
const dogscats = await loadDataset(path.join(shared, 'data', 'dogscats'));
const flat = await loadDataset(path.join(shared, 'data', 'kaggle-flat'), { valSplit: 0 });
const sets = { train: dogscats.train, valid: dogscats.valid, kflat: [...flat.train, ...flat.valid] };

const { model } = await loadTfjsFolder(darknet);
for (const name of [11, 12, 13, 14, 15].flatMap((n) => [`conv2d_${n}`, `batch_normalization_${n}`])) {
  for (const [i, w] of model.getLayer(name).getWeights().entries()) await writeFile(path.join(out, `${name}.${i}.bin`), w.dataSync() as Float32Array);
}
model.dispose();

const source = await openFeatureSource(darknet, { layer: 'max_pooling2d_4', pooling: 'flatten', resize: 'squash', inputSize: [size, size] }, { cacheDir: false });
for (const [name, samples] of Object.entries(sets)) {
  for (const flip of [false, true]) {
    const r = await source.extract(samples.map((s) => s.path), { variant: flip ? { flip: true } : undefined });
    await writeFile(path.join(out, `${name}.${flip ? 'flip' : 'plain'}.bin`), r.features);
  }
  // kaggle-flat says cat/dog, dogscats cats/dogs: both sort cat first, so the indices agree.
  await writeFile(path.join(out, `${name}.labels.bin`), Int32Array.from(samples.map((s) => s.label)));
}
await source.close();
