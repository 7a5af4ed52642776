import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { loadKerasWeightsInto } from '../src/formats/keras-h5.ts';
import { defaultFeatureLayer } from '../src/backbones/resolve.ts';
import { VGG16_WEIGHTS, vgg16 } from '../src/backbones/vgg16.ts';
import { createTfjsExtractor } from '../src/engines/tfjs.ts';
import { loadBackbone, ModelFileError, UsageError } from '../src/index.ts';
import { REGISTRY } from '../src/backbones/registry.ts';
import { writeKerasH5 } from './fixtures/keras-h5-writer.ts';
import { buildTinyBackbone, TINY_LAYERS, writeTinyBackbone, type TinyBackboneFiles } from './fixtures/tiny-backbone.ts';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const DARKNET = path.join(SHARED, 'backbones', 'darknet-tiny');

let tmp: string;
let tiny: TinyBackboneFiles;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-backbone-'));
  tiny = await writeTinyBackbone(path.join(tmp, 'tiny'), { seed: 3 });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Runs `model` up to `layer` through the tfjs engine on a fixed batch; the feature map flattened. */
async function featuresOf(model: tf.LayersModel, layer = 'block2_pool'): Promise<Float32Array> {
  const [, h, w] = model.inputs[0].shape as number[];
  const images = new Float32Array(2 * h * w * 3);
  for (let i = 0; i < images.length; i++) images[i] = Math.sin(i * 0.37) * 0.8 + 0.1;
  const extractor = await createTfjsExtractor(model, { layer, pooling: 'flatten' });
  try {
    return await extractor.run(images, 2);
  } finally {
    await extractor.dispose();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

async function rejectsWithType(promise: Promise<unknown>, type: typeof UsageError | typeof ModelFileError, ...mentions: string[]): Promise<string> {
  let message = '';
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    message = err.message;
    for (const m of mentions) assert.ok(err.message.includes(m), `"${err.message}" should mention ${m}`);
    assert.ok(!err.message.includes('\n'), 'one-line message');
    return true;
  });
  return message;
}

describe('VGG16 definition', () => {
  test('parameter counts match Keras: 14,714,688 without the top, 138,357,544 with it', () => {
    const base = vgg16();
    const full = vgg16({ includeTop: true });
    try {
      assert.equal(base.countParams(), 14_714_688);
      assert.equal(full.countParams(), 138_357_544);
      assert.equal(REGISTRY.vgg16.parameters.notop, 14_714_688);
    } finally {
      base.dispose();
      full.dispose();
    }
  });

  test('Keras layer names and shapes, so the official weight files map by name', () => {
    const model = vgg16({ includeTop: true });
    try {
      const names = model.layers.map((l) => l.name);
      const expected = ['input_1'];
      [2, 2, 3, 3, 3].forEach((convs, b) => {
        for (let c = 1; c <= convs; c++) expected.push(`block${b + 1}_conv${c}`);
        expected.push(`block${b + 1}_pool`);
      });
      expected.push('flatten', 'fc1', 'fc2', 'predictions');
      assert.deepEqual(names, expected);
      assert.deepEqual(model.getLayer('block5_pool').outputShape, [null, 7, 7, 512]);
      assert.deepEqual(model.getLayer('block1_conv1').getWeights()[0].shape, [3, 3, 3, 64]);
      assert.deepEqual(model.getLayer('fc1').getWeights()[0].shape, [25088, 4096]);
      assert.deepEqual(model.outputs[0].shape, [null, 1000]);
    } finally {
      model.dispose();
    }
  });
});

describe('the same weights from every file format give the same features', () => {
  test('tfjs folder, whole-model .h5, and weights-only .h5 in both naming styles', async () => {
    const fromFolder = await loadBackbone(tiny.folder);
    const fromWhole = await loadBackbone(tiny.h5Whole);
    const reference = await featuresOf(fromFolder.model);
    assert.equal(reference.length, 2 * 8 * 8 * 16);
    assert.ok(reference.some((v) => v !== 0), 'features are not all zero');
    assert.ok(maxAbsDiff(await featuresOf(fromWhole.model), reference) < 1e-5, 'whole-model .h5 = tfjs folder');
    for (const file of [tiny.h5Underscore, tiny.h5Slash]) {
      // A network built in code with other random weights, then loaded by layer name (the VGG16 path).
      const built = buildTinyBackbone({ seed: 99 });
      assert.ok(maxAbsDiff(await featuresOf(built), reference) > 1e-3, 'other weights give other features');
      const { loadedLayers } = await loadKerasWeightsInto(built, file);
      assert.deepEqual(loadedLayers, ['block1_conv1', 'block2_conv1', 'fc1', 'predictions']);
      assert.ok(maxAbsDiff(await featuresOf(built), reference) < 1e-5, `${path.basename(file)} = tfjs folder`);
      built.dispose();
    }
    fromFolder.model.dispose();
    fromWhole.model.dispose();
  });

  test('a backbone given by path records where it came from, its checksum, layer and input size', async () => {
    const bb = await loadBackbone(tiny.folder);
    try {
      assert.equal(bb.id, path.resolve(tiny.folder));
      assert.match(bb.checksum, /^[0-9a-f]{64}$/);
      assert.equal(bb.layer, 'block2_pool');
      assert.deepEqual(bb.inputSize, [32, 32]);
      assert.deepEqual(bb.model.layers.map((l) => l.name), TINY_LAYERS);
      assert.equal(bb.preprocess, 'unit', 'tfjs exports take x/255 unless told otherwise');
    } finally {
      bb.model.dispose();
    }
    const other = await loadBackbone(tiny.folder, { layer: 'block1_pool', preprocess: 'caffe' });
    assert.equal(other.layer, 'block1_pool');
    assert.equal(other.preprocess, 'caffe');
    other.model.dispose();
  });
});

