import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import * as tf from '../src/tf.ts';
import { exportModel, loadModel, predict, saveModel, train, type ExportFormat, type FinetuneModel, type TrainOptions } from '../src/index.ts';
import { readTfjsFolder } from '../src/formats/tfjs-folder.ts';
import { saveBundle } from '../src/bundle/save.ts';
import { buildFineTuneModel, planFineTune } from '../src/head/fine-tune.ts';
import { decodeImage, loadFile } from '../src/data/image.ts';
import { makeHeldOutImages, makeImageDataset, type HeldOutImage, type ImageDataset } from './fixtures/images.ts';
import { errorLines, jsonLines, runFinetune, show } from './fixtures/models-cli.ts';
import { writeTinyBackbone, type TinyBackboneFiles } from './fixtures/tiny-backbone.ts';

let tmp: string;
let home: string;
let data: ImageDataset;
let heldOut: HeldOutImage[];
let tinyA: TinyBackboneFiles;
let tinyB: TinyBackboneFiles;
const savedHome = process.env.FINETUNE_HOME;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = path.join(ROOT, '..', 'shared');
const DARKNET = path.join(SHARED, 'backbones', 'darknet-tiny');
const DOGSCATS = path.join(SHARED, 'data', 'dogscats');
const engine = { engine: 'tfjs', backend: 'cpu', cacheDir: false } as const;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-export-'));
  home = path.join(tmp, 'home');
  process.env.FINETUNE_HOME = home;
  data = await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 3, perClass: 10, validPerClass: 10, size: 48, seed: 3 });
  heldOut = await makeHeldOutImages(path.join(tmp, 'held-out'), { classes: 3, count: 6, seed: 4 });
  tinyA = await writeTinyBackbone(path.join(tmp, 'backbone-a'), { seed: 5 });
  tinyB = await writeTinyBackbone(path.join(tmp, 'backbone-b'), { seed: 11 });
});
after(async () => {
  if (savedHome === undefined) delete process.env.FINETUNE_HOME;
  else process.env.FINETUNE_HOME = savedHome;
  await rm(tmp, { recursive: true, force: true });
});

async function trainedModel(name: string, opts: TrainOptions): Promise<FinetuneModel> {
  const result = await train(data.root, { ...engine, layer: 'block2_pool', epochs: 6, lr: 0.01, seed: 42, ensemble: 1, ...opts });
  const dir = path.join(tmp, 'models', name);
  await saveModel(dir, result, { remember: false });
  result.head.dispose();
  return loadModel(dir, { backend: 'cpu' });
}

/** The exported model's `pixels`: each image decoded and resized by the reader predict uses. */
async function pixelsOf(paths: string[], size: readonly [number, number], resize: 'squash' | 'crop'): Promise<Float32Array> {
  const [h, w] = size;
  const out = new Float32Array(paths.length * h * w * 3);
  for (const [i, p] of paths.entries()) {
    const { rgb } = await decodeImage(p, (await loadFile(p)).bytes, { size, resize });
    out.set(rgb, i * h * w * 3);
  }
  return out;
}

async function runExported(dir: string, format: ExportFormat, pixels: Float32Array, n: number, [h, w]: readonly [number, number]): Promise<Float32Array> {
  if (format === 'onnx') {
    const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
    try {
      assert.deepEqual(session.inputNames, ['pixels']);
      assert.deepEqual(session.outputNames, ['probabilities']);
      const input = new ort.Tensor('float32', pixels, [n, h, w, 3]);
      const { probabilities } = await session.run({ pixels: input });
      input.dispose();
      const values = new Float32Array(probabilities.data as Float32Array);
      probabilities.dispose();
      return values;
    } finally {
      await session.release();
    }
  }
  const { artifacts } = await readTfjsFolder(path.join(dir, 'model.json'));
  const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  try {
    const out = tf.tidy(() => model.predict(tf.tensor4d(pixels, [n, h, w, 3])) as tf.Tensor);
    const values = out.dataSync() as Float32Array;
    out.dispose();
    return values;
  } finally {
    model.dispose();
  }
}

/** Largest |exported − predict| over all images and classes. */
async function largestDifference(model: FinetuneModel, dir: string, format: ExportFormat): Promise<number> {
  const paths = heldOut.map((h) => h.path);
  const expected = await predict(model, paths, engine);
  const size = model.manifest.backbones[0].inputSize;
  const got = await runExported(dir, format, await pixelsOf(paths, size, model.manifest.backbones[0].resize), paths.length, size);
  const k = model.classes.length;
  let worst = 0;
  expected.forEach((p, i) => {
    assert.ok('probabilities' in p, JSON.stringify(p));
    model.classes.forEach((c, j) => (worst = Math.max(worst, Math.abs(p.probabilities[c] - got[i * k + j]))));
  });
  return worst;
}

