/**
 * Moved and mismatched backbones: a model trained with `--backbone PATH` whose network has
 * moved says that the backbone it records is no longer there and how to point to it; another
 * network passed with --backbone is refused as "not the backbone this model was trained with"
 * (its checksum differs), whether or not it happens to have the feature layer.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { EXIT } from '../src/errors.ts';
import { TINY_LAYER, buildGoodData, writeTinyBackbone } from './fixtures/bad-inputs.ts';
import { errorLines, runFinetune, show } from './fixtures/models-cli.ts';
import { buildTinyBackbone, saveTfjsFolder } from './fixtures/tiny-backbone.ts';

let root = '';
let data = '';
let model = '';
let moved = '';
let recorded = '';
let otherLayers = '';
let sameLayersOtherWeights = '';

const cli = (args: string[]) => runFinetune(args, { home: path.join(root, 'home'), cwd: root });
const image = () => path.join(data, 'valid/a/a-0.jpg');

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'finetune-moved-'));
  data = path.join(root, 'data');
  await buildGoodData(data, 2);
  recorded = await writeTinyBackbone(path.join(root, 'nets', 'mine'));
  // Same architecture and layer names, other weights: only the checksum tells them apart.
  const retrained = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [32, 32, 3], filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', name: 'block1_conv1', kernelInitializer: tf.initializers.glorotUniform({ seed: 99 }) }),
      tf.layers.maxPooling2d({ poolSize: 2, name: 'block1_pool' }),
      tf.layers.flatten({ name: 'flatten' }),
      tf.layers.dense({ units: 4, activation: 'softmax', name: 'predictions', kernelInitializer: tf.initializers.glorotUniform({ seed: 98 }) }),
    ],
  });
  sameLayersOtherWeights = await saveTfjsFolder(retrained, path.join(root, 'nets', 'retrained'));
  retrained.dispose();
  const different = buildTinyBackbone({ seed: 3 });
  otherLayers = await saveTfjsFolder(different, path.join(root, 'nets', 'other'));
  different.dispose();
  model = path.join(root, 'model');
  const t = await cli(['train', data, '--backbone', recorded, '--layer', TINY_LAYER, '--engine', 'tfjs', '--epochs', '1', '--hidden', '8', '--ensemble', '1', '--no-cache', '--out', model]);
  assert.equal(t.code, EXIT.ok, show(t));
  moved = path.join(root, 'nets', 'moved-here');
  await rename(recorded, moved);
});
after(() => rm(root, { recursive: true, force: true }));

describe('a backbone that moved', () => {
  for (const command of ['predict', 'evaluate'] as const) {
    test(`${command}: exit 2, the recorded path named, --backbone NEWPATH suggested`, async () => {
      const r = await cli(command === 'predict' ? ['predict', '--model', model, '--no-cache', image()] : ['evaluate', data, '--model', model, '--no-cache']);
      assert.equal(r.code, EXIT.usage, show(r));
      assert.equal(errorLines(r).length, 1, show(r));
      assert.match(errorLines(r)[0], new RegExp(`the backbone ${path.resolve(recorded)} recorded in ${model} is no longer at that path: pass --backbone NEWPATH`));
      assert.doesNotMatch(r.stderr, /not a known backbone name/);
    });
  }

  test('--backbone NEWPATH: the same network found where it went, predictions as before', async () => {
    const r = await cli(['predict', '--model', model, '--no-cache', '--backbone', moved, image()]);
    assert.equal(r.code, EXIT.ok, show(r));
    assert.match(r.stdout, /a-0\.jpg\t[ab]\t/);
  });
});

describe('another network given as the backbone', () => {
  for (const [what, net] of [
    ['same layer names, other weights', () => sameLayersOtherWeights],
    ['without the feature layer', () => otherLayers],
  ] as const) {
    test(`${what}: refused as not the backbone this model was trained with (exit 2)`, async () => {
      const r = await cli(['predict', '--model', model, '--no-cache', '--backbone', net(), image()]);
      assert.equal(r.code, EXIT.usage, show(r));
      assert.equal(errorLines(r).length, 1, show(r));
      assert.match(errorLines(r)[0], new RegExp(`--backbone ${net()} is not the backbone this model was trained with: its weights' sha256 [0-9a-f]{12}… differs from the recorded [0-9a-f]{12}… \\(${path.resolve(recorded)}\\)`));
      assert.doesNotMatch(r.stderr, /has no such layer/);
    });
  }

  test('a registry name in place of a path-given backbone: refused the same way, before loading it', async () => {
    const r = await cli(['predict', '--model', model, '--no-cache', '--backbone', 'vgg16', '--no-download', image()]);
    assert.equal(r.code, EXIT.usage, show(r));
    assert.match(errorLines(r)[0], /--backbone vgg16 is not the backbone this model was trained with/);
  });
});
