/**
 * `train --fine-tune all` end to end: the head on frozen features, then the whole backbone on
 * images (onnxruntime); the bundle keeps the trained network as backbone.onnx (checksummed),
 * and predict/evaluate run exactly that network, without the original weights.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ModelFileError } from '../src/errors.ts';
import { evaluate } from '../src/pipeline/evaluate.ts';
import { saveModel } from '../src/bundle/save-model.ts';
import { loadModel, openModelFeatures, predict, scoreImages } from '../src/pipeline/predict.ts';
import { createPredictor } from '../src/serve/predictor.ts';
import { train } from '../src/pipeline/train.ts';
import { makeImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'finetune.js');
let tmp: string;
let data: string;
let backbone: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-ftwire-'));
  data = (await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 2, perClass: 12, validPerClass: 6, size: 24, format: 'png' })).root;
  backbone = (await writeTinyBackbone(path.join(tmp, 'backbones'), { inputSize: 16 })).folder;
});
after(() => rm(tmp, { recursive: true, force: true }));

function finetune(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return finetuneUntil(undefined, ...args);
}

/** The CLI as a user runs it; once stderr matches `interruptAt`, it gets one SIGINT (Ctrl-C). */
function finetuneUntil(interruptAt: RegExp | undefined, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: tmp,
      env: { ...process.env, FINETUNE_HOME: path.join(tmp, 'home'), CI: '1', NO_COLOR: '1', FINETUNE_DEBUG: '', FINETUNE_OFFLINE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    let sent = false;
    child.stderr.on('data', (d) => {
      stderr += d;
      if (interruptAt && !sent && interruptAt.test(stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const recipe = { hidden: 0, epochs: 3, fineTuneEpochs: 2, fineTuneLr: 3e-3, seed: 3, threads: 1, cacheDir: false as const };

describe('train --fine-tune all: the bundle keeps the trained backbone', () => {
  test('CLI --json: fineTune fields, backbone.onnx with its sha256 in the manifest', { timeout: 120_000 }, async () => {
    const out = path.join(tmp, 'cli-model');
    const run = await finetune('train', data, '--backbone', backbone, '--fine-tune', 'all', '--fine-tune-epochs', '2', '--fine-tune-lr', '3e-3', '--hidden', '0', '--epochs', '3', '--seed', '3', '--threads', '1', '--augment', 'flip,vflip,rot90', '--out', out, '--json', '--no-cache');
    assert.equal(run.code, 0, run.stderr);
    const json = JSON.parse(run.stdout);
    const ft = json.fineTune;
    assert.equal(ft.engine, 'onnx');
    assert.equal(ft.device, 'cpu');
    assert.deepEqual(ft.layers, ['block1_conv1', 'block2_conv1']);
    assert.ok(ft.epochs >= 1 && ft.epochs <= 2);
    assert.ok(ft.bestEpoch >= 1, `fine-tuning should beat the frozen start here: ${JSON.stringify(ft)}`);
    assert.ok(ft.imagesPerSecond > 0);
    assert.ok(ft.valLossAfter < ft.valLossBefore, JSON.stringify(ft));
    for (const key of ['valAccuracyBefore', 'valAccuracyAfter']) assert.equal(typeof ft[key], 'number');
    const manifest = JSON.parse(await readFile(path.join(out, 'finetune.json'), 'utf8'));
    const record = manifest.backbones[0];
    assert.match(record.onnx.file, /^head-[\w-]+\/backbone\.onnx$/);
    assert.match(record.onnx.sha256, /^[0-9a-f]{64}$/);
    const { createHash } = await import('node:crypto');
    assert.equal(createHash('sha256').update(await readFile(path.join(out, record.onnx.file))).digest('hex'), record.onnx.sha256);

    const text = await finetune('train', data, '--backbone', backbone, '--fine-tune', '1', '--fine-tune-epochs', '1', '--hidden', '0', '--epochs', '2', '--threads', '1', '--out', path.join(tmp, 'cli-model-text'), '--no-cache', '-q');
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^fine-tune 1 layers, 1 epochs \(best [01]\) on onnx\/cpu at [\d.]+ images\/s: /m);
  });

  test('save → load → evaluate: the same loss as the trained network’s own evaluation; needs no original weights; a changed backbone.onnx is refused in one line', { timeout: 120_000 }, async () => {
    // One feature cache throughout: the frozen features it holds from training must not stand in for the trained network's.
    const cacheDir = path.join(tmp, 'cache');
    const result = await train(data, { backbone, fineTune: 'all', ...recipe, calibrate: false, cacheDir });
    assert.ok(result.fineTune && result.fineTune.bestEpoch >= 1 && result.backboneOnnx, JSON.stringify(result.fineTune));
    const out = path.join(tmp, 'lib-model');
    await saveModel(out, result, { remember: false });
    result.head.dispose();
    // The original weights leave: the bundle must not need them.
    await rename(backbone, `${backbone}.gone`);
    try {
      const model = await loadModel(out);
      try {
        const source = await openModelFeatures(model, { cacheDir, threads: 1 });
        const paths = model.classes.flatMap((c, label) => [0, 1, 2, 3, 4, 5].map((i) => ({ file: path.join(data, 'valid', c, `${c}-${i}.png`), label })));
        const scored = await scoreImages(model, source, paths.map((p) => p.file), {});
        await source.close();
        const loss = -paths.reduce((s, p, i) => s + Math.log(scored.uncalibrated[i * 2 + p.label]), 0) / paths.length;
        assert.ok(Math.abs(loss - result.fineTune.valLossAfter!) < 1e-5, `bundle's validation loss ${loss} vs the trainer's ${result.fineTune.valLossAfter}`);
        const evaluated = await evaluate(model, data, { cacheDir, threads: 1, split: 'valid' });
        assert.equal(evaluated.evaluation.accuracy, result.fineTune.valAccuracyAfter);
        const [first] = await predict(model, [paths[0].file], { cacheDir: false, threads: 1 });
        assert.ok('label' in first);
        // serve's predictor opens the same trained network.
        const predictor = await createPredictor(model, { threads: 1 });
        const served = await predictor.run([await predictor.decode(await readFile(paths[0].file))]);
        await predictor.close();
        for (const [c, name] of model.classes.entries()) assert.ok(Math.abs(served[c] - first.probabilities[name]) < 1e-6, `serve ${served[c]} vs predict ${first.probabilities[name]}`);
      } finally {
        model.head.dispose();
      }
    } finally {
      await rename(`${backbone}.gone`, backbone);
    }

    const manifest = JSON.parse(await readFile(path.join(out, 'finetune.json'), 'utf8'));
    const file = path.join(out, manifest.backbones[0].onnx.file);
    const bytes = await readFile(file);
    bytes[bytes.length - 1] ^= 1;
    await writeFile(file, bytes);
    await assert.rejects(loadModel(out), (err: unknown) => {
      assert.ok(err instanceof ModelFileError);
      assert.match(err.message, /backbone\.onnx has sha256 [0-9a-f]{12}…, not the [0-9a-f]{12}… recorded in .*finetune\.json: the fine-tuned backbone was changed; restore it or re-train/);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    const run = await finetune('predict', '--model', out, path.join(data, 'valid', 'stripes', 'stripes-0.png'));
    assert.equal(run.code, 1);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, /the fine-tuned backbone was changed/);
  });

  test('a bundle without a fine-tuned backbone (as earlier versions wrote) still loads and predicts from the original weights', { timeout: 60_000 }, async () => {
    const result = await train(data, { backbone, hidden: 0, epochs: 2, ensemble: 1, seed: 3, threads: 1, cacheDir: false });
    assert.equal(result.fineTune, null);
    const out = path.join(tmp, 'frozen-model');
    await saveModel(out, result, { remember: false });
    result.head.dispose();
    const manifest = JSON.parse(await readFile(path.join(out, 'finetune.json'), 'utf8'));
    assert.equal(manifest.backbones[0].onnx, undefined);
    const model = await loadModel(out);
    try {
      const [first] = await predict(model, [path.join(data, 'valid', 'circle', 'circle-0.png')], { cacheDir: false, threads: 1 });
      assert.ok('label' in first, JSON.stringify(first));
    } finally {
      model.head.dispose();
    }
  });

  test('Ctrl-C while fine-tuning: exit 130, the previous model at --out untouched', { timeout: 120_000 }, async () => {
    const out = path.join(tmp, 'cli-model');
    const manifestBefore = await readFile(path.join(out, 'finetune.json'), 'utf8');
    const run = await finetuneUntil(/fine-tuning 2 layers and the head/, 'train', data, '--backbone', backbone, '--fine-tune', 'all', '--fine-tune-epochs', '100000', '--patience', '100000', '--hidden', '0', '--epochs', '1', '--threads', '1', '--out', out, '--no-cache');
    assert.equal(run.code, 130, run.stderr);
    assert.equal(await readFile(path.join(out, 'finetune.json'), 'utf8'), manifestBefore);
    const model = await loadModel(out);
    model.head.dispose();
  });

  test('--seed repeats the fine-tuned network, augmentations included; another seed gives another', { timeout: 60_000 }, async () => {
    const run = async (seed: number) => {
      const result = await train(data, { backbone, fineTune: 'all', ...recipe, seed, augment: ['flip', 'vflip', 'rot90', 'crop'] });
      result.head.dispose();
      return result;
    };
    const [a, b, c] = [await run(5), await run(5), await run(6)];
    assert.ok(a.backboneOnnx && b.backboneOnnx && c.backboneOnnx, 'each run kept its fine-tuned network');
    assert.deepEqual(Buffer.from(b.backboneOnnx), Buffer.from(a.backboneOnnx));
    assert.equal(b.fineTune!.valLossAfter, a.fineTune!.valLossAfter);
    assert.notDeepEqual(Buffer.from(c.backboneOnnx), Buffer.from(a.backboneOnnx));
  });
});