describe('export: the exported model gives predict’s probabilities', () => {
  const cases: { name: string; opts: () => TrainOptions; temperatureNot1?: boolean }[] = [
    { name: 'single backbone, linear head, caffe preprocessing, avg pooling', opts: () => ({ backbone: tinyA.folder, hidden: 0, preprocess: 'caffe', pooling: 'avg', calibrate: true }) },
    {
      name: 'fused backbones (tf and torch preprocessing), hidden head of 2 merged members, avgmax pooling, crop resize',
      opts: () => ({ backbone: [tinyA.folder, tinyB.folder], preprocess: ['tf', 'torch'], hidden: 16, ensemble: 2, pooling: 'avgmax', resize: 'crop', calibrate: true }),
    },
  ];
  for (const c of cases) {
    describe(c.name, () => {
      let model: FinetuneModel;
      before(async () => {
        model = await trainedModel(c.name.split(',')[0].replace(/\W+/g, '-'), c.opts());
        assert.notEqual(model.manifest.temperature, 1, 'calibrated: the temperature is part of what is checked');
      });
      after(() => model.head.dispose());
      for (const format of ['onnx', 'tfjs'] as const) {
        test(`${format}: within 1e-4 of predict on every image and class`, async (t) => {
          const out = path.join(tmp, 'exports', `${model.manifest.backbones.length}-${format}`);
          await mkdir(path.dirname(out), { recursive: true });
          const result = await exportModel(model, out, { format });
          assert.equal(result.dir, out);
          assert.deepEqual(JSON.parse(await readFile(path.join(out, 'labels.json'), 'utf8')), model.classes);
          const pre = JSON.parse(await readFile(path.join(out, 'preprocess.json'), 'utf8'));
          assert.deepEqual(pre.input.shape, [null, 32, 32, 3]);
          assert.equal(pre.resize.mode, model.manifest.backbones[0].resize);
          assert.equal(pre.output.temperature, model.manifest.temperature);
          assert.ok(result.files.some((f) => f.name === (format === 'onnx' ? 'model.onnx' : 'model.json') && f.bytes > 0));
          const worst = await largestDifference(model, out, format);
          t.diagnostic(`largest |exported − predict| ${worst.toExponential(2)}, temperature ${model.manifest.temperature}`);
          assert.ok(worst < 1e-4, `largest difference ${worst}`);
        });
      }
    });
  }
});

