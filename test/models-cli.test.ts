import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { REGISTRY } from '../src/backbones/registry.ts';
import { makeImageDataset, writeClassImage } from './fixtures/images.ts';
import { errorLines, jsonLines, makeZip, runFinetune, show, startMirror, type MirrorServer, type Run } from './fixtures/models-cli.ts';
import { TINY_LAYERS, writeTinyBackbone, type TinyBackboneFiles } from './fixtures/tiny-backbone.ts';

const VGG16_NOTOP = REGISTRY.vgg16.weights.notop.file;
const MOBILENET_025 = REGISTRY['mobilenet_0.25'].weights.notop.file;
const MOBILENET_05_URL = REGISTRY['mobilenet_0.5'].weights.notop.url;

// Made at load time: suite bodies (which name their FINETUNE_HOME) run before `before` hooks.
const tmp = mkdtempSync(path.join(os.tmpdir(), 'finetune-models-cli-'));
let tiny: TinyBackboneFiles;
let shapes: string;
let mirror: MirrorServer;
const fakeVgg = randomBytes(40_000);
const fakeMobilenet = randomBytes(30_000);
let dogscatsZip: Buffer;

/** A fresh FINETUNE_HOME, so each group starts with no weights. */
const newHome = (name: string) => path.join(tmp, `home-${name}`);

function finetune(home: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runFinetune(args, { home, cwd: tmp, env });
}

const requestsFor = (file: string) => mirror.requests.filter((u) => u === `/${file}`).length;

async function tinyJpeg(label: number, seed: number): Promise<Buffer> {
  const file = path.join(tmp, `zip-src-${label}-${seed}.jpg`);
  await writeClassImage(file, label, { seed, size: 16 });
  return readFile(file);
}

before(async () => {
  tiny = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 21 });
  shapes = path.join(tmp, 'shapes');
  await makeImageDataset(shapes, { layout: 'folders', classes: 2, perClass: 8, size: 32, seed: 22 });
  const [cat, dog] = await Promise.all([tinyJpeg(0, 1), tinyJpeg(1, 2)]);
  dogscatsZip = makeZip([
    { name: 'dogscats/' },
    { name: 'dogscats/train/cats/cat.1.jpg', data: cat },
    { name: 'dogscats/train/dogs/dog.1.jpg', data: dog },
    { name: 'dogscats/valid/cats/cat.2.jpg', data: cat },
    { name: 'dogscats/valid/dogs/dog.2.jpg', data: dog },
  ]);
  mirror = await startMirror({ [VGG16_NOTOP]: fakeVgg, [MOBILENET_025]: fakeMobilenet, 'dogscats.zip': dogscatsZip });
});
after(async () => {
  await mirror?.close();
  await rm(tmp, { recursive: true, force: true });
});

interface Listing {
  name: string;
  path: string | null;
  inputSize: number[];
  defaultLayer: string;
}

