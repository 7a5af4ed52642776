import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { loadKerasModel, loadKerasWeightsInto } from '../src/formats/keras-h5.ts';
import { mobilenet } from '../src/backbones/mobilenet.ts';
import { makeDivisible, mobilenetV2, mobilenetV2WeightsFile } from '../src/backbones/mobilenet-v2.ts';
import { isRegistryName, REGISTRY, registryEntry } from '../src/backbones/registry.ts';
import { resnet50 } from '../src/backbones/resnet50.ts';
import { vgg19 } from '../src/backbones/vgg19.ts';
import { UsageError } from '../src/errors.ts';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const MOBILENET_025_H5 = path.join(SHARED, 'backbones', 'keras-mobilenet-0.25', 'mobilenet_v1_0.25_224.h5');
const NSFWJS_MOBILENET_V2 = path.join(SHARED, 'backbones', 'nsfwjs-mobilenet-v2', 'model.json');

/** Builds, hands the model to `use`, and always disposes it (a with-top VGG19 holds 575 MB). */
function withModel<T>(model: tf.LayersModel, use: (m: tf.LayersModel) => T): T {
  try {
    return use(model);
  } finally {
    model.dispose();
  }
}

/** What Keras reports for `Model(...).count_params()` and the feature map at the default layer. */
const KERAS_FACTS: Record<string, { notop: number; full: number; layer: string; shape: (number | null)[] }> = {
  vgg16: { notop: 14_714_688, full: 138_357_544, layer: 'block5_pool', shape: [null, 7, 7, 512] },
  vgg19: { notop: 20_024_384, full: 143_667_240, layer: 'block5_pool', shape: [null, 7, 7, 512] },
  mobilenet: { notop: 3_228_864, full: 4_253_864, layer: 'conv_pw_13_relu', shape: [null, 7, 7, 1024] },
  'mobilenet_0.25': { notop: 218_544, full: 475_544, layer: 'conv_pw_13_relu', shape: [null, 7, 7, 256] },
  'mobilenet_0.5': { notop: 829_536, full: 1_342_536, layer: 'conv_pw_13_relu', shape: [null, 7, 7, 512] },
  'mobilenet_0.75': { notop: 1_832_976, full: 2_601_976, layer: 'conv_pw_13_relu', shape: [null, 7, 7, 768] },
  mobilenet_v2: { notop: 2_257_984, full: 3_538_984, layer: 'out_relu', shape: [null, 7, 7, 1280] },
  resnet50: { notop: 23_587_712, full: 25_636_712, layer: 'conv5_block3_out', shape: [null, 7, 7, 2048] },
};