test('a fine-tuned bundle (head = the unfrozen backbone layers + head): the export runs the bundle’s tuned weights, not the backbone file’s', async (t) => {
  const plain = await trainedModel('before-fine-tune', { backbone: tinyA.folder, hidden: 0, pooling: 'max' });
  const backbone = await tf.loadLayersModel(tf.io.fromMemory((await readTfjsFolder(path.join(tinyA.folder, 'model.json'))).artifacts));
  const dir = path.join(tmp, 'models', 'fine-tuned');
  try {
    // The bundle train --fine-tune 1 writes: features cut at block1_pool, block2_conv1 (here
    // with changed weights, as training would change them) and the pooling inside the head.
    const plan = planFineTune(backbone, 'block2_pool', { layers: 1 });
    const tuned = buildFineTuneModel(plan, 'max', plain.head as tf.Sequential);
    const conv = tuned.getLayer('block2_conv1');
    const changed = tf.tidy(() => conv.getWeights().map((w) => tf.mul(w, 1.5)));
    conv.setWeights(changed);
    tf.dispose(changed);
    const mapSize = plan.mapShape.reduce((a, b) => a * b, 1);
    const record = { ...plain.manifest.backbones[0], layer: plan.cutLayer, pooling: 'flatten' as const, featureSize: mapSize };
    await saveBundle(dir, tuned, { ...plain.manifest, backbones: [record], featureSize: mapSize });
    tuned.dispose();
  } finally {
    backbone.dispose();
  }
  const model = await loadModel(dir, { backend: 'cpu' });
  try {
    const paths = heldOut.map((h) => h.path);
    const before = await predict(plain, paths, engine);
    const after = await predict(model, paths, engine);
    const moved = Math.max(...after.map((p, i) => Math.abs((p as { probability: number }).probability - (before[i] as { probabilities: Record<string, number> }).probabilities[(p as { label: string }).label])));
    assert.ok(moved > 1e-3, `the tuned weights change the predictions (by ${moved})`);
    for (const format of ['onnx', 'tfjs'] as const) {
      const out = path.join(tmp, `fine-tuned-${format}`);
      await exportModel(model, out, { format });
      const worst = await largestDifference(model, out, format);
      t.diagnostic(`${format}: largest |exported − predict| ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-4, `${format}: largest difference ${worst}`);
    }
  } finally {
    model.head.dispose();
    plain.head.dispose();
  }
});

describe('export: the files beside the model', () => {
  let model: FinetuneModel;
  before(async () => {
    model = await trainedModel('files', { backbone: tinyA.folder, hidden: 0, preprocess: 'unit' });
  });
  after(() => model.head.dispose());

  test('ONNX metadata_props carry the class names and preprocessing; README names the input and has the three runtimes', async () => {
    const out = path.join(tmp, 'files-onnx');
    await exportModel(model, out, { format: 'onnx' });
    const proto = onnxProto.onnx.ModelProto.decode(await readFile(path.join(out, 'model.onnx')));
    const meta = Object.fromEntries(proto.metadataProps.map((p) => [p.key, p.value]));
    assert.deepEqual(JSON.parse(meta.classes!), model.classes);
    const pre = JSON.parse(meta.preprocess!);
    assert.deepEqual(pre.input.shape, [null, 32, 32, 3]);
    assert.equal(pre.resize.kernel, 'lanczos3');
    assert.deepEqual(pre.insideModel.map((b: { preprocess: string }) => b.preprocess), ['unit']);
    const readme = await readFile(path.join(out, 'README.md'), 'utf8');
    for (const heading of ['## onnxruntime-node', '## onnxruntime-web', '## @tensorflow/tfjs']) assert.ok(readme.includes(heading), heading);
    assert.match(readme, /float32 \[N, 32, 32, 3\], RGB, values 0–255/);
  });

  test('the README’s onnxruntime-node example runs as written and prints predict’s label and probability', async () => {
    const out = path.join(tmp, 'files-onnx');
    const readme = await readFile(path.join(out, 'README.md'), 'utf8');
    const example = /## onnxruntime-node\n\n```js\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(example, 'an onnxruntime-node code block');
    assert.ok(example.split('\n').length <= 13, 'about ten lines');
    await writeFile(path.join(out, 'classify.mjs'), example);
    // The receiver installs onnxruntime-node and sharp; here they come from this checkout.
    await symlink(path.join(ROOT, 'node_modules'), path.join(out, 'node_modules'));
    const photo = heldOut[0].path;
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(out, 'classify.mjs'), photo]);
    const [label, probability] = stdout.trim().split(' ');
    const [expected] = await predict(model, [photo], engine);
    assert.ok('label' in expected);
    assert.equal(label, expected.label);
    assert.ok(Math.abs(Number(probability) - expected.probability) < 1e-4, `${stdout} vs ${expected.probability}`);
  });

  test('an existing OUT is refused before any work, and a failed export leaves nothing behind', async () => {
    const out = path.join(tmp, 'files-onnx');
    await assert.rejects(exportModel(model, out, { format: 'onnx' }), /already exists: choose a new folder/);
    await assert.rejects(exportModel(model, path.join(tmp, 'no-such-parent', 'x'), {}), /does not exist; create it first/);
    const moved = { ...model, manifest: { ...model.manifest, backbones: model.manifest.backbones.map((b) => ({ ...b, id: path.join(tmp, 'gone') })) } };
    await assert.rejects(exportModel(moved, path.join(tmp, 'never'), {}));
    assert.equal(await stat(path.join(tmp, 'never')).catch(() => null), null);
    assert.deepEqual((await readdir(tmp)).filter((n) => n.includes('.export-')), []);
  });

  test('fused backbones of different input sizes are refused with the reason', async () => {
    const bigger = await writeTinyBackbone(path.join(tmp, 'backbone-c'), { seed: 13, inputSize: 40 });
    const fused = await trainedModel('mixed-sizes', { backbone: [tinyA.folder, bigger.folder], hidden: 0 });
    try {
      await assert.rejects(exportModel(fused, path.join(tmp, 'mixed'), {}), /take different inputs \(32×32 squash, 40×40 squash\)/);
    } finally {
      fused.head.dispose();
    }
  });
});

