/**
 * `finetune export` of bundles whose backbone exists only as an ONNX graph: a fine-tuned
 * backbone.onnx (train --fine-tune all) and an ONNX file given as --backbone. The one exported
 * graph (pixels → preprocessing → that graph → head → temperature → softmax) must give
 * predict's probabilities; tfjs, which has no such network, is refused in one line.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { exportModel, loadModel, predict, saveModel, train, type FinetuneModel, type TrainOptions } from '../src/index.ts';
import { decodeImage, loadFile } from '../src/data/image.ts';
import { makeImageDataset } from './fixtures/images.ts';
import { errorLines, jsonLines, runFinetune, show } from './fixtures/models-cli.ts';
import { writeConvnet } from './fixtures/onnx-graphs.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

let tmp: string;
let home: string;
let data: string;
let photos: string[];
let tiny16: string;
let tiny8: string;
let nchw: string;
let nhwcBatchOne: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-export-graph-'));
  home = path.join(tmp, 'home');
  // 32 validation images: enough for train to fit a temperature, so it is part of what is checked.
  data = (await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 2, perClass: 12, validPerClass: 16, size: 24, format: 'png', seed: 9 })).root;
  const valid = path.join(data, 'valid');
  photos = (await Promise.all((await readdir(valid)).map(async (c) => (await readdir(path.join(valid, c))).sort().slice(0, 3).map((f) => path.join(valid, c, f))))).flat();
  tiny16 = (await writeTinyBackbone(path.join(tmp, 'tiny16'), { inputSize: 16, seed: 3 })).folder;
  tiny8 = (await writeTinyBackbone(path.join(tmp, 'tiny8'), { inputSize: 8, seed: 4 })).folder;
  nchw = path.join(tmp, 'nchw', 'model.onnx');
  nhwcBatchOne = path.join(tmp, 'nhwc', 'model.onnx');
  await mkdir(path.dirname(nchw));
  await mkdir(path.dirname(nhwcBatchOne));
  await writeConvnet(nchw);
  await writeConvnet(nhwcBatchOne, { layout: 'NHWC', batchOne: true });
});
after(() => rm(tmp, { recursive: true, force: true }));

/** The exported model's `pixels`: each image decoded and resized by the reader predict uses. */
async function pixelsOf(paths: string[], size: readonly [number, number]): Promise<Float32Array> {
  const [h, w] = size;
  const out = new Float32Array(paths.length * h * w * 3);
  for (const [i, p] of paths.entries()) out.set((await decodeImage(p, (await loadFile(p)).bytes, { size, resize: 'squash' })).rgb, i * h * w * 3);
  return out;
}

/** model.onnx's probabilities for `paths`, `batch` images per run (the graph may fix it). */
async function runOnnx(dir: string, paths: string[], size: readonly [number, number], classes: number, batch = paths.length): Promise<Float32Array> {
  const pixels = await pixelsOf(paths, size);
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  const [h, w] = size;
  const out = new Float32Array(paths.length * classes);
  try {
    assert.deepEqual(session.inputNames, ['pixels']);
    assert.deepEqual(session.outputNames, ['probabilities']);
    for (let start = 0; start < paths.length; start += batch) {
      const n = Math.min(batch, paths.length - start);
      const input = new ort.Tensor('float32', pixels.subarray(start * h * w * 3, (start + n) * h * w * 3), [n, h, w, 3]);
      const { probabilities } = await session.run({ pixels: input });
      out.set(probabilities.data as Float32Array, start * classes);
      input.dispose();
      probabilities.dispose();
    }
    return out;
  } finally {
    await session.release();
  }
}

function largest(rows: { probabilities: Record<string, number> }[], classes: string[], got: Float32Array): number {
  let worst = 0;
  rows.forEach((r, i) => classes.forEach((c, j) => (worst = Math.max(worst, Math.abs(r.probabilities[c] - got[i * classes.length + j])))));
  return worst;
}

