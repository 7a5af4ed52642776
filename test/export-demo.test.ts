import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { exportModel, loadModel, predict, saveModel, train, type FinetuneModel, type Prediction } from '../src/index.ts';
import { browserSkipReason, launchBrowser } from './fixtures/browser.ts';
import { makeHeldOutImages, makeImageDataset, type HeldOutImage, type ImageDataset } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const skip = browserSkipReason();
const engine = { engine: 'tfjs', backend: 'cpu', cacheDir: false } as const;

let tmp: string;
let data: ImageDataset;
let heldOut: HeldOutImage[];
let model: FinetuneModel;
let exported: string;
const savedHome = process.env.FINETUNE_HOME;

before(async () => {
  if (skip) return;
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-export-demo-'));
  process.env.FINETUNE_HOME = path.join(tmp, 'home');
  data = await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 3, perClass: 10, validPerClass: 10, size: 48, seed: 3 });
  heldOut = await makeHeldOutImages(path.join(tmp, 'held-out'), { classes: 3, count: 6, seed: 4 });
  const tiny = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 5 });
  const result = await train(data.root, { ...engine, backbone: tiny.folder, layer: 'block2_pool', epochs: 6, lr: 0.01, seed: 42, ensemble: 1, hidden: 16, calibrate: true });
  await saveModel(path.join(tmp, 'model'), result, { remember: false });
  result.head.dispose();
  model = await loadModel(path.join(tmp, 'model'), { backend: 'cpu' });
  exported = path.join(tmp, 'export');
  await exportModel(model, exported, { format: 'tfjs', withDemo: true });
});
after(async () => {
  model?.head.dispose();
  if (savedHome === undefined) delete process.env.FINETUNE_HOME;
  else process.env.FINETUNE_HOME = savedHome;
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

interface Shown {
  name: string;
  label: string;
  text: string;
  probabilities: Record<string, number>;
  note?: string;
}

/** Opens index.html from file://, picks `files` with the file input, returns what the page shows. */
async function runDemo(files: string[], screenshot?: string, dir = exported): Promise<{ shown: Shown[]; problems: string[]; requests: string[] }> {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => {
      if (!/^(data|file):/.test(r.url())) requests.push(r.url());
    });
    await page.goto(pathToFileURL(path.join(dir, 'index.html')).href, { waitUntil: 'load' });
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('Ready'), undefined, { timeout: 30_000 });
    await page.setInputFiles('#files', files);
    await page.waitForFunction((n) => document.querySelectorAll('li.result[data-label]').length === n, files.length, { timeout: 60_000 });
    const shown = await page.$$eval('li.result', (items) =>
      items.map((li) => ({
        name: (li as HTMLElement).dataset.name!,
        label: (li as HTMLElement).dataset.label!,
        text: li.querySelector('.label')!.textContent!,
        probabilities: JSON.parse((li as HTMLElement).dataset.probabilities!),
        note: (li as HTMLElement).dataset.note,
      })),
    );
    if (screenshot) {
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, screenshot), fullPage: true });
    }
    return { shown, problems, requests };
  } finally {
    await browser.close();
  }
}

function largestDifference(shown: Shown[], expected: Prediction[], classes = model.classes): number {
  let worst = 0;
  shown.forEach((s, i) => {
    const p = expected[i];
    assert.ok('probabilities' in p);
    for (const c of classes) worst = Math.max(worst, Math.abs(s.probabilities[c] - p.probabilities[c]));
  });
  return worst;
}

test('export --with-demo: the folder holds the page, its runtime and the model, nothing that needs a network', { skip }, async () => {
  const names = await readdir(exported);
  for (const name of ['index.html', 'tf.min.js', 'demo-model.js', 'model.json', 'weights.bin', 'labels.json', 'preprocess.json', 'README.md']) assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
});