test('finetune export on the command line: file list, exit 0; its ONNX model agrees with `finetune predict --json`', async () => {
  const modelDir = path.join(tmp, 'cli-model');
  const trained = await runFinetune(['train', data.root, '--backbone', tinyA.folder, '--layer', 'block2_pool', '--out', modelDir, '--epochs', '4', '--ensemble', '1', '--engine', 'tfjs', '--backend', 'cpu', '--no-cache', '-q'], { home, cwd: tmp });
  assert.equal(trained.code, 0, show(trained));
  const out = path.join(tmp, 'cli-export');
  const exported = await runFinetune(['export', out, '--model', modelDir, '--format', 'onnx'], { home, cwd: tmp });
  assert.equal(exported.code, 0, show(exported));
  assert.match(exported.stdout, /^exported .*cli-model to .*cli-export \(onnx, pixels 32×32 → 3 classes\)$/m);
  for (const name of ['model.onnx', 'labels.json', 'preprocess.json', 'README.md']) assert.match(exported.stdout, new RegExp(`^  ${name.replace('.', '\\.')}\\s+[\\d.]+ (B|kB|MB)$`, 'm'));
  const again = await runFinetune(['export', out, '--model', modelDir], { home, cwd: tmp });
  assert.equal(again.code, 2, show(again));
  assert.deepEqual(errorLines(again), [`finetune: error: ${out} already exists: choose a new folder for the export (or remove it)`]);
  const predicted = await runFinetune(['predict', '--json', '--model', modelDir, '--engine', 'tfjs', '--backend', 'cpu', '--no-cache', ...heldOut.map((h) => h.path)], { home, cwd: tmp });
  assert.equal(predicted.code, 0, show(predicted));
  const rows = jsonLines(predicted) as { probabilities: Record<string, number> }[];
  const classes = JSON.parse(await readFile(path.join(out, 'labels.json'), 'utf8')) as string[];
  const got = await runExported(out, 'onnx', await pixelsOf(heldOut.map((h) => h.path), [32, 32], 'squash'), heldOut.length, [32, 32]);
  rows.forEach((r, i) => classes.forEach((c, j) => assert.ok(Math.abs(r.probabilities[c] - got[i * classes.length + j]) < 1e-4, `${heldOut[i].path} ${c}: ${r.probabilities[c]} vs ${got[i * classes.length + j]}`)));
});

test('darknet-tiny (../shared) trained on 24 real photos: ONNX and tfjs exports give predict’s probabilities', { skip: existsSync(DARKNET) && existsSync(DOGSCATS) ? undefined : `${SHARED} not present: the real-network export check is skipped` }, async (t) => {
  const subset = path.join(tmp, 'dogscats-subset');
  for (const [split, n] of [['train', 8], ['valid', 4]] as const) {
    for (const c of ['cats', 'dogs']) {
      await mkdir(path.join(subset, split, c), { recursive: true });
      for (const f of (await readdir(path.join(DOGSCATS, split, c))).sort().slice(0, n)) await symlink(path.join(DOGSCATS, split, c, f), path.join(subset, split, c, f));
    }
  }
  const result = await train(subset, { backbone: DARKNET, cacheDir: false, epochs: 5, seed: 1, ensemble: 2 });
  const dir = path.join(tmp, 'models', 'darknet');
  await saveModel(dir, result, { remember: false });
  result.head.dispose();
  const model = await loadModel(dir);
  try {
    const photos = (await readdir(path.join(DOGSCATS, 'valid', 'dogs'))).sort().slice(-3).map((f) => path.join(DOGSCATS, 'valid', 'dogs', f));
    const expected = await predict(model, photos, { cacheDir: false });
    const pixels = await pixelsOf(photos, [224, 224], 'squash');
    for (const format of ['onnx', 'tfjs'] as const) {
      const out = path.join(tmp, `darknet-${format}`);
      await exportModel(model, out, { format });
      const got = await runExported(out, format, pixels, photos.length, [224, 224]);
      let worst = 0;
      expected.forEach((p, i) => model.classes.forEach((c, j) => (worst = Math.max(worst, Math.abs((p as { probabilities: Record<string, number> }).probabilities[c] - got[i * 2 + j])))));
      t.diagnostic(`${format}: largest |exported − predict| ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-4, `${format}: largest difference ${worst}`);
    }
  } finally {
    model.head.dispose();
  }
});