describe('registry entries', () => {
  test('holds exactly the Keras applications backbones finetune knows', () => {
    assert.deepEqual(Object.keys(REGISTRY).sort(), Object.keys(KERAS_FACTS).sort());
    assert.ok(Object.isFrozen(REGISTRY));
  });

  for (const [name, facts] of Object.entries(KERAS_FACTS)) {
    test(`${name}: parameter counts with and without the top equal Keras's, and ${facts.layer} is ${JSON.stringify(facts.shape)}`, () => {
      const tensorsBefore = tf.memory().numTensors;
      const entry = registryEntry(name);
      assert.equal(entry.name, name);
      assert.deepEqual(entry.parameters, { notop: facts.notop, full: facts.full });
      assert.equal(entry.defaultLayer, facts.layer);
      withModel(entry.build({ includeTop: false }), (model) => {
        assert.equal(model.countParams(), facts.notop);
        assert.deepEqual(model.getLayer(facts.layer).outputShape, facts.shape);
        assert.deepEqual(model.inputs[0].shape, [null, ...entry.inputSize, 3]);
        for (const top of entry.topLayers) assert.ok(!model.layers.some((l) => l.name === top), `${top} only with the top`);
      });
      withModel(entry.build({ includeTop: true }), (model) => {
        assert.equal(model.countParams(), facts.full);
        assert.deepEqual(model.outputs[0].shape, [null, 1000]);
        // `finetune imagenet` reads the class scores from the last top layer.
        assert.equal(entry.topLayers.at(-1), 'predictions');
        assert.equal(model.layers.at(-1)!.name, 'predictions');
        for (const top of entry.topLayers) model.getLayer(top);
      });
      assert.equal(tf.memory().numTensors, tensorsBefore, 'building and disposing leaves no tensors');
    });
  }

  test('every entry says where its weights are published, how big they are, and how to feed it', () => {
    const files = new Set<string>();
    for (const entry of Object.values(REGISTRY)) {
      assert.ok(entry.description.length > 0);
      assert.ok(['caffe', 'tf', 'torch', 'unit'].includes(entry.preprocess), entry.name);
      assert.ok(entry.defaultLayer.length > 0);
      for (const file of [entry.weights.notop, entry.weights.full]) {
        assert.ok(file, `${entry.name} has no-top and with-top files`);
        assert.match(file.url, /^https:\/\/storage\.googleapis\.com\/tensorflow\/keras-applications\//);
        assert.ok(file.url.endsWith(`/${file.file}`), `${file.url} ends with ${file.file}`);
        assert.match(file.file, /\.h5$/);
        assert.ok(Number.isInteger(file.bytes) && file.bytes > 1_000_000, `${file.file}: ${file.bytes} bytes`);
        // Keras publishes no hash for MobileNet / MobileNetV2 (file_hash=None).
        if (entry.name.startsWith('mobilenet')) assert.equal(file.md5, undefined);
        else assert.match(file.md5 ?? '', /^[0-9a-f]{32}$/);
        assert.ok(!files.has(file.file), `${file.file} belongs to one entry`);
        files.add(file.file);
      }
    }
  });

  test("weights file names follow Keras's spelling for each width and size", () => {
    assert.equal(registryEntry('mobilenet_0.25').weights.notop.file, 'mobilenet_2_5_224_tf_no_top.h5');
    assert.equal(registryEntry('mobilenet_0.5').weights.full!.file, 'mobilenet_5_0_224_tf.h5');
    assert.equal(registryEntry('mobilenet').weights.notop.url, 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/mobilenet_1_0_224_tf_no_top.h5');
    assert.equal(registryEntry('mobilenet_v2').weights.notop.file, 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');
    assert.equal(mobilenetV2WeightsFile(0.35, 96, false).file, 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5');
    assert.equal(mobilenetV2WeightsFile(1.4, 224, true).file, 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224.h5');
  });

  test('names are case-insensitive and Keras spellings are aliases of one entry', () => {
    assert.equal(registryEntry('ResNet50').name, 'resnet50');
    assert.equal(registryEntry('mobilenetv2'), REGISTRY.mobilenet_v2);
    assert.equal(registryEntry('mobilenet_1.0'), REGISTRY.mobilenet);
    assert.ok(isRegistryName('VGG19') && isRegistryName('mobilenet_0.25') && !isRegistryName('mobilenet_0.3'));
  });

  test('an unknown name is a UsageError that lists the known ones', () => {
    assert.throws(
      () => registryEntry('nope'),
      (err: unknown) => {
        assert.ok(err instanceof UsageError, String(err));
        for (const name of Object.keys(REGISTRY)) assert.ok(err.message.includes(name), `"${err.message}" lists ${name}`);
        assert.ok(!err.message.includes('\n'));
        return true;
      },
    );
    assert.equal(isRegistryName('nope'), false);
  });
});

describe('architectures follow Keras layer by layer', () => {
  test('VGG19: 2, 2, 4, 4, 4 convolutions per block', () => {
    withModel(vgg19(), (model) => {
      const convs = model.layers.filter((l) => l.getClassName() === 'Conv2D').map((l) => l.name);
      assert.equal(convs.length, 16);
      assert.deepEqual(convs.slice(4, 8), ['block3_conv1', 'block3_conv2', 'block3_conv3', 'block3_conv4']);
      assert.equal(convs.at(-1), 'block5_conv4');
    });
  });

  test('MobileNet: conv_pad before each strided depthwise convolution, ReLU6, BatchNormalization ε 1e-3', () => {
    withModel(mobilenet({ alpha: 0.5 }), (model) => {
      const pads = model.layers.filter((l) => l.getClassName() === 'ZeroPadding2D').map((l) => l.name);
      assert.deepEqual(pads, ['conv_pad_2', 'conv_pad_4', 'conv_pad_6', 'conv_pad_12']);
      assert.deepEqual(model.layers.slice(1, 8).map((l) => l.name), ['conv1', 'conv1_bn', 'conv1_relu', 'conv_dw_1', 'conv_dw_1_bn', 'conv_dw_1_relu', 'conv_pw_1']);
      assert.equal(model.layers.length, 86);
      const bn = model.getLayer('conv_dw_5_bn').getConfig();
      assert.equal(bn.epsilon, 1e-3);
      assert.equal(model.getLayer('conv_pw_13_relu').getConfig().maxValue, 6);
      assert.deepEqual(model.getLayer('conv_dw_2').getWeights()[0].shape, [3, 3, 32, 1]);
    });
  });

  test('MobileNetV2: the same layer names and weight shapes as a MobileNetV2 exported by Keras (nsfwjs)', async (t) => {
    if (!existsSync(NSFWJS_MOBILENET_V2)) return t.skip('../shared/backbones/nsfwjs-mobilenet-v2 is absent');
    const json = JSON.parse(await readFile(NSFWJS_MOBILENET_V2, 'utf8')) as { weightsManifest: { weights: { name: string; shape: number[] }[] }[] };
    const published = new Map(json.weightsManifest.flatMap((g) => g.weights).map((w) => [w.name, w.shape]));
    withModel(mobilenetV2(), (model) => {
      const ours = model.weights.map((w) => [w.originalName, w.shape] as const);
      assert.equal(ours.length, 260);
      for (const [name, shape] of ours) assert.deepEqual(published.get(name), shape, name);
    });
  });

  test('MobileNetV2 pads strided depthwise convolutions as Keras does, odd input sizes included', () => {
    withModel(mobilenetV2({ alpha: 0.35, inputSize: [97, 97] }), (model) => {
      assert.deepEqual(model.getLayer('block_1_pad').getConfig().padding, [[1, 1], [1, 1]]);
      assert.deepEqual(model.getLayer('out_relu').outputShape, [null, 4, 4, 1280]);
      assert.equal(model.countParams(), 410_208);
    });
    withModel(mobilenetV2({ alpha: 1.0 }), (model) => {
      assert.deepEqual(model.getLayer('block_1_pad').getConfig().padding, [[0, 1], [0, 1]]);
      assert.ok(model.layers.some((l) => l.name === 'block_2_add') && !model.layers.some((l) => l.name === 'block_3_add'));
    });
    assert.deepEqual([0.35, 0.5, 0.75, 1, 1.3, 1.4].map((a) => makeDivisible(32 * a)), [16, 16, 24, 32, 40, 48]);
  });

  test('ResNet50: Keras names, BatchNormalization ε 1.001e-5, projection shortcut in each first block', () => {
    withModel(resnet50(), (model) => {
      assert.deepEqual(model.layers.slice(0, 7).map((l) => l.name), ['input_1', 'conv1_pad', 'conv1_conv', 'conv1_bn', 'conv1_relu', 'pool1_pad', 'pool1_pool']);
      assert.equal(model.layers.length, 175);
      assert.equal(model.getLayer('conv3_block1_1_bn').getConfig().epsilon, 1.001e-5);
      const shortcuts = model.layers.filter((l) => l.name.endsWith('_0_conv')).map((l) => l.name);
      assert.deepEqual(shortcuts, ['conv2_block1_0_conv', 'conv3_block1_0_conv', 'conv4_block1_0_conv', 'conv5_block1_0_conv']);
      assert.deepEqual(model.getLayer('conv1_conv').getWeights()[0].shape, [7, 7, 3, 64]);
      assert.deepEqual(model.getLayer('conv4_block6_out').outputShape, [null, 14, 14, 1024]);
    });
  });

  test('each network runs forward on a small image', () => {
    const before = tf.memory().numTensors;
    for (const build of [() => resnet50({ inputSize: [32, 32] }), () => mobilenetV2({ inputSize: [32, 32] }), () => mobilenet({ alpha: 0.25, inputSize: [32, 32] })]) {
      withModel(build(), (model) => {
        const out = tf.tidy(() => (model.predict(tf.ones([1, 32, 32, 3])) as tf.Tensor).shape);
        assert.deepEqual(out.slice(0, 3), [1, 1, 1]);
      });
    }
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('Keras weights load by name', () => {
  test('MobileNet 0.25 loaded from a Keras whole-model file gives the features of that model itself', async (t) => {
    if (!existsSync(MOBILENET_025_H5)) return t.skip('../shared/backbones/keras-mobilenet-0.25 is absent');
    const { model: reference } = await loadKerasModel(MOBILENET_025_H5);
    const ours = mobilenet({ alpha: 0.25, includeTop: true });
    try {
      const { loadedLayers } = await loadKerasWeightsInto(ours, MOBILENET_025_H5);
      assert.ok(loadedLayers.includes('conv_dw_13') && loadedLayers.includes('conv_preds'));
      const images = tf.tidy(() => tf.randomUniform([2, 224, 224, 3], -1, 1, 'float32', 7));
      const compare = (layer: string): number =>
        tf.tidy(() => {
          const cut = (m: tf.LayersModel) => tf.model({ inputs: m.inputs, outputs: m.getLayer(layer).output as tf.SymbolicTensor });
          const a = cut(ours).predict(images) as tf.Tensor;
          const b = cut(reference).predict(images) as tf.Tensor;
          assert.deepEqual(a.shape, b.shape);
          assert.ok(b.abs().max().dataSync()[0] > 0.1, `${layer} features are not all zero`);
          return a.sub(b).abs().max().dataSync()[0];
        });
      const features = compare('conv_pw_13_relu');
      assert.ok(features < 1e-4, `max |diff| at conv_pw_13_relu = ${features}`);
      const predictions = compare('predictions');
      assert.ok(predictions < 1e-4, `max |diff| at predictions = ${predictions}`);
      images.dispose();
    } finally {
      ours.dispose();
      reference.dispose();
    }
  });
});
