import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { evaluatePredictions } from '../src/metrics/index.ts';
import { renderReport, selectGalleryImages, type ReportImage, type ReportInput } from '../src/report/index.ts';
import { browserSkipReason, launchBrowser } from './fixtures/browser.ts';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const SECTION_IDS = [
  'metrics',
  'confusion',
  'per-class',
  'curves',
  'gallery-correct',
  'gallery-mistakes',
  'gallery-uncertain',
  'gallery-confident',
  'calibration',
  'skipped',
];
const EVIL_NAME = 'cat <script>alert(1)</script> & "friends".jpg';
const classes = ['cats', 'dogs'];

// [true class, probability of dogs]: 12 images, 3 of them wrong, two near 0.5.
const samples: [number, number][] = [
  [0, 0.02], [0, 0.1], [0, 0.35], [0, 0.48], [0, 0.91], [0, 0.7],
  [1, 0.99], [1, 0.93], [1, 0.8], [1, 0.55], [1, 0.3], [1, 0.97],
];
const COLOURS = ['#f97316', '#0ea5e9', '#84cc16', '#a855f7', '#ef4444', '#14b8a6'];

let dir: string;
let input: ReportInput;
let selected: Set<string>;

async function thumbnail(index: number): Promise<string> {
  const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: COLOURS[index % COLOURS.length] } })
    .jpeg()
    .toBuffer();
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-report-'));
  const labels = samples.map(([y]) => y);
  const probabilities = samples.map(([, dog]) => [1 - dog, dog]);
  const evaluation = evaluatePredictions(labels, probabilities, classes);
  const items = samples.map(([y, dog], i) => {
    const predicted = dog >= 0.5 ? 1 : 0;
    const name = i === 4 ? EVIL_NAME : `${classes[y].slice(0, -1)}.${1000 + i}.jpg`;
    return {
      path: `/data/valid/${classes[y]}/${name}`,
      trueLabel: classes[y],
      predictedLabel: classes[predicted],
      probability: predicted ? dog : 1 - dog,
      probabilities: { cats: 1 - dog, dogs: dog },
    };
  });
  selected = selectGalleryImages(items, { seed: 7 });
  const images: ReportImage[] = await Promise.all(
    items.map(async (item, i) => ({ ...item, thumbnail: selected.has(item.path) ? await thumbnail(i) : '' })),
  );
  input = {
    title: 'dogscats — <evaluation> & report',
    generatedAt: '2025-01-02T03:04:05Z',
    classes,
    model: { backbone: 'vgg16', layer: 'block5_pool', engine: 'onnx (cpu)', path: '/models/<dogscats>' },
    evaluation,
    history: [1, 2, 3, 4, 5, 6].map((epoch) => ({
      epoch,
      loss: 0.6 / epoch,
      accuracy: 1 - 0.3 / epoch,
      valLoss: 0.5 / epoch + 0.02 * epoch,
      valAccuracy: 0.8 + 0.02 * epoch,
    })),
    images,
    skipped: [{ path: '/data/valid/cats/<img src=x onerror=alert(2)>.jpg', reason: 'Input file contains unsupported image format' }],
    seed: 7,
  };
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('selectGalleryImages picks the wrong, uncertain and a sample of correct images, reproducibly', () => {
  assert.ok(selected.has(`/data/valid/cats/${EVIL_NAME}`), 'the most confident mistake among cats is picked');
  assert.ok(selected.has('/data/valid/dogs/dog.1010.jpg'), 'the only dog mistake is picked');
  assert.ok(selected.has('/data/valid/cats/cat.1003.jpg'), 'p = 0.48 is among the most uncertain');
  const items = input.images.map(({ thumbnail: _, ...rest }) => rest);
  assert.deepEqual([...selectGalleryImages(items, { seed: 7 })].sort(), [...selected].sort());
  assert.ok(selectGalleryImages(items, { perGallery: 2 }).size < selected.size);
});

