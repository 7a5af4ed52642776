/**
 * `finetune audit` on small synthetic sets with planted problems: images drawn as one class but
 * filed under another, a re-encoded cropped copy across train/valid, an image unlike any class.
 * Also: the same seed gives the same audit, the report in Chromium, the fix list applied by
 * `train --exclude`, and the CLI's text, JSON and files.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { audit, type AuditOptions, type AuditResult } from '../src/audit/audit.ts';
import { applyFixList, fixRows, formatFixList, readFixList } from '../src/audit/fix-list.ts';
import { UsageError } from '../src/errors.ts';
import { writeAuditReport } from '../src/audit/report-file.ts';
import { loadDataset } from '../src/data/layout.ts';
import { train } from '../src/pipeline/train.ts';
import { loadModel } from '../src/pipeline/predict.ts';
import { saveModel } from '../src/bundle/save-model.ts';
import { browserSkipReason, launchBrowser } from './fixtures/browser.ts';
import { makeImageDataset, seededRandom, writeClassImage } from './fixtures/images.ts';
import { writeTinyBackbone } from './fixtures/tiny-backbone.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ARTIFACTS = path.join(ROOT, 'test', 'artifacts');
let tmp: string;
let root: string;
let options: AuditOptions;
/** Drawn as one class, filed under another. */
const mislabelled: string[] = [];
let oddOne: string;
let first: AuditResult;
let dupes: AuditResult;
let planted: [string, string][] = [];
let collagesRoot: string;

