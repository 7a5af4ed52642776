import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadAnyBackbone } from '../src/backbones/resolve.ts';
import type { Pooling } from '../src/engines/types.ts';
import { ModelFileError, UsageError } from '../src/errors.ts';
import { openFeatureSource } from '../src/features/source.ts';
import { FILTERS, QUANT_SCALE, SIZE, convWInt8, noise, poolMap, referenceConvnet, writeConvnet, writeNonImageModel, type ConvnetOptions } from './fixtures/onnx-graphs.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-onnx-backbone-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
async function convnet(opts: ConvnetOptions = {}): Promise<string> {
  const file = path.join(dir, `net${counter++}`, 'model.onnx');
  await import('node:fs/promises').then((fs) => fs.mkdir(path.dirname(file), { recursive: true }));
  await writeConvnet(file, opts);
  return file;
}

/** The features finetune's onnx engine gives for raw NHWC floats (no decoding). */
async function features(file: string, layer: string | undefined, pooling: Pooling, images: Float32Array, count: number, extra: { inputSize?: [number, number]; output?: boolean } = {}) {
  const source = await openFeatureSource(file, { layer, pooling, ...extra }, { cacheDir: false, threads: 1 });
  try {
    return { values: await source.extractor.run(images, count), featureSize: source.extractor.featureSize, layer: source.backbone.layer };
  } finally {
    await source.close();
  }
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.ok(worst <= tolerance, `${what}: max |difference| ${worst} > ${tolerance}`);
}

const COUNT = 3;
const images = noise(COUNT * SIZE * SIZE * 3, 42, -2, 2);
const reference = referenceConvnet(images, COUNT);
/** The reference map in NHWC order, as an NHWC model's values hold it. */
const perImage = (f: (r: (typeof reference)[number]) => number[]) => reference.flatMap(f);