test('the report is one self-contained, escaped HTML file that is small without thumbnails', () => {
  const html = renderReport(input);
  for (const id of SECTION_IDS) assert.ok(html.includes(`id="${id}"`), `section #${id}`);
  assert.doesNotMatch(html, /<script/i, 'no script element, not even from a file name');
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;friends&quot;.jpg'), 'file name shown escaped');
  assert.doesNotMatch(html, /<img src=x/);
  assert.doesNotMatch(html, /https?:\/\/|<link|@import|url\(/i, 'nothing to fetch');

  const withoutThumbnails = renderReport({ ...input, images: input.images.map((i) => ({ ...i, thumbnail: '' })) });
  assert.ok(Buffer.byteLength(withoutThumbnails) < 50_000, `page is ${Buffer.byteLength(withoutThumbnails)} bytes`);

  // The CLI makes thumbnails only for the selected images and may pass only those.
  const onlySelected = renderReport({ ...input, images: input.images.filter((i) => selected.has(i.path)) });
  assert.equal(onlySelected, html, 'galleries are the same from the selected subset');
});

test('a report without history, images or skipped files still renders every core section', () => {
  const evaluation = evaluatePredictions([0, 1, 2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2]], ['a', 'b', 'c']);
  const html = renderReport({ title: 't', generatedAt: 'now', classes: ['a', 'b', 'c'], model: {}, evaluation, images: [] });
  for (const id of ['metrics', 'confusion', 'per-class', 'gallery-correct', 'gallery-mistakes', 'calibration']) {
    assert.ok(html.includes(`id="${id}"`), id);
  }
  assert.ok(!html.includes('id="curves"') && !html.includes('id="skipped"'));
  assert.match(html, /two classes only/);
});

test('many classes keep the page small', () => {
  const k = 30;
  const names = Array.from({ length: k }, (_, i) => `class_number_${i}`);
  const labels = Array.from({ length: 600 }, (_, i) => i % k);
  const probs = labels.map((y, i) => Array.from({ length: k }, (_, j) => (j === (i % 7 ? y : (y + 1) % k) ? 0.71 : 0.01)));
  const html = renderReport({ title: 't', generatedAt: 'now', classes: names, model: {}, evaluation: evaluatePredictions(labels, probs, names), images: [] });
  assert.ok(Buffer.byteLength(html) < 50_000, `page is ${Buffer.byteLength(html)} bytes`);
});

test('the report opens in Chromium with no errors, no dialog, every image loaded', async (t) => {
  const reason = browserSkipReason();
  if (reason) return t.skip(reason);
  const file = path.join(dir, 'report.html');
  await writeFile(file, renderReport(input));

  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('dialog', async (d) => {
      problems.push(`dialog: ${d.message()}`);
      await d.dismiss();
    });
    page.on('request', (r) => {
      if (!/^(data|file):/.test(r.url())) requests.push(r.url());
    });
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });

    const images = await page.$$eval('img', (els) => els.map((e) => ({ complete: e.complete, width: e.naturalWidth })));
    assert.ok(images.length >= selected.size, `${images.length} <img> for ${selected.size} selected images`);
    assert.equal(await page.locator('.card .ph').count(), 0, 'every card has its thumbnail');
    assert.ok(images.every((i) => i.complete && i.width > 0), `images not loaded: ${JSON.stringify(images)}`);
    const ids = await page.$$eval('section[id]', (els) => els.map((e) => e.id));
    assert.deepEqual(ids, SECTION_IDS);
    // The path holds a '/', so the card shows its last part and the tooltip the whole path.
    const text = await page.innerText('body');
    assert.ok(text.includes('script> & "friends".jpg'), 'the evil file name is shown as text');
    const tips = await page.$$eval('.card', (els) => els.map((e) => e.getAttribute('title') ?? ''));
    assert.ok(tips.some((tip) => tip.startsWith(`/data/valid/cats/${EVIL_NAME}`)), 'the whole path is in the tooltip');
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, [], 'no network requests');

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'report.png'), fullPage: true });
  } finally {
    await browser.close();
  }
});