test('the demo in headless Chromium shows predict’s labels and probabilities (3 decimals) for photos at the input size; no console errors, no network', { skip }, async (t) => {
  // Photos already at the model's 32×32: neither sharp nor the canvas resamples, so the pixels are the same.
  const dir = path.join(tmp, 'at-input-size');
  await mkdir(dir);
  const files = await Promise.all(heldOut.map(async (h, i) => {
    const file = path.join(dir, `photo-${i + 1}-${h.className}.png`);
    await sharp(h.path).resize(32, 32, { fit: 'fill' }).png().toFile(file);
    return file;
  }));
  const expected = await predict(model, files, engine);
  const { shown, problems, requests } = await runDemo(files, 'export-demo-input-size.png');
  assert.deepEqual(problems, []);
  assert.deepEqual(requests, [], 'no network requests');
  assert.deepEqual(shown.map((s) => s.name), files.map((f) => path.basename(f)));
  shown.forEach((s, i) => {
    const p = expected[i];
    assert.ok('label' in p);
    assert.equal(s.label, p.label, s.name);
    assert.equal(s.text.split(' ')[0], p.label);
    assert.equal(Number(s.text.split(' ')[1]).toFixed(3), p.probability.toFixed(3), `${s.name}: page shows ${s.text}, predict ${p.probability}`);
    for (const c of model.classes) assert.equal(s.probabilities[c].toFixed(3), p.probabilities[c].toFixed(3), `${s.name} ${c}`);
  });
  const worst = largestDifference(shown, expected);
  t.diagnostic(`largest |page − predict| at the input size: ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `largest difference ${worst}`);
});

const DOGSCATS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'data', 'dogscats', 'valid');

test('real photos larger than the input (dogs-vs-cats JPEGs to a 224×224 model, resized in the page as libvips does): predict’s probabilities to 3 decimals', { skip: skip ?? (existsSync(DOGSCATS) ? undefined : `${DOGSCATS} not present: the real-photo demo check is skipped`), timeout: 300_000 }, async (t) => {
  // A model at the common 224×224 input, so the photos (about 500×375) are reduced by 1.7–2.2:
  // the regime of the resize the page re-does (no JPEG shrink-on-load, no box pre-shrink).
  const tiny = await writeTinyBackbone(path.join(tmp, 'backbone-224'), { seed: 6, inputSize: 224 });
  const result = await train(data.root, { ...engine, backbone: tiny.folder, layer: 'block2_pool', epochs: 4, lr: 0.01, seed: 7, ensemble: 1, hidden: 0, calibrate: true });
  await saveModel(path.join(tmp, 'model-224'), result, { remember: false });
  result.head.dispose();
  const big = await loadModel(path.join(tmp, 'model-224'), { backend: 'cpu' });
  try {
    const dir = path.join(tmp, 'export-224');
    await exportModel(big, dir, { format: 'tfjs', withDemo: true });
    const files = (await Promise.all(['cats', 'dogs'].map(async (c) => (await readdir(path.join(DOGSCATS, c))).sort().slice(0, 5).map((f) => path.join(DOGSCATS, c, f))))).flat();
    const sizes = await Promise.all(files.map(async (f) => sharp(f).metadata()));
    assert.ok(sizes.every((m) => m.width! > 224 || m.height! > 224), 'every photo is larger than the input on some axis');
    const expected = await predict(big, files, engine);
    const { shown, problems, requests } = await runDemo(files, 'export-demo.png', dir);
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, [], 'no network requests');
    assert.deepEqual(shown.map((s) => s.note), files.map(() => undefined), 'the page marks none of these photos approximate');
    const worst = largestDifference(shown, expected, big.classes);
    t.diagnostic(`largest |page − predict| for ${files.length} dogs-vs-cats photos (${sizes.map((m) => `${m.width}×${m.height}`).join(', ')}) → 224×224: ${worst.toExponential(2)}`);
    shown.forEach((s, i) => {
      const p = expected[i];
      assert.ok('label' in p);
      assert.equal(s.label, p.label, s.name);
      assert.equal(Number(s.text.split(' ')[1]).toFixed(3), p.probability.toFixed(3), `${s.name}: page shows ${s.text}, predict ${p.probability}`);
      for (const c of big.classes) assert.equal(s.probabilities[c].toFixed(3), p.probabilities[c].toFixed(3), `${s.name} ${c}: page ${s.probabilities[c]}, predict ${p.probabilities[c]}`);
    });
    assert.ok(worst < 1e-4, `largest difference ${worst}`);
  } finally {
    big.head.dispose();
  }
});

test('the README’s @tensorflow/tfjs example, served over http, prints predict’s label and probability', { skip }, async () => {
  const readme = await readFile(path.join(exported, 'README.md'), 'utf8');
  const example = /## @tensorflow\/tfjs[^\n]*\n\n```html\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(example, 'a tfjs code block');
  // A PNG at the input size, so the canvas copies pixels and the numbers must match exactly.
  await sharp(heldOut[1].path).resize(32, 32, { fit: 'fill' }).png().toFile(path.join(exported, 'photo.png'));
  await writeFile(path.join(exported, 'example.html'), example.replace('photo.jpg', 'photo.png'));
  const server = http.createServer(async (req, res) => {
    const name = path.basename(new URL(req.url ?? '/', 'http://x').pathname);
    if (name === 'favicon.ico') return void res.writeHead(204).end(); // the browser asks on its own
    const body = await readFile(path.join(exported, name)).catch(() => null);
    const type = name.endsWith('.html') ? 'text/html' : name.endsWith('.js') ? 'text/javascript' : name.endsWith('.json') ? 'application/json' : 'application/octet-stream';
    res.writeHead(body ? 200 : 404, { 'content-type': type }).end(body ?? '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/example.html`);
    await page.waitForFunction(() => /\d\.\d{3}$/.test(document.body.innerText.trim()), undefined, { timeout: 30_000 });
    const text = (await page.evaluate(() => document.body.innerText)).trim();
    const [expected] = await predict(model, [path.join(exported, 'photo.png')], engine);
    assert.ok('label' in expected);
    assert.deepEqual(problems, []);
    assert.equal(text, `${expected.label} ${expected.probability.toFixed(3)}`);
  } finally {
    await browser.close();
    await new Promise((resolve) => server.close(resolve));
  }
});
