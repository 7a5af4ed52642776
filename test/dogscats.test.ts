/**
 * Real photos through a real pretrained network: a slice of ../shared/data/dogscats with the
 * darknet-tiny ImageNet backbone must land well above chance. Skipped when ../shared is absent.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { train } from '../src/index.ts';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const DOGSCATS = path.join(SHARED, 'data', 'dogscats');
const DARKNET = path.join(SHARED, 'backbones', 'darknet-tiny');
const PER_CLASS = { train: 60, valid: 25 } as const;

let tmp: string | undefined;
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A fast.ai-layout folder of links to the first `count` photos of each class and split. */
async function sliceOfDogscats(root: string): Promise<void> {
  for (const split of ['train', 'valid'] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = path.join(DOGSCATS, split, cls);
      const to = path.join(root, split, cls);
      await mkdir(to, { recursive: true });
      const files = (await readdir(from)).filter((f) => /\.jpe?g$/i.test(f)).sort().slice(0, PER_CLASS[split]);
      for (const f of files) await symlink(path.join(from, f), path.join(to, f));
    }
  }
}

test('dogscats slice with darknet-tiny: validation accuracy ≥ 85%', { timeout: 120_000 }, async (t) => {
  if (!existsSync(DOGSCATS) || !existsSync(path.join(DARKNET, 'model.json'))) {
    t.skip(`${SHARED} (real photos and backbones) is absent; nothing to measure`);
    return;
  }
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-dogscats-'));
  const data = path.join(tmp, 'dogscats');
  await sliceOfDogscats(data);
  const started = performance.now();
  const result = await train(data, { backbone: DARKNET, engine: 'tfjs', cacheDir: false, epochs: 15, seed: 42 });
  try {
    const seconds = (performance.now() - started) / 1000;
    const acc = result.manifest.metrics.valAccuracy!;
    t.diagnostic(`darknet-tiny → ${result.manifest.backbones[0].layer}: val accuracy ${(acc * 100).toFixed(1)}% on ${result.counts.valid} photos, ${seconds.toFixed(1)} s (${result.timing.imagesPerSecond.toFixed(1)} images/s on ${result.device})`);
    assert.deepEqual(result.classes, ['cats', 'dogs']);
    assert.deepEqual(result.counts, { train: 2 * PER_CLASS.train, valid: 2 * PER_CLASS.valid, skipped: 0 });
    assert.equal(result.manifest.backbones[0].layer, 'leaky_re_lu_15');
    assert.ok(acc >= 0.85, `val accuracy ${acc} is not well above chance`);
  } finally {
    result.head.dispose();
  }
});

const MOBILENET_V2_WEIGHTS = path.join(SHARED, 'backbones', 'keras-mobilenet-v2-1.0', 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');

test('dogscats slice with the converted MobileNetV2 weights, registry path and the same network as an ONNX file: ≥ 95% both', { timeout: 300_000 }, async (t) => {
  if (!existsSync(DOGSCATS) || !existsSync(MOBILENET_V2_WEIGHTS)) {
    t.skip(`${SHARED} (real photos and the MobileNetV2 weights) is absent; nothing to measure`);
    return;
  }
  const { exportBackboneOnnx } = await import('../src/backbones/export-onnx.ts');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-dogscats-v2-'));
  try {
    const data = path.join(dir, 'dogscats');
    await sliceOfDogscats(data);
    const onnxFile = path.join(dir, 'mobilenet_v2.onnx');
    await exportBackboneOnnx('mobilenet_v2', onnxFile, { weights: MOBILENET_V2_WEIGHTS });
    const accuracies: number[] = [];
    for (const options of [{ backbone: 'mobilenet_v2', weights: MOBILENET_V2_WEIGHTS }, { backbone: onnxFile }]) {
      const result = await train(data, { ...options, cacheDir: false, epochs: 15, seed: 42, ensemble: 1 });
      const acc = result.manifest.metrics.valAccuracy!;
      result.head.dispose();
      t.diagnostic(`${options.backbone} → ${result.manifest.backbones[0].layer}: val accuracy ${(acc * 100).toFixed(1)}% on ${result.counts.valid} photos`);
      assert.ok(acc >= 0.95, `${options.backbone}: val accuracy ${acc}`);
      accuracies.push(acc);
    }
    assert.equal(accuracies[1], accuracies[0], 'the ONNX export of the same network gives the same features, so the same head');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('predict on the onnx engine with a command line of 300 photos (≈ 30 KB) answers every one', { timeout: 120_000 }, async (t) => {
  if (!existsSync(DOGSCATS) || !existsSync(path.join(DARKNET, 'model.json'))) {
    t.skip(`${SHARED} (real photos and backbones) is absent; nothing to measure`);
    return;
  }
  const { saveModel } = await import('../src/bundle/save-model.ts');
  const { spawnSync } = await import('node:child_process');
  const work = await mkdtemp(path.join(os.tmpdir(), 'finetune-argv-'));
  try {
    const data = path.join(work, 'dogscats');
    await sliceOfDogscats(data);
    const result = await train(data, { backbone: DARKNET, cacheDir: false, epochs: 2 });
    const model = path.join(work, 'model');
    await saveModel(model, result, { remember: false });
    result.head.dispose();
    const photos = (await readdir(path.join(DOGSCATS, 'train', 'cats'))).sort().slice(0, 300).map((f) => path.join(DOGSCATS, 'train', 'cats', f));
    // A deep recursion in onnxruntime's graph optimiser once overflowed the worker's stack when argv was long.
    const run = spawnSync(process.execPath, [path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'finetune.js'), 'predict', '--model', model, '--no-cache', '-q', ...photos], {
      encoding: 'utf8',
      cwd: path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'),
      env: { ...process.env, FINETUNE_HOME: work, CI: '1' },
    });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim().split('\n').length, 300);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