describe('the default feature layer', () => {
  test('is the input of the first Flatten / global pooling / Dense layer', () => {
    const model = buildTinyBackbone();
    assert.equal(defaultFeatureLayer(model), 'block2_pool');
    model.dispose();

    const input = tf.input({ shape: [16, 16, 3] });
    const conv = tf.layers.conv2d({ name: 'last_conv', filters: 4, kernelSize: 3 }).apply(input) as tf.SymbolicTensor;
    const gap = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(conv) as tf.SymbolicTensor;
    const out = tf.layers.dense({ name: 'logits', units: 3, activation: 'softmax' }).apply(gap) as tf.SymbolicTensor;
    const pooled = tf.model({ inputs: input, outputs: out });
    assert.equal(defaultFeatureLayer(pooled), 'last_conv');
    pooled.dispose();
  });

  test('darknet-tiny (../shared): leaky_re_lu_15, before the 1×1 classifier convolution', async (t) => {
    if (!existsSync(path.join(DARKNET, 'model.json'))) {
      t.skip(`${DARKNET} is absent (../shared holds the real backbones)`);
      return;
    }
    const bb = await loadBackbone(DARKNET);
    try {
      assert.equal(bb.layer, 'leaky_re_lu_15');
      assert.deepEqual(bb.inputSize, [224, 224]);
    } finally {
      bb.model.dispose();
    }
  });

  test('an unknown --layer is a UsageError that lists the layer names', async () => {
    await rejectsWithType(loadBackbone(tiny.folder, { layer: 'block9_pool' }), UsageError, 'block9_pool', 'block1_conv1', 'block2_pool', 'predictions');
  });
});

describe('registry weights', () => {
  const saved = { FINETUNE_HOME: process.env.FINETUNE_HOME, KERAS_HOME: process.env.KERAS_HOME, FINETUNE_OFFLINE: process.env.FINETUNE_OFFLINE };
  let home: string;
  let kerasHome: string;
  before(async () => {
    home = path.join(tmp, 'finetune-home');
    kerasHome = path.join(tmp, 'keras-home');
    process.env.FINETUNE_HOME = home;
    process.env.KERAS_HOME = kerasHome;
    // Missing registry weights are fetched by default; tests never touch the network.
    process.env.FINETUNE_OFFLINE = '1';
  });
  after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  test('vgg16 with no weights anywhere (and no download): the message names the file, where to put it, and the URL', async () => {
    await rejectsWithType(
      loadBackbone('vgg16', { download: false }),
      ModelFileError,
      'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
      path.join(home, 'models'),
      path.join(kerasHome, 'models'),
      VGG16_WEIGHTS.notop.url,
      '--weights',
    );
  });

  test('--weights that does not exist is a UsageError naming it', async () => {
    const missing = path.join(tmp, 'nope.h5');
    await rejectsWithType(loadBackbone('vgg16', { weights: missing }), UsageError, missing);
  });

  test('--weights from another architecture names the layers the file lacks', async () => {
    await rejectsWithType(loadBackbone('vgg16', { weights: tiny.h5Slash }), ModelFileError, tiny.h5Slash, 'block1_conv2');
  });

  test('--weights with VGG16 layer names but other shapes names the layer and both shapes', async () => {
    // VGG16's names at 1/16 of the width: every layer is found, none fits.
    const input = tf.input({ shape: [32, 32, 3], name: 'input_1' });
    let x = input;
    [2, 2, 3, 3, 3].forEach((convs, b) => {
      for (let c = 1; c <= convs; c++) x = tf.layers.conv2d({ name: `block${b + 1}_conv${c}`, filters: 4 * 2 ** Math.min(b, 3), kernelSize: 3, padding: 'same' }).apply(x) as tf.SymbolicTensor;
      x = tf.layers.maxPooling2d({ name: `block${b + 1}_pool`, poolSize: 2 }).apply(x) as tf.SymbolicTensor;
    });
    const narrow = tf.model({ inputs: input, outputs: x });
    const file = path.join(tmp, 'narrow-vgg16.h5');
    await writeKerasH5(narrow, file, { style: 'slash' });
    narrow.dispose();
    await rejectsWithType(loadBackbone('vgg16', { weights: file }), ModelFileError, file, 'block1_conv1', '[3,3,3,4]', '[3,3,3,64]');
  });
});