/** A collage of random rectangles on a background of the class's colour: no two alike. */
async function writeCollage(file: string, label: number, seed: number): Promise<void> {
  const rand = seededRandom(seed);
  const size = 48;
  const px = Buffer.alloc(size * size * 3);
  const bg = label === 0 ? [200, 90, 60] : [60, 90, 200];
  for (let i = 0; i < size * size; i++) px.set(bg, i * 3);
  for (let r = 0; r < 7; r++) {
    const [x0, y0] = [Math.floor(rand() * size), Math.floor(rand() * size)];
    const [w, h] = [4 + Math.floor(rand() * 16), 4 + Math.floor(rand() * 16)];
    const colour = [rand() * 255, rand() * 255, rand() * 255].map(Math.round);
    for (let y = y0; y < Math.min(size, y0 + h); y++) for (let x = x0; x < Math.min(size, x0 + w); x++) px.set(colour, (y * size + x) * 3);
  }
  await mkdir(path.dirname(file), { recursive: true });
  await sharp(px, { raw: { width: size, height: size, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
}

/** 5% cropped off, resized to 80%, JPEG quality 60: the bench's recipe. */
async function nearCopy(from: string, to: string): Promise<void> {
  await sharp(from).extract({ left: 1, top: 1, width: 46, height: 46 }).resize(38, 38, { fit: 'fill' }).jpeg({ quality: 60 }).toFile(to);
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-audit-'));
  const data = await makeImageDataset(path.join(tmp, 'data'), { layout: 'fastai', classes: 3, perClass: 20, validPerClass: 6, size: 48, seed: 3 });
  root = data.root;
  // Three images drawn as "stripes" (label 0) filed as circle/checker, one in valid.
  const wrong: [string, string, number][] = [
    ['train', 'circle', 0],
    ['train', 'checker', 0],
    ['valid', 'checker', 0],
  ];
  for (const [i, [split, folder, label]] of wrong.entries()) {
    const file = path.join(root, split, folder, `planted-wrong-${i}.jpg`);
    await writeClassImage(file, label, { seed: 777 + i, size: 48 });
    mislabelled.push(file);
  }
  // A grey diagonal gradient: no colour, no stripes, disc or checks.
  const px = Buffer.alloc(48 * 48 * 3);
  for (let y = 0; y < 48; y++) for (let x = 0; x < 48; x++) px.fill(Math.round(((x + y) / 94) * 255), (y * 48 + x) * 3, (y * 48 + x) * 3 + 3);
  oddOne = path.join(root, 'train', 'checker', 'grey-gradient.png');
  await sharp(px, { raw: { width: 48, height: 48, channels: 3 } }).png().toFile(oddOne);
  const tiny = await writeTinyBackbone(path.join(tmp, 'backbone'), { seed: 5 });
  options = { backbone: tiny.folder, layer: 'block2_pool', pooling: 'flatten', engine: 'tfjs', backend: 'cpu', cacheDir: false, seed: 42, epochs: 8, lr: 0.01 };
  first = await audit(root, options);

  const collages = path.join(tmp, 'collages');
  for (const [label, name] of ['blue', 'red'].entries())
    for (const split of ['train', 'valid'])
      for (let i = 0; i < (split === 'train' ? 16 : 5); i++) await writeCollage(path.join(collages, split, name, `${name}-${i}.jpg`), label === 0 ? 1 : 0, 100 * label + i + (split === 'valid' ? 50 : 0));
  planted = [
    [path.join(collages, 'train', 'blue', 'blue-1.jpg'), path.join(collages, 'train', 'blue', 'copy-1.jpg')],
    [path.join(collages, 'train', 'red', 'red-2.jpg'), path.join(collages, 'valid', 'red', 'copy-2.jpg')],
  ];
  for (const [from, to] of planted) await nearCopy(from, to);
  const exact: [string, string] = [path.join(collages, 'train', 'red', 'red-3.jpg'), path.join(collages, 'train', 'red', 'byte-copy-3.jpg')];
  await copyFile(...exact);
  planted.push(exact);
  dupes = await audit(collages, { ...options, folds: 2, epochs: 2 });
  collagesRoot = collages;
});

after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('audit finds what was planted', () => {
  test('the images filed under the wrong class are the top label issues, with the drawn class suggested', () => {
    const top = first.labelIssues.slice(0, mislabelled.length);
    assert.deepEqual(top.map((l) => l.path).sort(), [...mislabelled].sort(), JSON.stringify(first.labelIssues.slice(0, 6), null, 1));
    for (const l of top) {
      assert.equal(l.suggested, 'stripes');
      assert.notEqual(l.given, 'stripes');
      assert.ok(l.score < 0.5 && l.suggestedProbability > 0.5, `${l.path}: score ${l.score}, suggested ${l.suggestedProbability}`);
      assert.ok(l.nearestSuggested.length > 0 && l.nearestGiven.length > 0, 'neighbours of both classes for the report');
    }
    assert.ok(first.labelIssues.length <= mislabelled.length + 3, `${first.labelIssues.length} flagged among ${first.counts.images}`);
    assert.deepEqual(first.counts, { ...first.counts, images: 60 + 18 + 4, train: 60 + 2 + 1, valid: 18 + 1 });
  });

  test('near-duplicates: the planted copies among collages are the top pairs, one of them across train/valid', async () => {
    // A random two-layer network is no ImageNet backbone: a stray pair may pass the threshold,
    // but never above a planted one.
    const found = dupes.duplicates.slice(0, planted.length).map((d) => [d.a, d.b].sort().join(' + ')).sort();
    assert.deepEqual(found, planted.map((p) => [...p].sort().join(' + ')).sort(), JSON.stringify(dupes.duplicates.slice(0, 6).map((d) => [d.similarity, d.a, d.b])));
    const top = dupes.duplicates.slice(0, planted.length);
    assert.equal(top.filter((d) => d.leakage).length, 1);
    assert.equal(top.filter((d) => d.exact).length, 1, 'the byte copy is marked');
    assert.ok(dupes.duplicates.length <= planted.length + 2, `${dupes.duplicates.length} pairs among ${dupes.counts.images} images`);
  });

  test('on onnxruntime (the default where it loads) heads and search give the tfjs audit up to rounding', async () => {
    const onnx = await audit(collagesRoot, { ...options, folds: 2, epochs: 2, engine: 'onnx' });
    assert.deepEqual(onnx.duplicates.map((d) => [d.a, d.b]), dupes.duplicates.map((d) => [d.a, d.b]));
    onnx.duplicates.forEach((d, i) => assert.ok(Math.abs(d.similarity - dupes.duplicates[i].similarity) < 1e-4, `${d.a}: ${d.similarity} against ${dupes.duplicates[i].similarity}`));
    const worst = Math.max(...onnx.scores.outOfFold.map((p, i) => Math.abs(p - dupes.scores.outOfFold[i])));
    assert.ok(worst < 1e-3, `out-of-fold probabilities differ by up to ${worst}`);
    assert.deepEqual(onnx.outliers.map((o) => o.path), dupes.outliers.map((o) => o.path));
  });

  test('the grey gradient is the top outlier', () => {
    assert.equal(first.outliers[0]?.path, oddOne, JSON.stringify(first.outliers.slice(0, 3)));
  });

  test('the same seed gives the same audit; another seed other out-of-fold heads', async () => {
    const again = await audit(root, options);
    assert.deepEqual(again.labelIssues, first.labelIssues);
    assert.deepEqual(again.duplicates, first.duplicates);
    assert.deepEqual([...again.scores.outOfFold], [...first.scores.outOfFold]);
    const other = await audit(root, { ...options, seed: 43 });
    assert.notDeepEqual([...other.scores.outOfFold], [...first.scores.outOfFold]);
  });

  test('settings a user gets wrong are one clear error', async () => {
    await assert.rejects(audit(root, { ...options, folds: 1 }), /--folds 1: must be a whole number from 2 to 20/);
    await assert.rejects(audit(root, { ...options, duplicateThreshold: 2.5 }), /--duplicate-threshold 2.5: must be above 0 and at most 2/);
  });
});

describe('fix list', () => {
  test('CSV round trip with commas, quotes and line breaks in paths', async () => {
    const rows = [
      { path: '/data/a, "b"\nc.jpg', action: 'relabel' as const, suggested: 'dogs', reason: 'x' },
      { path: '/data/plain.jpg', action: 'remove' as const },
    ];
    const file = path.join(tmp, 'round.csv');
    await writeFile(file, formatFixList(rows));
    assert.deepEqual(await readFixList(file), rows.map((r) => ({ suggested: undefined, reason: undefined, ...r })));
  });

  test('a fix list edited in a spreadsheet (BOM, CRLF, quoted paths with commas) reads back; a broken quote names the file', async () => {
    const file = path.join(tmp, 'edited.csv');
    await writeFile(file, '\uFEFFpath,action,suggested,reason\r\n"/data/cats, old/a ""1"".jpg",relabel,dogs,\r\n\r\n /data/b.jpg , remove ,,\r\n');
    assert.deepEqual(await readFixList(file), [
      { path: '/data/cats, old/a "1".jpg', action: 'relabel', suggested: 'dogs', reason: undefined },
      { path: '/data/b.jpg', action: 'remove', suggested: undefined, reason: undefined },
    ]);
    await writeFile(file, 'path,action,suggested\n"/data/a.jpg,remove,\n');
    await assert.rejects(readFixList(file), (err: Error) => err instanceof UsageError && err.message.startsWith(`--exclude ${file}: `) && !err.message.includes('\n'));
  });

  test('train --exclude leaves out removed images and trains relabelled ones as the suggested class', async () => {
    const proposed = fixRows(first);
    assert.ok(mislabelled.every((p) => proposed.some((r) => r.path === p && r.suggested === 'stripes')), 'each planted image listed with its class');
    assert.ok(proposed.every((r) => r.action === 'keep'), 'nothing removed or relabelled before a person says so');
    // The person's edits: relabel the planted images, remove the second image of the top pair.
    const pair = first.duplicates.find((d) => !mislabelled.includes(d.a) && !mislabelled.includes(d.b))!;
    const rows = proposed.map((r) => (mislabelled.includes(r.path) ? { ...r, action: 'relabel' as const } : r.path === pair.b ? { ...r, action: 'remove' as const } : r));
    const file = path.join(tmp, 'fixes.csv');
    await writeFile(file, formatFixList(rows));

    const dataset = await loadDataset(root);
    const summary = applyFixList(dataset, await readFixList(file), file);
    assert.equal(summary.relabelled, rows.filter((r) => r.action === 'relabel').length);
    const stripes = dataset.classes.indexOf('stripes');
    for (const p of mislabelled) assert.equal([...dataset.train, ...dataset.valid].find((s) => s.path === p)?.label, stripes, p);
    assert.ok(![...dataset.train, ...dataset.valid].some((s) => rows.some((r) => r.action === 'remove' && r.path === s.path)));

    const trained = await train(root, { ...options, epochs: 2, ensemble: 1, exclude: file });
    trained.head.dispose();
    const removed = rows.filter((r) => r.action === 'remove').length;
    assert.equal(trained.counts.train + trained.counts.valid, first.counts.images - removed);
    assert.ok(trained.warnings.some((w) => w.includes(`${removed} image(s) left out, ${summary.relabelled} relabelled`)), trained.warnings.join('\n'));
  });

  test('a fix list naming an unknown class or action is refused with its line', async () => {
    const file = path.join(tmp, 'bad.csv');
    await writeFile(file, `path,action,suggested\n${mislabelled[0]},relabel,zebras\n`);
    await assert.rejects(train(root, { ...options, exclude: file }), /is to be relabelled "zebras", which is not a class of .*\(checker, circle, stripes\)/);
    await writeFile(file, `path,action,suggested\n${mislabelled[0]},delete,\n`);
    await assert.rejects(train(root, { ...options, exclude: file }), /bad\.csv line 2: action "delete" must be one of relabel, remove, keep/);
  });
});

test('the audit report opens in Chromium: every section, every thumbnail, no errors or requests', async (t) => {
  const file = path.join(tmp, 'audit.html');
  await writeAuditReport(file, first);
  const html = await readFile(file, 'utf8');
  assert.doesNotMatch(html, /<script/i);
  const reason = browserSkipReason();
  if (reason) return t.skip(reason);
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => (m.type() === 'error' || m.type() === 'warning') && problems.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('request', (r) => !/^(data|file):/.test(r.url()) && requests.push(r.url()));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    assert.deepEqual(await page.$$eval('section[id]', (els) => els.map((e) => e.id)), ['summary', 'label-issues', 'duplicates', 'outliers']);
    const images = await page.$$eval('img', (els) => els.map((e) => ({ complete: e.complete, width: e.naturalWidth })));
    assert.ok(images.length >= 3 * 5, `${images.length} images`);
    assert.ok(images.every((i) => i.complete && i.width > 0));
    assert.equal(await page.locator('.ph').count(), 0, 'every thumbnail made');
    const pair = await page.locator('#duplicates .pair').first().locator('figure').evaluateAll((els) => els.map((e) => e.getAttribute('title')));
    assert.deepEqual(pair, [first.duplicates[0].a, first.duplicates[0].b], 'the most similar pair side by side');
    assert.equal(await page.locator('#label-issues .row').count(), first.labelIssues.length);
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, []);
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'audit-report.png'), fullPage: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'audit-report-top.png') });
  } finally {
    await browser.close();
  }
});

