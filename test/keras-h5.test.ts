import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { ModelFileError } from '../src/errors.ts';
import { kerasConfigToTfjs } from '../src/formats/keras-config.ts';
import { isWholeModelH5, loadKerasModel, loadKerasWeightsInto, readKerasWeights } from '../src/formats/keras-h5.ts';
import { weightsChecksum } from '../src/backbones/checksum.ts';
import { writeKerasH5 } from './fixtures/keras-h5-writer.ts';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../shared');

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-keras-h5-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** VGG16's layer names and layout at toy size, so weight files map by name as the real ones do. */
function tinyVgg(opts: { seed: number; top?: boolean; channels?: number }): tf.LayersModel {
  const { seed, top = true, channels = 3 } = opts;
  let n = seed * 100;
  const init = () => ({
    kernelInitializer: tf.initializers.glorotUniform({ seed: n++ }),
    biasInitializer: tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: n++ }),
  });
  const input = tf.input({ shape: [12, 12, channels], name: 'input_1' });
  const conv = (name: string, filters: number) =>
    tf.layers.conv2d({ name, filters, kernelSize: 3, padding: 'same', activation: 'relu', ...init() });
  let x = conv('block1_conv1', 4).apply(input) as tf.SymbolicTensor;
  x = conv('block1_conv2', 4).apply(x) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ name: 'block1_pool', poolSize: 2 }).apply(x) as tf.SymbolicTensor;
  x = conv('block2_conv1', 6).apply(x) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ name: 'block2_pool', poolSize: 2 }).apply(x) as tf.SymbolicTensor;
  if (top) {
    x = tf.layers.flatten({ name: 'flatten' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ name: 'fc1', units: 8, activation: 'relu', ...init() }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ name: 'predictions', units: 3, activation: 'softmax', ...init() }).apply(x) as tf.SymbolicTensor;
  }
  return tf.model({ inputs: input, outputs: x });
}

function weightValues(model: tf.LayersModel): Float32Array[] {
  return model.getWeights().map((w) => w.dataSync() as Float32Array);
}

function predict(model: tf.LayersModel, x: tf.Tensor): Float32Array {
  return tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync() as Float32Array);
}

