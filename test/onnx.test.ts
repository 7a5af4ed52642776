import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { loadTfjsFolder } from '../src/formats/tfjs-folder.ts';
import { createOnnxExtractor, exportToOnnx } from '../src/engines/onnx.ts';
import { UnsupportedLayerError, type Pooling } from '../src/engines/types.ts';
import { FinetuneError, UsageError } from '../src/errors.ts';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const TOLERANCE = 1e-4;

before(async () => {
  // The wasm backend is what the tfjs engine picks on these machines, and it makes the
  // reference for the real networks ~40× faster than the pure-JS cpu backend.
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) await tf.setBackend('cpu');
  } catch {
    await tf.setBackend('cpu');
  }
});

/** Deterministic uniform noise in [lo, hi). */
function noise(length: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** Replaces every weight with noise so that BN statistics, biases and alphas all matter. */
function randomize(model: tf.LayersModel, seed = 1): void {
  for (const layer of model.layers) {
    const values = layer.weights.map((w, i) => {
      const size = w.shape.reduce((a: number, b) => a * (b ?? 1), 1);
      const positive = /variance/.test(w.originalName);
      return tf.tensor(noise(size, seed * 1000 + i, positive ? 0.5 : -0.5, positive ? 1.5 : 0.5), w.shape as number[]);
    });
    if (values.length > 0) layer.setWeights(values);
    tf.dispose(values);
    seed++;
  }
}

/** What the tfjs engine computes: the sub-model up to `layer`, then the same pooling. */
function tfjsFeatures(model: tf.LayersModel, layer: string, pooling: Pooling, images: Float32Array, count: number): Float32Array {
  return tf.tidy(() => {
    const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(layer).output as tf.SymbolicTensor });
    const [, h, w, c] = model.inputs[0].shape as number[];
    const out = sub.predict(tf.tensor4d(images, [count, h, w, c])) as tf.Tensor;
    const pooled = out.rank !== 4 ? out.reshape([count, -1]) : pooling === 'avg' ? out.mean([1, 2]) : pooling === 'max' ? out.max([1, 2]) : pooling === 'avgmax' ? tf.concat([out.mean([1, 2]), out.max([1, 2])], 1) : out.reshape([count, -1]);
    return pooled.dataSync() as Float32Array;
  });
}