test('finetune audit: text summary, --json with every list, --fix-list and --report files; refused train flags', async () => {
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'finetune.js'), ...args], { env: { ...process.env, FINETUNE_HOME: path.join(tmp, 'home'), CI: '1', NO_COLOR: '1' }, cwd: tmp });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  const flags = ['--backbone', options.backbone as string, '--layer', 'block2_pool', '--pooling', 'flatten', '--engine', 'tfjs', '--backend', 'cpu', '--no-cache', '--epochs', '8', '--lr', '0.01'];
  const json = await run(['audit', root, ...flags, '--json', '--fix-list', 'fixes.csv', '--report', 'audit.html']);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout);
  assert.deepEqual(parsed.labelIssues.map((l: { path: string }) => l.path), first.labelIssues.map((l) => l.path));
  assert.equal(parsed.duplicates.length, first.duplicates.length);
  assert.equal(parsed.outliers[0].path, oddOne);
  const csv = await readFile(path.join(tmp, 'fixes.csv'), 'utf8');
  assert.match(csv, /^path,action,suggested,reason\n/);
  assert.ok(csv.includes(`${mislabelled[0]},keep,stripes,"label issue: given`), csv);
  assert.match(await readFile(path.join(tmp, 'audit.html'), 'utf8'), /id="label-issues"/);

  const text = await run(['audit', root, ...flags, '--top', '3']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`label issues  ${first.counts.labelIssues} \\(confident learning on 5-fold`));
  assert.ok(text.stdout.includes(`${path.relative(root, mislabelled[0])}`) || text.stdout.includes(path.relative(root, mislabelled[1])));
  assert.match(text.stdout, /near-duplicates  \d+ pair\(s\) with CSLS score ≥ 0\.\d+ \(0 byte-identical\), \d+ across train\/valid; score, cosine:\n  -?\d\.\d{3}  0\.\d{3}  \S+\.jpg  \S+\.jpg/);

  const refused = await run(['audit', root, ...flags, '--ensemble', '3']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--ensemble: a train flag; audit trains one plain head per fold/);
  const unwritable = await run(['audit', root, ...flags, '--report', path.join(tmp, 'no-such-folder', 'a.html')]);
  assert.equal(unwritable.code, 2);
  assert.match(unwritable.stderr, /cannot write .*a\.html: folder .*no-such-folder does not exist/);
});

test('audit --model uses the backbone and classes of the trained model', async () => {
  const trained = await train(root, { ...options, epochs: 2, ensemble: 1 });
  const dir = path.join(tmp, 'model');
  await saveModel(dir, trained);
  trained.head.dispose();
  const model = await loadModel(dir);
  try {
    const { backbone: _, layer: __, pooling: ___, ...rest } = options;
    const result = await audit(root, { ...rest, model });
    assert.deepEqual(result.classes, model.classes);
    assert.equal(result.settings.featureSize, first.settings.featureSize);
    assert.deepEqual(result.labelIssues.slice(0, mislabelled.length).map((l) => l.path).sort(), [...mislabelled].sort());
  } finally {
    model.head.dispose();
  }
});

test('exclude rows naming no image are a warning, not an error', async () => {
  const file = path.join(tmp, 'stale.csv');
  await writeFile(file, `path,action,suggested\n${path.join(root, 'train', 'gone.jpg')},remove,\n`);
  const result = await audit(root, { ...options, exclude: file, folds: 2, epochs: 2 });
  assert.ok(result.warnings.some((w) => /1 row\(s\) name no image/.test(w)), result.warnings.join('\n'));
});