describe('an ONNX file as the backbone (torch.onnx.export-style NCHW graph)', () => {
  test('an intermediate node as --layer gives the activations a direct convolution computes, pooled avg, max and avgmax', async () => {
    const file = await convnet();
    for (const pooling of ['avg', 'max', 'avgmax'] as const) {
      const got = await features(file, 'relu', pooling, images, COUNT);
      assert.equal(got.featureSize, pooling === 'avgmax' ? 2 * FILTERS : FILTERS);
      assertClose(got.values, perImage((r) => poolMap(r.relu, FILTERS, pooling)), 1e-5, `relu ${pooling}`);
    }
  });

  test('the default layer is the map the classifier pools (MaxPool output, before GlobalAveragePool → Flatten → Gemm)', async () => {
    const file = await convnet();
    const got = await features(file, undefined, 'max', images, COUNT);
    assert.equal(got.layer, 'pool');
    assertClose(got.values, perImage((r) => poolMap(r.pool, FILTERS, 'max')), 1e-5, 'pool max');
  });

  test('a SqueezeNet-style top (1×1 class convolution before the pooling) is left out of the default layer', async () => {
    const file = await convnet({ classConv: true });
    assert.equal((await loadAnyBackbone(file)).layer, 'pool');
  });

  test('a 2-D value is used as it is, and the output (class scores) for predict --imagenet', async () => {
    const file = await convnet();
    const flat = await features(file, 'flat', 'avgmax', images, COUNT);
    assert.equal(flat.featureSize, FILTERS);
    assertClose(flat.values, perImage((r) => poolMap(r.pool, FILTERS, 'avg')), 1e-5, 'flat');
    const out = await features(file, undefined, 'avg', images, COUNT, { output: true });
    assert.equal(out.layer, 'logits');
    assertClose(out.values, perImage((r) => [...r.logits]), 1e-4, 'logits');
  });

  test('flatten pooling keeps the whole map', async () => {
    const file = await convnet();
    const got = await features(file, 'pool', 'flatten', images, COUNT);
    assert.equal(got.featureSize, FILTERS * 16);
    assertClose(got.values, perImage((r) => [...r.pool]), 1e-5, 'pool flatten (NCHW order)');
  });

  test('an NHWC input (tf2onnx style) is fed as is and its NHWC maps are pooled per channel', async () => {
    const file = await convnet({ layout: 'NHWC' });
    const backbone = await loadAnyBackbone(file);
    assert.equal(backbone.preprocess, 'tf');
    const got = await features(file, 'relu_nhwc', 'avgmax', images, COUNT);
    assertClose(got.values, perImage((r) => poolMap(r.relu, FILTERS, 'avgmax')), 1e-5, 'relu_nhwc avgmax');
    const nchw = await features(file, 'relu', 'avg', images, COUNT);
    assertClose(nchw.values, perImage((r) => poolMap(r.relu, FILTERS, 'avg')), 1e-5, 'relu (NCHW inside an NHWC model) avg');
  });

  test('a float16 input is cast in the graph, and a float16 value is read back as float32', async () => {
    const file = await convnet({ float16: true });
    const got = await features(file, 'relu_half', 'avg', images, COUNT);
    // float16 input rounding (11-bit mantissa on |x| ≤ 2) and float16 activations.
    assertClose(got.values, perImage((r) => poolMap(r.relu, FILTERS, 'avg')), 2e-2, 'relu_half avg');
  });

  test('QDQ int8 weights (DequantizeLinear → Conv) give the dequantized network', async () => {
    const file = await convnet({ quantized: true });
    const dequantized = Array.from(convWInt8, (q) => q * QUANT_SCALE);
    const expected = referenceConvnet(images, COUNT, SIZE, SIZE, dequantized).flatMap((r) => poolMap(r.relu, FILTERS, 'avg'));
    assertClose((await features(file, 'relu', 'avg', images, COUNT)).values, expected, 1e-5, 'quantized relu');
  });

  test('a dynamic input size is taken from --input-size, and is required', async () => {
    const file = await convnet({ dynamicSize: true });
    await assert.rejects(loadAnyBackbone(file), (err: Error) => err instanceof UsageError && /leaves the image size open; give --input-size/.test(err.message) && err.message.includes(file));
    const big = noise(2 * 12 * 12 * 3, 7, -2, 2);
    const got = await features(file, 'relu', 'avg', big, 2, { inputSize: [12, 12] });
    assertClose(got.values, referenceConvnet(big, 2, 12, 12).flatMap((r) => poolMap(r.relu, FILTERS, 'avg')), 1e-5, 'relu at 12×12');
  });

  test('a batch fixed to 1 by the exporter runs image by image', async () => {
    const file = await convnet({ batchOne: true });
    const got = await features(file, 'relu', 'avg', images, COUNT);
    assertClose(got.values, perImage((r) => poolMap(r.relu, FILTERS, 'avg')), 1e-5, 'batch-1 model');
  });

  test('external data (model.onnx + model.onnx_data) loads, and both files count in the checksum', async () => {
    const file = await convnet({ externalData: true });
    const got = await features(file, 'relu', 'avg', images, COUNT);
    assertClose(got.values, perImage((r) => poolMap(r.relu, FILTERS, 'avg')), 1e-5, 'external data');
    const before = (await loadAnyBackbone(file)).checksum;
    const data = `${file}_data`;
    const bytes = await readFile(data);
    bytes[0] ^= 1;
    await writeFile(data, bytes);
    assert.notEqual((await loadAnyBackbone(file)).checksum, before);
    await rm(data);
    await assert.rejects(loadAnyBackbone(file), (err: Error) => err instanceof ModelFileError && err.message.includes(file) && /model\.onnx_data cannot be read/.test(err.message));
  });

  test('models import of an .onnx file (external data included): the name then works as --backbone, the same network', async () => {
    const file = await convnet({ externalData: true });
    const home = path.join(dir, 'home-import');
    const previous = process.env.FINETUNE_HOME;
    process.env.FINETUNE_HOME = home;
    try {
      const { importModel } = await import('../src/backbones/models.ts');
      const imported = await importModel(file, { name: 'mynet' });
      assert.equal(imported.path, path.join(home, 'models', 'mynet', 'model.onnx'));
      await rm(`${file}_data`);
      const byName = await loadAnyBackbone('mynet');
      assert.equal(byName.source, imported.path);
      const got = await features('mynet', 'relu', 'avg', images, COUNT);
      assertClose(got.values, perImage((r) => poolMap(r.relu, FILTERS, 'avg')), 1e-5, 'imported by name');
      await assert.rejects(importModel(path.join(dir, 'nothing.onnx')), (err: Error) => err instanceof UsageError && /does not exist/.test(err.message));
    } finally {
      if (previous === undefined) delete process.env.FINETUNE_HOME;
      else process.env.FINETUNE_HOME = previous;
    }
  });

  test("the checksum is the file's sha256; preprocessing defaults to ImageNet mean/std (alias imagenet)", async () => {
    const file = await convnet();
    const backbone = await loadAnyBackbone(file);
    assert.equal(backbone.checksum, createHash('sha256').update(await readFile(file)).digest('hex'));
    assert.equal(backbone.preprocess, 'torch');
    assert.equal((await loadAnyBackbone(file, { preprocess: 'imagenet' as never })).preprocess, 'torch');
    assert.deepEqual(backbone.inputSize, [SIZE, SIZE]);
  });
});