function relativeError(expected: Float32Array, actual: Float32Array): number {
  assert.equal(actual.length, expected.length, 'feature count');
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(expected[i] - actual[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  assert.ok(scale > 0, 'reference features are all zero: the test would prove nothing');
  return diff / scale;
}

async function assertMatchesTfjs(model: tf.LayersModel, layer: string, pooling: Pooling, { count = 2, seed = 7, lo = -1, hi = 1 } = {}): Promise<number> {
  const [, h, w, c] = model.inputs[0].shape as number[];
  const images = noise(count * h * w * c, seed, lo, hi);
  const extractor = await createOnnxExtractor(model, { layer, pooling, threads: 1 });
  try {
    assert.deepEqual(extractor.inputSize, [h, w]);
    const actual = await extractor.run(images, count);
    const expected = tfjsFeatures(model, layer, pooling, images, count);
    assert.equal(extractor.featureSize * count, expected.length, 'featureSize');
    const error = relativeError(expected, actual);
    assert.ok(error <= TOLERANCE, `${layer}/${pooling}: relative error ${error.toExponential(2)} > ${TOLERANCE}`);
    return error;
  } finally {
    await extractor.dispose();
  }
}

/** A functional model on a small odd-sized input (odd sizes exercise TF's asymmetric 'same' pads). */
function tiny(build: (x: tf.SymbolicTensor) => tf.SymbolicTensor, shape: [number, number, number] = [15, 13, 3]): tf.LayersModel {
  const input = tf.input({ shape });
  const model = tf.model({ inputs: input, outputs: build(input) });
  randomize(model);
  return model;
}

function apply(layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]): tf.SymbolicTensor {
  return layer.apply(x) as tf.SymbolicTensor;
}

function vggShaped(): tf.LayersModel {
  const input = tf.input({ shape: [32, 24, 3] });
  let x = input;
  for (const [block, filters] of [[1, 8], [2, 16], [3, 16]]) {
    for (let i = 1; i <= 2; i++) x = apply(tf.layers.conv2d({ name: `block${block}_conv${i}`, filters, kernelSize: 3, padding: 'same', activation: 'relu' }), x);
    x = apply(tf.layers.maxPooling2d({ name: `block${block}_pool`, poolSize: 2, strides: 2 }), x);
  }
  x = apply(tf.layers.flatten({ name: 'flatten' }), x);
  x = apply(tf.layers.dense({ name: 'fc1', units: 12, activation: 'relu' }), x);
  x = apply(tf.layers.dense({ name: 'predictions', units: 3, activation: 'softmax' }), x);
  const model = tf.model({ inputs: input, outputs: x });
  randomize(model);
  return model;
}

describe('onnx engine: VGG-shaped network', () => {
  const model = vggShaped();
  after(() => model.dispose());

  for (const pooling of ['avg', 'max', 'avgmax', 'flatten'] as const) {
    test(`block3_pool with ${pooling} pooling matches tfjs`, async () => {
      await assertMatchesTfjs(model, 'block3_pool', pooling, { count: 3 });
    });
  }

  test('a Dense feature layer ignores pooling', async () => {
    await assertMatchesTfjs(model, 'fc1', 'avg');
    assert.equal(exportToOnnx(model, { layer: 'predictions', pooling: 'max' }).featureSize, 3);
  });

  test('export reports feature size and input size', () => {
    const flat = exportToOnnx(model, { layer: 'block3_pool', pooling: 'flatten' });
    assert.equal(flat.featureSize, 4 * 3 * 16);
    assert.deepEqual(flat.inputSize, [32, 24]);
    assert.ok(flat.bytes.byteLength > 0);
    assert.equal(exportToOnnx(model, { layer: 'block3_pool', pooling: 'avg' }).featureSize, 16);
  });
});

describe('onnx engine: one layer kind at a time', () => {
  const cases: Record<string, { build: (x: tf.SymbolicTensor) => tf.SymbolicTensor; pooling?: Pooling; shape?: [number, number, number] }> = {
    'conv same stride 2': { build: (x) => apply(tf.layers.conv2d({ name: 'f', filters: 5, kernelSize: 3, strides: 2, padding: 'same' }), x) },
    'conv same even kernel, stride (2,3)': { build: (x) => apply(tf.layers.conv2d({ name: 'f', filters: 4, kernelSize: [4, 2], strides: [2, 3], padding: 'same' }), x) },
    'conv valid stride 2': { build: (x) => apply(tf.layers.conv2d({ name: 'f', filters: 4, kernelSize: 3, strides: 2, padding: 'valid', activation: 'relu' }), x) },
    'conv dilation 2 same': { build: (x) => apply(tf.layers.conv2d({ name: 'f', filters: 4, kernelSize: 3, dilationRate: 2, padding: 'same' }), x) },
    'conv without bias': { build: (x) => apply(tf.layers.conv2d({ name: 'f', filters: 4, kernelSize: 3, useBias: false }), x) },
    'depthwise multiplier 2, same, stride 2': {
      build: (x) => apply(tf.layers.depthwiseConv2d({ name: 'f', kernelSize: 3, depthMultiplier: 2, strides: 2, padding: 'same' }), x),
    },
    'separable conv': { build: (x) => apply(tf.layers.separableConv2d({ name: 'f', filters: 6, kernelSize: 3, depthMultiplier: 2, padding: 'same' }), x) },
    'BN folded into conv': {
      build: (x) => apply(tf.layers.batchNormalization({ name: 'f' }), apply(tf.layers.conv2d({ filters: 4, kernelSize: 3, useBias: false }), x)),
    },
    'BN folded into depthwise': {
      build: (x) => apply(tf.layers.batchNormalization({ name: 'f', axis: 3, scale: false }), apply(tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2 }), x)),
    },
    'BN standalone (after relu conv, on the input, shared conv output)': {
      build: (x) => {
        const normed = apply(tf.layers.batchNormalization({}), x);
        const conv = apply(tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same' }), normed);
        const bn = apply(tf.layers.batchNormalization({}), conv);
        const relu = apply(tf.layers.conv2d({ filters: 4, kernelSize: 1, activation: 'relu' }), bn);
        return apply(tf.layers.add({ name: 'f' }), [apply(tf.layers.batchNormalization({}), relu), conv]);
      },
    },
    'BN on a Dense output': { build: (x) => apply(tf.layers.batchNormalization({ name: 'f' }), apply(tf.layers.dense({ units: 5 }), apply(tf.layers.flatten({}), x))) },
    'ReLU max_value 6': { build: (x) => apply(tf.layers.reLU({ name: 'f', maxValue: 6 }), apply(tf.layers.conv2d({ filters: 4, kernelSize: 3 }), x)), },
    'LeakyReLU': { build: (x) => apply(tf.layers.leakyReLU({ name: 'f', alpha: 0.2 }), apply(tf.layers.conv2d({ filters: 4, kernelSize: 3 }), x)) },
    'ZeroPadding2D asymmetric': { build: (x) => apply(tf.layers.conv2d({ name: 'f', filters: 3, kernelSize: 3 }), apply(tf.layers.zeroPadding2d({ padding: [[1, 2], [0, 3]] }), x)) },
    'AveragePooling2D same': { build: (x) => apply(tf.layers.averagePooling2d({ name: 'f', poolSize: 3, strides: 2, padding: 'same' }), x) },
    'AveragePooling2D valid': { build: (x) => apply(tf.layers.averagePooling2d({ name: 'f', poolSize: 2, strides: 2, padding: 'valid' }), x) },
    'MaxPooling2D same': { build: (x) => apply(tf.layers.maxPooling2d({ name: 'f', poolSize: 3, strides: 2, padding: 'same' }), x) },
    'Add of three': {
      build: (x) => {
        const branches = [1, 2, 3].map(() => apply(tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same' }), x));
        return apply(tf.layers.add({ name: 'f' }), branches);
      },
    },
    'Concatenate on channels': {
      build: (x) => apply(tf.layers.concatenate({ name: 'f', axis: -1 }), [apply(tf.layers.conv2d({ filters: 4, kernelSize: 1 }), x), x, apply(tf.layers.conv2d({ filters: 2, kernelSize: 1, activation: 'relu' }), x)]),
    },
    'Concatenate on width (axis 2)': { build: (x) => apply(tf.layers.concatenate({ name: 'f', axis: 2 }), [x, apply(tf.layers.conv2d({ filters: 3, kernelSize: 1 }), x)]) },
    'Reshape to 4-D': { build: (x) => apply(tf.layers.conv2d({ name: 'f', filters: 2, kernelSize: 2 }), apply(tf.layers.reshape({ targetShape: [13, 15, 3] }), x)) },
    'Reshape to 3-D then Dense': { build: (x) => apply(tf.layers.dense({ name: 'f', units: 4 }), apply(tf.layers.reshape({ targetShape: [-1, 3] }), x)), pooling: 'flatten' },
    'Dense on a 4-D input': { build: (x) => apply(tf.layers.dense({ name: 'f', units: 5, activation: 'softmax' }), x) },
    'Dropout as the feature layer': { build: (x) => apply(tf.layers.dropout({ name: 'f', rate: 0.5 }), apply(tf.layers.conv2d({ filters: 3, kernelSize: 3 }), x)) },
    'Permute and Cropping2D': { build: (x) => apply(tf.layers.cropping2D({ name: 'f', cropping: [[1, 2], [3, 0]] }), apply(tf.layers.permute({ dims: [2, 1, 3] }), x)) },
    'GlobalAveragePooling2D': { build: (x) => apply(tf.layers.globalAveragePooling2d({ name: 'f' }), apply(tf.layers.conv2d({ filters: 4, kernelSize: 3 }), x)) },
    'GlobalMaxPooling2D': { build: (x) => apply(tf.layers.globalMaxPooling2d({ name: 'f' }), apply(tf.layers.conv2d({ filters: 4, kernelSize: 3 }), x)) },
    'Multiply, Maximum, Average': {
      build: (x) => {
        const a = apply(tf.layers.conv2d({ filters: 3, kernelSize: 1 }), x);
        const m = apply(tf.layers.multiply({}), [a, x]);
        return apply(tf.layers.average({ name: 'f' }), [m, apply(tf.layers.maximum({}), [a, x])]);
      },
    },
  };
  for (const [name, { build, pooling, shape }] of Object.entries(cases)) {
    test(`${name} matches tfjs`, async () => {
      const model = tiny(build, shape);
      try {
        await assertMatchesTfjs(model, 'f', pooling ?? 'flatten');
        if (!pooling && model.getLayer('f').outputShape.length === 4) await assertMatchesTfjs(model, 'f', 'avg');
      } finally {
        model.dispose();
      }
    });
  }

  test('activations match tfjs (softmax over channels, selu, swish, hardSigmoid, …)', async () => {
    const names = ['relu', 'relu6', 'sigmoid', 'tanh', 'softmax', 'elu', 'selu', 'swish', 'hardSigmoid', 'softplus', 'softsign', 'mish', 'gelu', 'linear'] as const;
    const model = tiny((x) => {
      const outs = names.map((activation) => apply(tf.layers.conv2d({ filters: 3, kernelSize: 3, activation }), x));
      return apply(tf.layers.concatenate({ name: 'f' }), outs);
    });
    try {
      // Wider inputs so relu6/hardSigmoid clip and softmax sees large logits.
      await assertMatchesTfjs(model, 'f', 'flatten', { lo: -4, hi: 4 });
    } finally {
      model.dispose();
    }
  });
});

describe('onnx engine: what it refuses', () => {
  test('an untranslated layer on the path throws UnsupportedLayerError naming it', () => {
    const model = tiny((x) => apply(tf.layers.conv2d({ name: 'f', filters: 2, kernelSize: 3 }), apply(tf.layers.upSampling2d({ name: 'up', size: [2, 2] }), x)));
    try {
      assert.throws(
        () => exportToOnnx(model, { layer: 'f', pooling: 'avg' }),
        (err: unknown) => err instanceof UnsupportedLayerError && err.layerName === 'up' && err.className === 'UpSampling2D',
      );
    } finally {
      model.dispose();
    }
  });

  test('createOnnxExtractor rejects with the same error, so callers can fall back to tfjs', async () => {
    const model = tiny((x) => apply(tf.layers.upSampling2d({ name: 'f' }), x));
    try {
      await assert.rejects(createOnnxExtractor(model, { layer: 'f', pooling: 'avg' }), UnsupportedLayerError);
    } finally {
      model.dispose();
    }
  });

  test('an untranslated layer after the feature layer does not matter', async () => {
    const model = tiny((x) => apply(tf.layers.upSampling2d({}), apply(tf.layers.conv2d({ name: 'f', filters: 2, kernelSize: 3 }), x)));
    try {
      await assertMatchesTfjs(model, 'f', 'max');
    } finally {
      model.dispose();
    }
  });

  test('a feature layer that is not in the model is a usage error listing the layers', () => {
    const model = vggShaped();
    try {
      assert.throws(() => exportToOnnx(model, { layer: 'block9_pool', pooling: 'avg' }), (err: unknown) => err instanceof UsageError && /block9_pool.*block1_conv1/.test(err.message));
    } finally {
      model.dispose();
    }
  });

  test('run() checks the image buffer length; device gpu needs a CUDA provider', async () => {
    const model = tiny((x) => apply(tf.layers.conv2d({ name: 'f', filters: 2, kernelSize: 3 }), x));
    const extractor = await createOnnxExtractor(model, { layer: 'f', pooling: 'avg', threads: 1 });
    try {
      assert.equal(extractor.engine, 'onnx');
      assert.equal(extractor.device, 'cpu');
      await assert.rejects(extractor.run(new Float32Array(10), 1), /15×13×3/);
      const gpu = createOnnxExtractor(model, { layer: 'f', pooling: 'avg', device: 'gpu' }).then(async (e) => {
        assert.equal(e.device, 'cuda');
        await e.dispose();
      });
      await gpu.catch((err: unknown) => {
        assert.ok(err instanceof FinetuneError && /no CUDA provider.*--device cpu/.test(err.message), String(err));
      });
    } finally {
      await extractor.dispose();
      model.dispose();
    }
  });
});

describe('onnx engine: real pretrained networks from ../shared', () => {
  const networks = [
    { folder: 'darknet-tiny', layer: 'leaky_re_lu_15', size: 224 },
    { folder: 'nsfwjs-mobilenet-v2', layer: 'out_relu', size: 224 },
    { folder: 'nsfwjs-inception-v3', layer: 'mixed7', size: 299 },
  ];
  for (const { folder, layer } of networks) {
    const dir = path.join(SHARED, 'backbones', folder);
    test(`${folder} up to ${layer} matches tfjs`, async (t) => {
      if (!existsSync(dir)) {
        t.skip(`${dir} is absent; real-network check skipped`);
        return;
      }
      const { model } = await loadTfjsFolder(dir);
      try {
        // Images preprocessed as these networks expect (x/255).
        await assertMatchesTfjs(model, layer, 'avg', { count: 1, lo: 0, hi: 1 });
      } finally {
        model.dispose();
      }
    });
  }
});
