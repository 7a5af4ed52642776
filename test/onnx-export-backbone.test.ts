import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exportBackboneOnnx } from '../src/backbones/export-onnx.ts';
import { loadAnyBackbone } from '../src/backbones/resolve.ts';
import type { Pooling } from '../src/engines/types.ts';
import { UsageError } from '../src/errors.ts';
import { openFeatureSource, type BackboneChoice } from '../src/features/source.ts';
import { noise, writeConvnet } from './fixtures/onnx-graphs.ts';
import { writeTinyBackbone, type TinyBackboneFiles } from './fixtures/tiny-backbone.ts';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const MOBILENET_V2 = path.join(SHARED, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');

let dir: string;
let tiny: TinyBackboneFiles;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-onnx-export-'));
  tiny = await writeTinyBackbone(path.join(dir, 'tiny'), { seed: 5 });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function featuresOf(spec: string, choice: BackboneChoice, images: Float32Array, count: number): Promise<Float32Array> {
  const source = await openFeatureSource(spec, choice, { cacheDir: false, threads: 1, engine: 'onnx' });
  try {
    return await source.extractor.run(images, count);
  } finally {
    await source.close();
  }
}

function maxDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** The exported file, loaded back as --backbone, gives the original's features for every pooling. */
async function assertSameFeatures(spec: string, out: string, choice: BackboneChoice, size: number, poolings: Pooling[], tolerance = 1e-5) {
  const images = noise(2 * size * size * 3, 9, -1, 1);
  for (const pooling of poolings) {
    const original = await featuresOf(spec, { ...choice, pooling }, images, 2);
    const reloaded = await featuresOf(out, { pooling }, images, 2);
    const worst = maxDifference(original, reloaded);
    assert.ok(worst <= tolerance, `${pooling}: max |difference| ${worst}`);
  }
}

describe('finetune models export BACKBONE OUT.onnx --format onnx', () => {
  test('a tfjs folder: the file carries its feature layer, size and preprocessing, and gives the same features back', async () => {
    const out = path.join(dir, 'tiny.onnx');
    const result = await exportBackboneOnnx(tiny.folder, out);
    assert.equal(result.layer, 'block2_pool');
    assert.deepEqual(result.outputShape, [null, 8, 8, 16]);
    const back = await loadAnyBackbone(out);
    assert.equal(back.preprocess, 'unit');
    assert.deepEqual(back.inputSize, [32, 32]);
    await assertSameFeatures(tiny.folder, out, {}, 32, ['avg', 'avgmax', 'flatten']);
  });

  test('a Keras .h5 up to --layer', async () => {
    const out = path.join(dir, 'tiny-conv1.onnx');
    await exportBackboneOnnx(tiny.h5Whole, out, { layer: 'block1_conv1' });
    await assertSameFeatures(tiny.h5Whole, out, { layer: 'block1_conv1' }, 32, ['max', 'flatten']);
  });

  test('an ONNX file cut at --layer keeps its own input and gives the same features', async () => {
    const net = path.join(dir, 'net', 'model.onnx');
    await mkdir(path.dirname(net), { recursive: true });
    await writeConvnet(net, { externalData: true });
    const out = path.join(dir, 'net-relu.onnx');
    const result = await exportBackboneOnnx(net, out, { layer: 'relu' });
    assert.deepEqual(result.outputShape, [null, 6, 8, 8]);
    assert.equal((await loadAnyBackbone(out)).layer, 'relu');
    await assertSameFeatures(net, out, { layer: 'relu' }, 8, ['avg', 'avgmax', 'flatten']);
  });

  test('an existing file or a name without .onnx is refused before any work', async () => {
    await assert.rejects(exportBackboneOnnx(tiny.folder, path.join(dir, 'tiny.onnx')), (err: Error) => err instanceof UsageError && /already exists/.test(err.message));
    await assert.rejects(exportBackboneOnnx(tiny.folder, path.join(dir, 'tiny.bin')), (err: Error) => err instanceof UsageError && /\.onnx ending/.test(err.message));
  });

  test('the registry mobilenet_v2 with its real weights (../shared)', { skip: !existsSync(MOBILENET_V2) && `skipped: ${MOBILENET_V2} is absent` }, async () => {
    const out = path.join(dir, 'mobilenet_v2.onnx');
    const result = await exportBackboneOnnx('mobilenet_v2', out, { weights: MOBILENET_V2 });
    assert.equal(result.layer, 'out_relu');
    assert.deepEqual(result.outputShape, [null, 7, 7, 1280]);
    assert.equal((await loadAnyBackbone(out)).preprocess, 'tf');
    await assertSameFeatures('mobilenet_v2', out, { weights: MOBILENET_V2 }, 224, ['avgmax']);
  });
});