test('a fine-tuned bundle (train --fine-tune all): the ONNX export runs backbone.onnx and equals `finetune predict --json` within 1e-4; --format tfjs is refused in one line, exit 2', { timeout: 180_000 }, async (t) => {
  const modelDir = path.join(tmp, 'fine-tuned');
  const trained = await runFinetune(['train', data, '--backbone', tiny16, '--fine-tune', 'all', '--fine-tune-epochs', '2', '--fine-tune-lr', '3e-3', '--hidden', '0', '--epochs', '3', '--seed', '3', '--threads', '1', '--out', modelDir, '--no-cache', '-q'], { home, cwd: tmp });
  assert.equal(trained.code, 0, show(trained));
  const manifest = JSON.parse(await readFile(path.join(modelDir, 'finetune.json'), 'utf8'));
  assert.ok(manifest.backbones[0].onnx, 'the bundle carries its fine-tuned backbone.onnx');
  assert.notEqual(manifest.temperature, 1, 'calibrated: the temperature is part of what is checked');

  const out = path.join(tmp, 'fine-tuned-onnx');
  const exported = await runFinetune(['export', out, '--model', modelDir, '--format', 'onnx'], { home, cwd: tmp });
  assert.equal(exported.code, 0, show(exported));
  assert.match(exported.stdout, /^exported .*fine-tuned to .*fine-tuned-onnx \(onnx, pixels 16×16 → 2 classes\)$/m);
  const predicted = await runFinetune(['predict', '--json', '--model', modelDir, '--no-cache', '--threads', '1', ...photos], { home, cwd: tmp });
  assert.equal(predicted.code, 0, show(predicted));
  const rows = jsonLines(predicted) as { probabilities: Record<string, number> }[];
  const classes = JSON.parse(await readFile(path.join(out, 'labels.json'), 'utf8')) as string[];
  const worst = largest(rows, classes, await runOnnx(out, photos, [16, 16], classes.length));
  t.diagnostic(`fine-tuned: largest |exported − predict --json| ${worst.toExponential(2)}, temperature ${manifest.temperature}`);
  assert.ok(worst < 1e-4, `largest difference ${worst}`);

  const proto = onnxProto.onnx.ModelProto.decode(await readFile(path.join(out, 'model.onnx')));
  const meta = Object.fromEntries(proto.metadataProps.map((p) => [p.key, p.value]));
  assert.deepEqual(JSON.parse(meta.classes!), classes);
  assert.equal(JSON.parse(meta.preprocess!).output.temperature, manifest.temperature);

  const tfjs = await runFinetune(['export', path.join(tmp, 'fine-tuned-tfjs'), '--model', modelDir, '--format', 'tfjs'], { home, cwd: tmp });
  assert.equal(tfjs.code, 2, show(tfjs));
  assert.deepEqual(errorLines(tfjs), [`finetune: error: --format tfjs: ${modelDir}: its fine-tuned backbone (${manifest.backbones[0].onnx.file}) is an ONNX graph, not a tfjs network, so there is no tfjs model to write; use --format onnx`]);
  assert.equal(tfjs.stderr.trim().split('\n').length, 1, tfjs.stderr);
});

describe('an ONNX file as the backbone (--backbone model.onnx --layer …)', () => {
  const recipe: TrainOptions = { epochs: 4, lr: 0.01, seed: 42, ensemble: 1, threads: 1, cacheDir: false, calibrate: true };
  const cases: { name: string; opts: () => TrainOptions; size: number; batch?: number }[] = [
    { name: 'NCHW graph cut at an inner node, hidden head, avgmax pooling', opts: () => ({ backbone: nchw, layer: 'relu', hidden: 8, pooling: 'avgmax' }), size: 8 },
    {
      name: 'fused: a tfjs network (opset 17 once translated) beside an NHWC graph of opset 13 with its batch fixed to 1',
      opts: () => ({ backbone: [tiny8, nhwcBatchOne], layer: ['block2_pool', 'relu_nhwc'], preprocess: ['tf', 'torch'], hidden: 0, pooling: 'max' }),
      size: 8,
      batch: 1,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: the ONNX export equals predict within 1e-4; tfjs refused`, { timeout: 120_000 }, async (t) => {
      const result = await train(data, { ...recipe, ...c.opts() });
      const dir = path.join(tmp, 'models', c.name.split(/[ :]/)[0]);
      await saveModel(dir, result, { remember: false });
      result.head.dispose();
      const model: FinetuneModel = await loadModel(dir);
      try {
        assert.notEqual(model.manifest.temperature, 1);
        const out = path.join(tmp, 'exports', path.basename(dir));
        await mkdir(path.dirname(out), { recursive: true });
        const exported = await exportModel(model, out, { format: 'onnx' });
        const pre = JSON.parse(await readFile(path.join(out, 'preprocess.json'), 'utf8'));
        assert.deepEqual(pre.input.shape, [c.batch ?? null, c.size, c.size, 3]);
        if (c.batch) assert.match(await readFile(path.join(out, 'README.md'), 'utf8'), /float32 \[1, 8, 8, 3\]/);
        assert.ok(exported.files.some((f) => f.name === 'model.onnx' && f.bytes > 0));
        const expected = (await predict(model, photos, { cacheDir: false, threads: 1 })) as { probabilities: Record<string, number> }[];
        const worst = largest(expected, model.classes, await runOnnx(out, photos, [c.size, c.size], model.classes.length, c.batch));
        t.diagnostic(`largest |exported − predict| ${worst.toExponential(2)}, temperature ${model.manifest.temperature}`);
        assert.ok(worst < 1e-4, `largest difference ${worst}`);
        await assert.rejects(exportModel(model, path.join(tmp, 'never'), { format: 'tfjs' }), /--format tfjs: .*is an ONNX graph, not a tfjs network, so there is no tfjs model to write; use --format onnx/);
        await assert.rejects(exportModel(model, path.join(tmp, 'never'), { format: 'onnx', withDemo: true }), /--with-demo: .*its backbone is an ONNX graph and the demo page runs tfjs; export without --with-demo/);
      } finally {
        model.head.dispose();
      }
    });
  }
});
