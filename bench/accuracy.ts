/**
 * npm run bench:accuracy — recipe → accuracy, log loss, ECE, time on ../shared/data/dogscats
 * (train on train/, measure on valid/), each recipe from a clean feature cache so its time is
 * the honest first-run time. Writes bench/accuracy.json. Not a test: minutes, real photos.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { evaluate } from '../src/evaluate.ts';
import { saveModel } from '../src/model-io.ts';
import { loadModel } from '../src/predict.ts';
import { train, type TrainOptions } from '../src/train.ts';

const shared = path.resolve('..', 'shared');
const data = path.join(shared, 'data', 'dogscats');
const darknet = path.join(shared, 'backbones', 'darknet-tiny');
const mobilenet = path.join(shared, 'backbones', 'keras-mobilenet-0.25', 'mobilenet_v1_0.25_224.h5');

interface Recipe {
  name: string;
  options: TrainOptions;
  tta?: boolean;
}

const RECIPES: Recipe[] = [
  { name: 'darknet-tiny, defaults', options: { backbone: darknet } },
  { name: 'darknet-tiny, TTA flip', options: { backbone: darknet }, tta: true },
  { name: 'darknet-tiny, --augment flip + TTA', options: { backbone: darknet, augment: ['flip'] }, tta: true },
  { name: 'darknet-tiny @320, TTA', options: { backbone: darknet, inputSize: [320, 320] }, tta: true },
  { name: 'darknet-tiny @320, --augment flip,crop ×2 + TTA', options: { backbone: darknet, inputSize: [320, 320], augment: ['flip', 'crop'], augmentCopies: 2 }, tta: true },
  { name: 'mobilenet-0.25, defaults', options: { backbone: mobilenet, layer: 'conv_pw_13_relu' } },
  { name: 'fused darknet + mobilenet-0.25', options: { backbone: [darknet, mobilenet], layer: [undefined, 'conv_pw_13_relu'] } },
  { name: 'fused, --augment flip + TTA', options: { backbone: [darknet, mobilenet], layer: [undefined, 'conv_pw_13_relu'], augment: ['flip'] }, tta: true },
  { name: 'fused @320/224, --augment flip + TTA', options: { backbone: [darknet, mobilenet], layer: [undefined, 'conv_pw_13_relu'], inputSize: [[320, 320], undefined], augment: ['flip'] }, tta: true },
];

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1].split(',').map(Number) : undefined;
const rows: Record<string, unknown>[] = [];
const work = await mkdtemp(path.join(os.tmpdir(), 'finetune-accuracy-'));
try {
  for (const [i, recipe] of RECIPES.entries()) {
    if (only && !only.includes(i + 1)) continue;
    const cacheDir = path.join(work, `cache-${i}`);
    const started = performance.now();
    const result = await train(data, { ...recipe.options, cacheDir });
    const out = path.join(work, `model-${i}`);
    await saveModel(out, result, { remember: false });
    result.head.dispose();
    const model = await loadModel(out);
    const scored = await evaluate(model, data, { split: 'valid', tta: recipe.tta, cacheDir });
    model.head.dispose();
    const seconds = (performance.now() - started) / 1000;
    const e = scored.evaluation;
    const row = { recipe: recipe.name, accuracy: e.accuracy, logLoss: e.logLoss, ece: e.ece, temperature: model.manifest.temperature, seconds, valid: e.count };
    rows.push(row);
    process.stdout.write(`${String(i + 1).padStart(2)}. ${recipe.name.padEnd(40)} ${(e.accuracy * 100).toFixed(2).padStart(6)}%  log loss ${e.logLoss.toFixed(4)}  ECE ${e.ece.toFixed(4)}  ${seconds.toFixed(0).padStart(4)} s\n`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
await writeFile(path.join('bench', 'accuracy.json'), JSON.stringify({ date: new Date().toISOString(), data, rows }, null, 2) + '\n');