describe('models list', () => {
  test('lists the registry, path null when absent and the file once it is in FINETUNE_HOME/models', async () => {
    const home = newHome('list');
    const plain = await finetune(home, ['models', 'list']);
    assert.equal(plain.code, 0, show(plain));
    for (const name of ['vgg16', 'vgg19', 'mobilenet', 'mobilenet_v2', 'resnet50']) {
      assert.match(plain.stdout, new RegExp(`^${name}\\s.*not downloaded`, 'm'), `${name} listed as not downloaded\n${show(plain)}`);
    }

    const json = await finetune(home, ['models', 'list', '--json']);
    assert.equal(json.code, 0, show(json));
    const list = JSON.parse(json.stdout) as Listing[];
    const names = list.map((m) => m.name);
    for (const name of ['vgg16', 'vgg19', 'mobilenet', 'mobilenet_v2', 'resnet50']) assert.ok(names.includes(name), `${name} in ${names}`);
    for (const m of list) assert.equal(m.path, null, `${m.name} absent`);
    assert.deepEqual(list.find((m) => m.name === 'vgg16')?.inputSize, [224, 224]);

    // Presence only: list does not read the file.
    const placed = path.join(home, 'models', VGG16_NOTOP);
    await mkdir(path.dirname(placed), { recursive: true });
    await writeFile(placed, 'not really weights');
    const after = JSON.parse((await finetune(home, ['models', 'list', '--json'])).stdout) as Listing[];
    assert.equal(after.find((m) => m.name === 'vgg16')?.path, placed);
    assert.equal(after.find((m) => m.name === 'vgg19')?.path, null);
    const text = await finetune(home, ['models', 'list']);
    assert.match(text.stdout, new RegExp(`^vgg16\\s.*${placed.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'), show(text));
  });
});

describe('models pull / verify', () => {
  const home = newHome('pull');
  const env = () => ({ FINETUNE_MIRROR: mirror.url });

  test('vgg16: a file that does not match the published md5 is moved aside, exit 1', async () => {
    const before = requestsFor(VGG16_NOTOP);
    const r = await finetune(home, ['models', 'pull', 'vgg16'], env());
    assert.equal(r.code, 1, show(r));
    assert.equal(requestsFor(VGG16_NOTOP), before + 1, 'the mirror was asked for the file');
    const errors = errorLines(r);
    assert.equal(errors.length, 1, show(r));
    assert.match(errors[0], /md5/);
    assert.match(errors[0], new RegExp(REGISTRY.vgg16.weights.notop.md5!));
    assert.match(errors[0], /\.corrupt/);
    const dest = path.join(home, 'models', VGG16_NOTOP);
    assert.equal(existsSync(dest), false, 'nothing at the destination');
    assert.equal(existsSync(`${dest}.part`), false, 'no partial file left');
    assert.deepEqual(await readFile(`${dest}.corrupt`), fakeVgg);
  });

  test('mobilenet_0.25 (no published md5): downloaded, then present without a request', async () => {
    const dest = path.join(home, 'models', MOBILENET_025);
    const first = await finetune(home, ['models', 'pull', 'mobilenet_0.25'], env());
    assert.equal(first.code, 0, show(first));
    assert.match(first.stdout, /^mobilenet_0\.25\s+downloaded\s/m, show(first));
    assert.ok(first.stdout.includes(dest), show(first));
    assert.deepEqual(await readFile(dest), fakeMobilenet);

    const requests = mirror.requests.length;
    const again = await finetune(home, ['models', 'pull', 'mobilenet_0.25', '--json'], env());
    assert.equal(again.code, 0, show(again));
    const [result] = jsonLines(again) as { name: string; path: string; bytes: number; md5: string; downloaded: boolean }[];
    const { createHash } = await import('node:crypto');
    assert.deepEqual(result, {
      name: 'mobilenet_0.25',
      path: dest,
      bytes: fakeMobilenet.length,
      md5: createHash('md5').update(fakeMobilenet).digest('hex'),
      downloaded: false,
    });
    assert.equal(mirror.requests.length, requests, 'no request for a file already present');

    const text = await finetune(home, ['models', 'pull', 'mobilenet_0.25'], env());
    assert.match(text.stdout, /^mobilenet_0\.25\s+present\s/m, show(text));
    assert.equal(mirror.requests.length, requests);
  });

  test('--force downloads again; --json reports downloaded', async () => {
    const before = requestsFor(MOBILENET_025);
    const r = await finetune(home, ['models', 'pull', 'mobilenet_0.25', '--force', '--json'], env());
    assert.equal(r.code, 0, show(r));
    const [result] = jsonLines(r) as { downloaded: boolean; bytes: number }[];
    assert.equal(result.downloaded, true);
    assert.equal(result.bytes, fakeMobilenet.length);
    assert.equal(requestsFor(MOBILENET_025), before + 1);
  });

  test('an unknown name: exit 2, listing the names', async () => {
    const r = await finetune(home, ['models', 'pull', 'nope'], env());
    assert.equal(r.code, 2, show(r));
    const errors = errorLines(r);
    assert.equal(errors.length, 1, show(r));
    for (const name of ['vgg16', 'mobilenet_0.25', 'resnet50', 'imagenet-classes']) assert.ok(errors[0].includes(name), `${name} in ${errors[0]}`);
  });

  test('FINETUNE_OFFLINE=1: exit 1 at once, naming the URL and where to put the file', async () => {
    const requests = mirror.requests.length;
    const r = await finetune(home, ['models', 'pull', 'mobilenet_0.5'], { FINETUNE_OFFLINE: '1' });
    assert.equal(r.code, 1, show(r));
    const errors = errorLines(r);
    assert.equal(errors.length, 1, show(r));
    assert.ok(errors[0].includes(MOBILENET_05_URL), errors[0]);
    assert.ok(errors[0].includes(path.join(home, 'models', REGISTRY['mobilenet_0.5'].weights.notop.file)), errors[0]);
    assert.equal(mirror.requests.length, requests);
    assert.ok(r.ms < 10_000, `offline failure took ${r.ms} ms`);
  });

  test('verify lists the pulled file, exit 0', async () => {
    const r = await finetune(home, ['models', 'verify']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^ok\s+mobilenet_0\.25\s.*no published hash/m, show(r));
    // The corrupt vgg16 download was moved aside: not a weights file, not listed.
    assert.doesNotMatch(r.stdout, /vgg16/);
    const json = await finetune(home, ['models', 'verify', '--json']);
    const results = JSON.parse(json.stdout) as { name: string; ok: boolean }[];
    assert.deepEqual(results.map((x) => [x.name, x.ok]), [['mobilenet_0.25', true]]);
  });
});

describe('models import / export / layers', () => {
  const home = newHome('import');

  test('import a tfjs folder as tiny, then train with --backbone tiny', async () => {
    const r = await finetune(home, ['models', 'import', tiny.folder, '--name', 'tiny']);
    assert.equal(r.code, 0, show(r));
    const dest = path.join(home, 'models', 'tiny');
    assert.deepEqual(await readFile(path.join(dest, 'model.json')), await readFile(path.join(tiny.folder, 'model.json')));
    assert.deepEqual(await readFile(path.join(dest, 'weights.bin')), await readFile(path.join(tiny.folder, 'weights.bin')));

    const out = path.join(tmp, 'tiny-model');
    const train = await finetune(home, ['train', shapes, '--backbone', 'tiny', '--layer', 'block2_pool', '--engine', 'tfjs', '--epochs', '3', '--out', out, '--cache-dir', path.join(tmp, 'cache'), '-q']);
    assert.equal(train.code, 0, show(train));
    assert.ok(existsSync(path.join(out, 'finetune.json')), `bundle written\n${show(train)}`);
  });

  test('import of a text file: one-line error, non-zero exit', async () => {
    const text = path.join(tmp, 'notes.txt');
    await writeFile(text, 'these are not weights\n');
    const r = await finetune(home, ['models', 'import', text]);
    assert.notEqual(r.code, 0, show(r));
    const errors = errorLines(r);
    assert.equal(errors.length, 1, show(r));
    assert.ok(errors[0].includes('notes.txt'), errors[0]);
    assert.equal(existsSync(path.join(home, 'models', 'notes.txt')), false);
  });

  test(
    'import of a text file: the message speaks of models import, not of a flag the user did not pass',
    async () => {
      const text = path.join(tmp, 'notes2.txt');
      await writeFile(text, 'these are not weights\n');
      const r = await finetune(home, ['models', 'import', text]);
      assert.doesNotMatch(errorLines(r)[0] ?? '', /--backbone/, show(r));
    },
  );

  test('export writes a tfjs folder that loads with the same layers; an existing folder is refused', async () => {
    const outDir = path.join(tmp, 'exported');
    const r = await finetune(home, ['models', 'export', tiny.folder, outDir]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual((await readdir(outDir)).sort(), ['model.json', 'weights.bin']);

    const json = JSON.parse(await readFile(path.join(outDir, 'model.json'), 'utf8'));
    const weightData = new Uint8Array(await readFile(path.join(outDir, 'weights.bin'))).buffer;
    const model = await tf.loadLayersModel(
      tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest.flatMap((g: { weights: tf.io.WeightsManifestEntry[] }) => g.weights), weightData }),
    );
    try {
      assert.deepEqual(model.layers.map((l) => l.name), TINY_LAYERS);
      assert.deepEqual(model.outputs[0].shape, [null, 10]);
    } finally {
      model.dispose();
    }

    const again = await finetune(home, ['models', 'export', tiny.folder, outDir]);
    assert.equal(again.code, 2, show(again));
    assert.equal(errorLines(again).length, 1, show(again));
    assert.ok(errorLines(again)[0].includes(outDir), show(again));
  });

  test('layers lists names and shapes and marks the default', async () => {
    const r = await finetune(home, ['models', 'layers', tiny.folder]);
    assert.equal(r.code, 0, show(r));
    const rows = r.stdout.split('\n').filter((l) => l.trim() !== '');
    assert.deepEqual(rows.map((l) => l.split(/\s+/)[0]), TINY_LAYERS);
    const marked = rows.filter((l) => l.includes('← default'));
    assert.equal(marked.length, 1, r.stdout);
    assert.match(marked[0], /^block2_pool\s.*\[null, 8, 8, 16\]/);

    const json = await finetune(home, ['models', 'layers', tiny.folder, '--json']);
    assert.equal(json.code, 0, show(json));
    const layers = JSON.parse(json.stdout) as { name: string; outputShape: (number | null)[]; isDefault: boolean }[];
    assert.deepEqual(layers.map((l) => l.name), TINY_LAYERS);
    assert.deepEqual(layers.filter((l) => l.isDefault).map((l) => l.name), ['block2_pool']);
    assert.deepEqual(layers.find((l) => l.name === 'predictions')?.outputShape, [null, 10]);
  });
});

describe('data pull', () => {
  const home = newHome('data');

  test('dogscats from the mirror: unpacked under DIR/dogscats; again → exit 2', async () => {
    const dir = path.join(tmp, 'datasets');
    const r = await finetune(home, ['data', 'pull', 'dogscats', '--dir', dir], { FINETUNE_MIRROR: mirror.url });
    assert.equal(r.code, 0, show(r));
    assert.ok(requestsFor('dogscats.zip') >= 1);
    for (const rel of ['train/cats/cat.1.jpg', 'train/dogs/dog.1.jpg', 'valid/cats/cat.2.jpg', 'valid/dogs/dog.2.jpg']) {
      const file = path.join(dir, 'dogscats', rel);
      assert.ok(existsSync(file), `${file}\n${show(r)}`);
    }
    const meta = await sharp(path.join(dir, 'dogscats', 'train', 'cats', 'cat.1.jpg')).metadata();
    assert.equal(meta.format, 'jpeg');

    const again = await finetune(home, ['data', 'pull', 'dogscats', '--dir', dir], { FINETUNE_MIRROR: mirror.url });
    assert.equal(again.code, 2, show(again));
    assert.match(errorLines(again)[0] ?? '', /already exists/);
  });

  test('FINETUNE_OFFLINE=1: exit 1, naming the URL and the layout', async () => {
    const dir = path.join(tmp, 'datasets-offline');
    const requests = mirror.requests.length;
    // Its own home: the zip the test above downloaded would be used without the network.
    const r = await finetune(newHome('data-offline'), ['data', 'pull', 'dogscats', '--dir', dir], { FINETUNE_OFFLINE: '1' });
    assert.equal(r.code, 1, show(r));
    const errors = errorLines(r);
    assert.equal(errors.length, 1, show(r));
    assert.ok(errors[0].includes('http://files.fast.ai/data/dogscats.zip'), errors[0]);
    assert.ok(errors[0].includes(`${dir}/dogscats/{train,valid}/{cats,dogs}/*.jpg`), errors[0]);
    assert.equal(existsSync(path.join(dir, 'dogscats')), false);
    assert.equal(mirror.requests.length, requests);
  });
});

interface TopClass {
  index: number;
  name: string;
  probability: number;
}

describe('predict --imagenet', () => {
  const home = newHome('predict');
  let images: string[];

  before(async () => {
    const dir = path.join(tmp, 'imagenet-images');
    await mkdir(dir, { recursive: true });
    images = await Promise.all([0, 1].map((label) => writeClassImage(path.join(dir, `img-${label}.jpg`), label, { seed: 30 + label, size: 40 })));
  });

  const checkTop = (top: TopClass[]) => {
    assert.equal(top.length, 5);
    for (let i = 1; i < top.length; i++) assert.ok(top[i - 1].probability >= top[i].probability, 'sorted by probability');
    const sum = top.reduce((s, c) => s + c.probability, 0);
    assert.ok(sum > 0 && sum <= 1 + 1e-6, `probabilities sum to ${sum}`);
    assert.equal(new Set(top.map((c) => c.index)).size, 5);
    for (const c of top) assert.ok(Number.isInteger(c.index) && c.index >= 0 && c.index < 10, `index ${c.index}`);
  };

  test('a 10-name list names a 10-class network', async () => {
    const names = path.join(tmp, 'names-10.json');
    await writeFile(names, JSON.stringify(Array.from({ length: 10 }, (_, i) => `thing${i}`)));
    const r = await finetune(home, ['predict', '--imagenet', '--backbone', tiny.folder, '--class-names', names, '--json', ...images]);
    assert.equal(r.code, 0, show(r));
    const rows = jsonLines(r) as { path: string; top: TopClass[] }[];
    assert.deepEqual(rows.map((x) => x.path), images);
    for (const row of rows) {
      checkTop(row.top);
      for (const c of row.top) assert.equal(c.name, `thing${c.index}`);
    }
  });

  test('a --class-names file that is missing or holds no names: exit 2, one line naming it, before any image runs', async () => {
    const missing = path.join(tmp, 'no-such-names.json');
    const r = await finetune(home, ['predict', '--imagenet', '--backbone', tiny.folder, '--class-names', missing, ...images]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, new RegExp(`--class-names ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be read \\(no such file`));
    assert.equal(r.stdout, '');
    const empty = path.join(tmp, 'names-empty.json');
    await writeFile(empty, '{"note": "no classes here"}');
    const e = await finetune(home, ['predict', '--imagenet', '--backbone', tiny.folder, '--class-names', empty, ...images]);
    assert.equal(e.code, 2, show(e));
    assert.match(e.stderr, /holds no class names/);
  });

  test('a 1000-name list names the classes; a missing image → {path, error} and exit 3', async () => {
    const names = path.join(tmp, 'names-1000.json');
    await writeFile(names, JSON.stringify(Array.from({ length: 1000 }, (_, i) => `thing${i}`)));
    const missing = path.join(tmp, 'no-such-image.jpg');
    const r = await finetune(home, ['predict', '--imagenet', '--backbone', tiny.h5Whole, '--class-names', names, '--json', images[0], missing]);
    assert.equal(r.code, 3, show(r));
    const rows = jsonLines(r) as ({ path: string; top: TopClass[] } | { path: string; error: string })[];
    assert.equal(rows.length, 2, show(r));
    const ok = rows.find((x) => x.path === images[0]);
    assert.ok(ok && 'top' in ok, show(r));
    checkTop(ok.top);
    for (const c of ok.top) assert.equal(c.name, `thing${c.index}`);
    const bad = rows.find((x) => x.path === missing);
    assert.ok(bad && 'error' in bad && typeof bad.error === 'string' && bad.error.length > 0, show(r));
    assert.deepEqual(Object.keys(bad).sort(), ['error', 'path']);
  });
});

describe('train --backbone vgg16 without the weights', () => {
  const home = newHome('train-vgg');
  const args = () => ['train', shapes, '--backbone', 'vgg16', '--engine', 'tfjs', '--epochs', '1', '--out', path.join(tmp, 'vgg-model'), '--cache-dir', path.join(tmp, 'cache-vgg'), '-q'];

  test('tries the download from the mirror, then fails on the md5 naming the file', async () => {
    const before = requestsFor(VGG16_NOTOP);
    const r = await finetune(home, args(), { FINETUNE_MIRROR: mirror.url });
    assert.equal(r.code, 1, show(r));
    assert.equal(requestsFor(VGG16_NOTOP), before + 1, 'the auto-pull asked the mirror');
    const errors = errorLines(r);
    assert.equal(errors.length, 1, show(r));
    assert.ok(errors[0].includes(VGG16_NOTOP), errors[0]);
    assert.match(errors[0], /md5/);
    assert.equal(existsSync(path.join(home, 'models', VGG16_NOTOP)), false);
    assert.equal(existsSync(path.join(tmp, 'vgg-model', 'finetune.json')), false);
  });

  test('FINETUNE_OFFLINE=1: no request, exit 1 naming the file', async () => {
    const requests = mirror.requests.length;
    const r = await finetune(home, args(), { FINETUNE_MIRROR: mirror.url, FINETUNE_OFFLINE: '1' });
    assert.equal(r.code, 1, show(r));
    assert.equal(mirror.requests.length, requests, 'offline: the mirror saw nothing');
    const errors = errorLines(r);
    assert.equal(errors.length, 1, show(r));
    assert.ok(errors[0].includes(VGG16_NOTOP), errors[0]);
  });
});