describe('ONNX backbone errors name the file and what is wrong', () => {
  test('not an ONNX file', async () => {
    const file = path.join(dir, 'photo.onnx');
    await writeFile(file, Buffer.from('\xff\xd8\xff\xe0 this is a JPEG, not a protobuf', 'latin1'));
    await assert.rejects(loadAnyBackbone(file), (err: Error) => err instanceof ModelFileError && err.message.startsWith(`${file} is not an ONNX model`));
  });

  test('no image-like input', async () => {
    const file = path.join(dir, 'vector.onnx');
    await writeNonImageModel(file);
    await assert.rejects(loadAnyBackbone(file), (err: Error) => err instanceof ModelFileError && err.message.includes(file) && /no image input.*not a 4-D image batch/.test(err.message));
  });

  test('a layer that is not in the graph lists the nearest names', async () => {
    const file = await convnet();
    await assert.rejects(loadAnyBackbone(file, { layer: 'rellu' }), (err: Error) => err instanceof UsageError && err.message.includes(file) && /nearest: relu\b/.test(err.message) && err.message.includes('finetune models layers'));
  });

  test('an operator onnxruntime-node cannot run', async () => {
    const file = await convnet({ unknownOp: true });
    await assert.rejects(features(file, 'pool', 'avg', images, 1), (err: Error) => err instanceof ModelFileError && err.message.startsWith(`${file}: onnxruntime-node cannot run it`) && /FancyNormalize/.test(err.message));
  });

  test('--engine tfjs is refused for an ONNX file', async () => {
    const file = await convnet();
    await assert.rejects(openFeatureSource(file, { pooling: 'avg' }, { cacheDir: false, engine: 'tfjs' }), (err: Error) => err instanceof UsageError && /runs on the onnx engine/.test(err.message));
  });
});