async function rejectsWith(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ModelFileError, `expected ModelFileError, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'), 'the message is one line');
    return true;
  });
}

describe('Keras weights files', () => {
  for (const style of ['underscore', 'slash'] as const) {
    test(`${style} names: a fresh model gets every weight and the same predictions`, async () => {
      const source = tinyVgg({ seed: 1 });
      const target = tinyVgg({ seed: 2 });
      const file = path.join(dir, `vgg-${style}.h5`);
      await writeKerasH5(source, file, { style });
      assert.notDeepEqual(weightValues(target), weightValues(source));

      const { checksum, loadedLayers } = await loadKerasWeightsInto(target, file);

      assert.deepEqual(weightValues(target), weightValues(source));
      const x = tf.randomUniform([2, 12, 12, 3], 0, 1, 'float32', 7);
      assert.deepEqual(predict(target, x), predict(source, x));
      x.dispose();
      assert.equal(checksum, createHash('sha256').update(await readFile(file)).digest('hex'));
      assert.deepEqual(loadedLayers, ['block1_conv1', 'block1_conv2', 'block2_conv1', 'fc1', 'predictions']);
      assert.equal(await isWholeModelH5(file), false);
      source.dispose();
      target.dispose();
    });
  }

  test('readKerasWeights lists every layer, weightless ones empty, in file order', async () => {
    const model = tinyVgg({ seed: 3 });
    const file = path.join(dir, 'read.h5');
    await writeKerasH5(model, file, { style: 'slash' });
    const weights = await readKerasWeights(file);
    assert.deepEqual([...weights.keys()], model.layers.map((l) => l.name));
    assert.deepEqual(weights.get('block1_pool'), []);
    const conv = weights.get('block1_conv1')!;
    assert.deepEqual(conv.map((w) => w.name), ['block1_conv1/kernel:0', 'block1_conv1/bias:0']);
    assert.deepEqual(conv[0].shape, [3, 3, 3, 4]);
    assert.ok(conv[0].data instanceof Float32Array);
    assert.deepEqual(conv[0].data, model.getLayer('block1_conv1').getWeights()[0].dataSync());
    model.dispose();
  });

  test('a no-top model loads from a with-top file; a with-top model from a no-top file names what is missing', async () => {
    const withTop = tinyVgg({ seed: 4 });
    const noTop = tinyVgg({ seed: 5, top: false });
    const withTopFile = path.join(dir, 'with-top.h5');
    const noTopFile = path.join(dir, 'no-top.h5');
    await writeKerasH5(withTop, withTopFile, { style: 'slash' });
    await writeKerasH5(noTop, noTopFile, { style: 'underscore' });

    const { loadedLayers } = await loadKerasWeightsInto(noTop, withTopFile);
    assert.deepEqual(loadedLayers, ['block1_conv1', 'block1_conv2', 'block2_conv1']);
    assert.deepEqual(noTop.getLayer('block2_conv1').getWeights()[0].dataSync(), withTop.getLayer('block2_conv1').getWeights()[0].dataSync());

    const fresh = tinyVgg({ seed: 6 });
    const before = weightValues(fresh);
    await rejectsWith(loadKerasWeightsInto(fresh, noTopFile), /no-top\.h5.*fc1, predictions/);
    assert.deepEqual(weightValues(fresh), before, 'a failed load leaves the model untouched');
    for (const m of [withTop, noTop, fresh]) m.dispose();
  });

  test('a shape mismatch names the layer, the weight and both shapes', async () => {
    const model = tinyVgg({ seed: 7 });
    const fourChannels = tinyVgg({ seed: 8, channels: 4 });
    for (const style of ['underscore', 'slash'] as const) {
      const file = path.join(dir, `shape-${style}.h5`);
      await writeKerasH5(model, file, { style });
      await rejectsWith(
        loadKerasWeightsInto(fourChannels, file),
        /shape-\w+\.h5: layer block1_conv1 weight kernel has shape \[3,3,3,4\] in the file but \[3,3,4,4\] in the model/,
      );
    }
    model.dispose();
    fourChannels.dispose();
  });

  test('a missing file, or a text file named .h5, is a ModelFileError naming the path', async () => {
    const model = tinyVgg({ seed: 9 });
    const missing = path.join(dir, 'nope.h5');
    const text = path.join(dir, 'notes.h5');
    await writeFile(text, 'this is not HDF5\n');
    await rejectsWith(loadKerasWeightsInto(model, missing), /nope\.h5 not found: expected a Keras HDF5 file/);
    await rejectsWith(readKerasWeights(text), /notes\.h5 is not an HDF5 file: expected a Keras HDF5 file/);
    await rejectsWith(loadKerasModel(text), /notes\.h5 is not an HDF5 file/);
    await rejectsWith(isWholeModelH5(missing), /nope\.h5 not found/);
    model.dispose();
  });
});

describe('whole-model Keras files', () => {
  test('BatchNormalization + GlobalAveragePooling2D round-trip with identical predictions', async () => {
    const input = tf.input({ shape: [10, 10, 3], name: 'image' });
    let x = tf.layers.conv2d({ name: 'conv', filters: 5, kernelSize: 3, useBias: false }).apply(input) as tf.SymbolicTensor;
    x = tf.layers.batchNormalization({ name: 'conv_bn' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.reLU({ name: 'conv_relu', maxValue: 6 }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ name: 'predictions', units: 4, activation: 'softmax' }).apply(x) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: x, name: 'small_net' });
    // Non-trivial batch statistics, so a mix-up of gamma/beta/mean/variance changes the output.
    model.getLayer('conv_bn').setWeights([
      tf.tensor1d([1.5, 0.5, 2, 1, 0.7]),
      tf.tensor1d([0.1, -0.2, 0.3, 0, 0.5]),
      tf.tensor1d([0.2, -0.1, 0.05, 0.3, -0.4]),
      tf.tensor1d([0.5, 2, 1.5, 0.8, 3]),
    ]);
    const file = path.join(dir, 'whole.h5');
    await writeKerasH5(model, file, { style: 'slash', wholeModel: true });
    assert.equal(await isWholeModelH5(file), true);

    const { model: loaded, checksum } = await loadKerasModel(file);

    assert.match(checksum, /^[0-9a-f]{64}$/);
    assert.deepEqual(loaded.layers.map((l) => l.name), model.layers.map((l) => l.name));
    const sample = tf.randomUniform([3, 10, 10, 3], -1, 1, 'float32', 11);
    assert.deepEqual(predict(loaded, sample), predict(model, sample));
    sample.dispose();
    model.dispose();
    loaded.dispose();
  });

  test('a weights-only file given to loadKerasModel says what is needed', async () => {
    const model = tinyVgg({ seed: 10 });
    const file = path.join(dir, 'weights-only.h5');
    await writeKerasH5(model, file, { style: 'slash' });
    await rejectsWith(loadKerasModel(file), /weights-only\.h5 holds weights only \(no model_config\)/);
    model.dispose();
  });
});

describe('keras-config → tfjs', () => {
  const kerasConfig = () => ({
    class_name: 'Functional',
    config: {
      name: 'net',
      layers: [
        {
          class_name: 'InputLayer',
          config: { batch_input_shape: [null, null, null, 3], dtype: 'float32', sparse: false, ragged: false, name: 'img' },
          name: 'img',
          inbound_nodes: [],
        },
        {
          module: 'keras.layers',
          registered_name: null,
          class_name: 'Conv2D',
          config: {
            name: 'conv', trainable: true, filters: 4, kernel_size: [3, 3], strides: [1, 1], padding: 'same',
            data_format: 'channels_last', dilation_rate: [1, 1], groups: 1, activation: 'linear', use_bias: true,
            dtype: { module: 'keras', class_name: 'Policy', config: { name: 'float32' }, registered_name: null },
            kernel_initializer: { module: 'keras.initializers', class_name: 'GlorotUniform', config: { seed: 1 }, registered_name: null },
            bias_initializer: { class_name: 'RandomUniform', config: { minval: -1, maxval: 1, seed: 2 } },
          },
          name: 'conv',
          inbound_nodes: [[['img', 0, 0, {}]]],
        },
        {
          class_name: 'BatchNormalization',
          config: { name: 'bn', axis: [3], momentum: 0.99, epsilon: 0.001, center: true, scale: true, synchronized: false },
          name: 'bn',
          inbound_nodes: [[['conv', 0, 0, {}]]],
        },
        {
          class_name: 'GlobalAveragePooling2D',
          config: { name: 'gap', data_format: 'channels_last', keepdims: true },
          name: 'gap',
          inbound_nodes: [[['bn', 0, 0, {}]]],
        },
        {
          class_name: 'Conv2D',
          config: {
            name: 'head', filters: 5, kernel_size: [1, 1], padding: 'same', groups: 1, use_bias: true,
            kernel_initializer: { class_name: 'GlorotUniform', config: { seed: 3 } },
            bias_initializer: { class_name: 'RandomUniform', config: { minval: -1, maxval: 1, seed: 4 } },
          },
          name: 'head',
          inbound_nodes: [[['gap', 0, 0, {}]]],
        },
      ],
      input_layers: [['img', 0, 0]],
      output_layers: [['head', 0, 0]],
    },
  });

  test('Functional, list axis, keepdims, policy dtype and Keras 2.13 keys are each mapped', async () => {
    const fixed = (await kerasConfigToTfjs(kerasConfig(), 'net.h5')) as any;
    assert.equal(fixed.class_name, 'Model');
    const layers = fixed.config.layers as any[];
    const byName = new Map(layers.map((l) => [l.config.name, l]));
    assert.equal(byName.get('bn').config.axis, 3);
    assert.equal('synchronized' in byName.get('bn').config, false);
    assert.equal('groups' in byName.get('conv').config, false);
    assert.equal(byName.get('conv').config.dtype, 'float32');
    assert.equal('ragged' in byName.get('img').config, false);
    assert.ok(!JSON.stringify(fixed).includes('registered_name') && !JSON.stringify(fixed).includes('"module"'));
    assert.equal('keepdims' in byName.get('gap').config, false);
    const reshape = layers[layers.indexOf(byName.get('gap')) + 1];
    assert.equal(reshape.class_name, 'Reshape');
    assert.deepEqual(reshape.config.target_shape, [1, 1, 4]);
    assert.deepEqual(reshape.inbound_nodes, [[['gap', 0, 0, {}]]]);
    assert.deepEqual(byName.get('head').inbound_nodes, [[[reshape.config.name, 0, 0, {}]]]);
  });

  test('keepdims as pooling + Reshape gives the Keras result at two input sizes', async () => {
    const model = await tf.models.modelFromJSON({ modelTopology: await kerasConfigToTfjs(kerasConfig(), 'net.h5') } as unknown as Parameters<typeof tf.models.modelFromJSON>[0]);
    const [kernel, bias] = model.getLayer('head').getWeights();
    const before = tf.memory().numTensors;
    for (const size of [6, 11]) {
      tf.tidy(() => {
        const x = tf.randomUniform([2, size, size, 3], -1, 1, 'float32', size);
        const normalised = model.getLayer('bn').apply(model.getLayer('conv').apply(x)) as tf.Tensor4D;
        const expected = tf.conv2d(tf.mean(normalised, [1, 2], true) as tf.Tensor4D, kernel as tf.Tensor4D, 1, 'same').add(bias);
        const actual = model.predict(x) as tf.Tensor;
        assert.deepEqual(actual.shape, [2, 1, 1, 5]);
        const diff = tf.max(tf.abs(actual.sub(expected))).dataSync()[0];
        assert.ok(diff < 1e-5, `size ${size}: max difference ${diff}`);
      });
    }
    assert.equal(tf.memory().numTensors, before);
    model.dispose();
  });

  test('an argument tfjs cannot express is an error naming the layer and argument', async () => {
    const grouped = kerasConfig();
    (grouped.config.layers[1].config as any).groups = 2;
    await assert.rejects(kerasConfigToTfjs(grouped, 'g.h5'), (err: unknown) => {
      assert.ok(err instanceof ModelFileError);
      assert.match(err.message, /^g\.h5: layer conv \(Conv2D\) has groups=2, which tfjs-layers cannot express/);
      return true;
    });
    const twoAxes = kerasConfig();
    (twoAxes.config.layers[2].config as any).axis = [1, 3];
    await assert.rejects(kerasConfigToTfjs(twoAxes, 'a.h5'), /layer bn \(BatchNormalization\) has axis=\[1,3\]/);
  });

  test('Keras 3 inbound nodes ({args, kwargs} with keras_history) become tfjs node lists', async () => {
    const config = kerasConfig() as any;
    const tensor = (name: string) => ({ class_name: '__keras_tensor__', config: { shape: [null, 4], dtype: 'float32', keras_history: [name, 0, 0] } });
    config.config.layers[2].inbound_nodes = [{ args: [tensor('conv')], kwargs: { training: false } }];
    config.config.output_layers = ['head', 0, 0];
    const fixed = (await kerasConfigToTfjs(config, 'k3.h5')) as any;
    assert.deepEqual(fixed.config.layers[2].inbound_nodes, [[['conv', 0, 0, { training: false }]]]);
    assert.deepEqual(fixed.config.output_layers, [['head', 0, 0]]);
  });
});

describe('the real tf.keras 2.8 MobileNet file in ../shared', () => {
  const file = path.join(SHARED, 'backbones/keras-mobilenet-0.25/mobilenet_v1_0.25_224.h5');
  const present = existsSync(file);

  async function photo(name: string): Promise<tf.Tensor4D> {
    const { data } = await sharp(path.join(SHARED, 'images', name))
      .removeAlpha()
      .resize(224, 224, { fit: 'fill' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    return tf.tidy(() => tf.tensor4d(new Float32Array(data), [1, 224, 224, 3]).div(127.5).sub(1) as tf.Tensor4D);
  }

  function top5(model: tf.LayersModel, x: tf.Tensor): number[] {
    const probs = predict(model, x);
    return [...probs.keys()].sort((a, b) => probs[b] - probs[a]).slice(0, 5);
  }

  test('loads, and classifies the cat and the dog photos', { skip: present ? false : 'skipped: ../shared is absent (needs the tf.keras MobileNet .h5)' }, async () => {
    const { model } = await loadKerasModel(file);
    assert.deepEqual(model.getLayer('conv_pw_13_relu').outputShape, [null, 7, 7, 256]);
    assert.deepEqual(model.outputs[0].shape, [null, 1000]);
    const cat = await photo('cat-caffe.jpg');
    const dog = await photo('dog-bicycle-darknet.jpg');
    const before = tf.memory().numTensors;
    const catTop = top5(model, cat);
    const dogTop = top5(model, dog);
    assert.equal(tf.memory().numTensors, before);
    assert.ok(catTop[0] >= 277 && catTop[0] <= 287, `cat photo top-1 is class ${catTop[0]}`);
    assert.ok(dogTop.some((c) => c >= 151 && c <= 268), `dog photo top-5 is ${dogTop.join(', ')}`);
    tf.dispose([cat, dog]);
    model.dispose();
  });
});

test('the weights checksum is remembered per file and recomputed when the file changes', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-checksum-'));
  const saved = process.env.FINETUNE_HOME;
  process.env.FINETUNE_HOME = dir;
  try {
    const file = path.join(dir, 'w.h5');
    await writeFile(file, 'first version of the weights');
    const sha = (text: string) => createHash('sha256').update(text).digest('hex');
    assert.equal(await weightsChecksum(file), sha('first version of the weights'));
    assert.match(await readFile(path.join(dir, 'checksums.json'), 'utf8'), new RegExp(sha('first version of the weights')));
    assert.equal(await weightsChecksum(file), sha('first version of the weights'));
    await appendFile(file, ', edited');
    assert.equal(await weightsChecksum(file), sha('first version of the weights, edited'));
  } finally {
    if (saved === undefined) delete process.env.FINETUNE_HOME;
    else process.env.FINETUNE_HOME = saved;
    await rm(dir, { recursive: true, force: true });
  }
});
