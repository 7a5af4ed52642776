/**
 * A short whole-network fine-tuning run on ../shared/data/eurosat with mobilenet_v2's real
 * weights, on the library's onnxruntime trainer (no CLI wiring yet): the seeded 20% split as
 * `train` makes it, images at --size (EuroSAT tiles are 64×64), a linear head from zero.
 *
 *   node --import tsx bench/research/eurosat-finetune.ts [--size 64] [--epochs 3] [--limit N]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadBackbone } from '../../src/backbones/resolve.ts';
import { loadDataset } from '../../src/data/layout.ts';
import { fileImages } from '../../src/fine-tune/file-images.ts';
import { fineTuneWholeNetwork } from '../../src/fine-tune/whole-network.ts';
import { SHARED } from '../paths.ts';

const { values } = parseArgs({ options: { size: { type: 'string', default: '64' }, epochs: { type: 'string', default: '3' }, limit: { type: 'string' }, lr: { type: 'string', default: '1e-3' }, batch: { type: 'string', default: '32' } } });
const size = Number(values.size);
const started = performance.now();
const dataset = await loadDataset(path.join(SHARED, 'data', 'eurosat'), { valSplit: 0.2, seed: 42 });
const limit = values.limit ? Number(values.limit) : Infinity;
const trainSamples = dataset.train.slice(0, limit);
const weights = path.join(SHARED, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');
const backbone = await loadBackbone('mobilenet_v2', { weights, inputSize: [size, size], download: false });
const opts = { size: [size, size] as const, preprocess: backbone.preprocess, flip: true, seed: 42 };
const train = await fileImages(trainSamples.map((s) => s.path), trainSamples.map((s) => s.label), opts);
const val = await fileImages(dataset.valid.map((s) => s.path), dataset.valid.map((s) => s.label), opts);
const classes = dataset.classes.length;
process.stderr.write(`${train.count} train, ${val.count} valid images decoded at ${size}² in ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
let last = performance.now();
const result = await fineTuneWholeNetwork(backbone.model, {
  layer: backbone.layer,
  pooling: 'avg',
  layers: 'all',
  head: [{ kernel: new Float32Array(1280 * classes), bias: new Float32Array(classes), relu: false }],
  train,
  val,
  epochs: Number(values.epochs),
  lr: Number(values.lr),
  batchSize: Number(values.batch),
  seed: 42,
  onProgress: (e) => {
    if (e.status === 'progress' && performance.now() - last > 30_000) {
      last = performance.now();
      process.stderr.write(`step ${e.current}/${e.total} epoch ${e.info?.epoch} loss ${Number(e.info?.loss).toFixed(3)} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
    }
  },
});
const { backboneOnnx, head, ...summary } = result;
void head;
process.stdout.write(`${JSON.stringify({ size, train: train.count, valid: val.count, wallSeconds: Math.round((performance.now() - started) / 1000), onnxBytes: backboneOnnx.length, ...summary })}\n`);