describe('finetune train / predict / evaluate / models layers with --backbone model.onnx (CLI)', () => {
  test('the bundle records the file and its sha256; predict and evaluate run it; models layers lists its values', async () => {
    const { makeImageDataset } = await import('./fixtures/images.ts');
    const { runFinetune, show } = await import('./fixtures/models-cli.ts');
    const file = await convnet();
    const data = await makeImageDataset(path.join(dir, 'data'), { layout: 'fastai', classes: 2, perClass: 6, validPerClass: 3, size: 16, seed: 3 });
    const home = path.join(dir, 'home');
    const out = path.join(dir, 'model');
    const run = (args: string[]) => runFinetune(args, { home, cwd: dir, env: { FINETUNE_CACHE: path.join(dir, 'cache') } });
    const trained = await run(['train', data.root, '--backbone', file, '--preprocess', 'imagenet', '--epochs', '3', '--ensemble', '1', '--out', out]);
    assert.equal(trained.code, 0, show(trained));
    const manifest = JSON.parse(await readFile(path.join(out, 'finetune.json'), 'utf8'));
    assert.equal(manifest.backbones[0].id, file);
    assert.equal(manifest.backbones[0].checksum, createHash('sha256').update(await readFile(file)).digest('hex'));
    assert.equal(manifest.backbones[0].layer, 'pool');
    assert.equal(manifest.backbones[0].preprocess, 'torch');
    const image = data.valid[data.classes[0]][0];
    const predicted = await run(['predict', '--model', out, '--json', image]);
    assert.equal(predicted.code, 0, show(predicted));
    assert.ok(data.classes.includes(JSON.parse(predicted.stdout.trim().split('\n')[0]).label ?? JSON.parse(predicted.stdout.trim().split('\n')[0]).class), predicted.stdout);
    const evaluated = await run(['evaluate', '--model', out, data.root, '--json']);
    assert.equal(evaluated.code, 0, show(evaluated));
    const imagenet = await run(['predict', '--imagenet', '--backbone', file, '--top', '2', '--json', image]);
    assert.equal(imagenet.code, 0, show(imagenet));
    assert.equal(JSON.parse(imagenet.stdout.trim().split('\n')[0]).top.length, 2);
    const layers = await run(['models', 'layers', file]);
    assert.equal(layers.code, 0, show(layers));
    assert.match(layers.stdout, /^pool\s+MaxPool\s+\[null, 6, 4, 4\]\s+← default$/m);
    assert.match(layers.stdout, /^flat\s+Flatten\s+\[null, 6\]$/m);
    const lrFind = await run(['lr-find', data.root, '--backbone', file]);
    assert.equal(lrFind.code, 0, show(lrFind));
    assert.match(lrFind.stdout, /suggest/i);
    const fineTune = await run(['train', data.root, '--backbone', file, '--fine-tune', '1', '--epochs', '1']);
    assert.equal(fineTune.code, 2, show(fineTune));
    assert.match(fineTune.stderr, /an ONNX backbone gives features only/);
    const wrong = await run(['train', data.root, '--backbone', file, '--layer', 'conv1', '--epochs', '1']);
    assert.equal(wrong.code, 2, show(wrong));
    assert.match(wrong.stderr, /--layer conv1: .*model\.onnx has no value of that name \(nearest: conv/);
  });
});

describe('fusing backbones of every kind, --weights lining up with --backbone (CLI)', () => {
  test('registry (own weights file) + tfjs folder + ONNX file train together; predict takes the weights list the same way', async () => {
    const tf = await import('@tensorflow/tfjs');
    const { REGISTRY } = await import('../src/backbones/registry.ts');
    const { writeKerasH5 } = await import('./fixtures/keras-h5-writer.ts');
    const { writeTinyBackbone } = await import('./fixtures/tiny-backbone.ts');
    const { makeImageDataset } = await import('./fixtures/images.ts');
    const { runFinetune, show } = await import('./fixtures/models-cli.ts');
    const registryNet = REGISTRY['mobilenet_0.25'].build({ includeTop: false, inputSize: [64, 64] });
    const weights = path.join(dir, 'my-mobilenet.h5');
    await writeKerasH5(registryNet, weights, { style: 'slash' });
    registryNet.dispose();
    tf.disposeVariables();
    const tiny = await writeTinyBackbone(path.join(dir, 'fuse-tiny'), { seed: 3 });
    const onnxFile = await convnet();
    const data = await makeImageDataset(path.join(dir, 'fuse-data'), { layout: 'fastai', classes: 2, perClass: 5, validPerClass: 2, size: 16, seed: 8 });
    const home = path.join(dir, 'fuse-home');
    const out = path.join(dir, 'fused-model');
    const run = (args: string[]) => runFinetune(args, { home, cwd: dir, env: { FINETUNE_CACHE: path.join(dir, 'fuse-cache'), FINETUNE_OFFLINE: '1' } });
    const backbones = `mobilenet_0.25,${tiny.folder},${onnxFile}`;
    const trained = await run(['train', data.root, '--backbone', backbones, '--weights', `${weights},,`, '--input-size', '64,,', '--epochs', '2', '--ensemble', '1', '--out', out]);
    assert.equal(trained.code, 0, show(trained));
    const manifest = JSON.parse(await readFile(path.join(out, 'finetune.json'), 'utf8'));
    assert.deepEqual(manifest.backbones.map((b: { id: string }) => b.id), ['mobilenet_0.25', tiny.folder, onnxFile]);
    assert.equal(manifest.backbones[0].checksum, createHash('sha256').update(await readFile(weights)).digest('hex'));
    const image = data.valid[data.classes[0]][0];
    const predicted = await run(['predict', '--model', out, '--weights', weights, image]);
    assert.equal(predicted.code, 0, show(predicted));
    // Without the list, the registry part looks in the caches (empty here, offline): one clear line.
    const missing = await run(['predict', '--model', out, image]);
    assert.equal(missing.code, 1, show(missing));
    assert.match(missing.stderr, /mobilenet/);
  });
});
