/**
 * Bad inputs: nothing crashes, everything skipped is named.
 *
 * The corpus (test/fixtures/bad-inputs.ts writes it; fastai layout, classes a and b) and what
 * each kind must do. "skipped" = listed in `skipped` with its path and a reason, the run goes
 * on, and the CLI exits 3; "ignored" = in neither `skipped` nor the counts.
 *
 * | kind                                                 | behaviour                                              |
 * | ---------------------------------------------------- | ------------------------------------------------------ |
 * | plain JPEG, upper-case .JPG                          | works                                                  |
 * | PNG with alpha                                       | works, flattened on white (half-transparent red → 255,127,127) |
 * | greyscale JPEG (1 channel)                           | works, 3 channels out                                  |
 * | CMYK JPEG                                            | works, converted to sRGB                               |
 * | 16-bit PNG                                           | works, 8-bit RGB out (not byte garbage)                |
 * | palette PNG                                          | works                                                  |
 * | animated GIF (2 frames)                              | works, first frame only                                |
 * | WebP, TIFF, AVIF                                     | work                                                   |
 * | 1×1 image, 10000×200 image                           | work (resized to the backbone's 32×32)                 |
 * | EXIF orientation 6                                   | works, rotated before resizing                         |
 * | PNG bytes named .jpg                                 | works (content decides, not the name)                  |
 * | `-ünï cödé photo.jpg` (spaces, unicode, leading dash)| works in train; `predict -- NAME` and `predict ./NAME` |
 * | zero-byte file                                       | skipped: "empty file"                                  |
 * | truncated JPEG, truncated PNG (half the bytes)       | skipped: "corrupt or truncated image (jpeg|png)", also when many decode at once (was: "Unknown error" or another file's libvips message) |
 * | random bytes named .jpg, text file named .png        | skipped: "not an image sharp can decode"               |
 * | decompression bomb (30000×30000 PNG, ~100 KB)        | skipped: "image too large", by the pixel limit, in ms  |
 * | notes.txt                                            | skipped: "not an image file (.txt)"                    |
 * | named pipe pipe.jpg                                  | skipped: "not a regular file" (was: silently dropped in train, predict hung) |
 * | symlink to its own folder (a/loop → .)               | skipped: "symbolic link loop"                          |
 * | class folder linking to its parent (train/all → .)   | skipped: "symbolic link loop" (was: a class "all" holding every image) |
 * | symlink to itself, dangling symlink                  | skipped: "broken or looping symbolic link"             |
 * | directory named x.jpg                                | looked into like any folder; empty → nothing; `predict x.jpg/` → "folder holds no images", exit 3 |
 * | .DS_Store, Thumbs.db, desktop.ini, .hidden.jpg, .thumbnails/ | ignored silently                               |
 * | empty class folder (only a .DS_Store)                | warning naming the folder; class left out              |
 * | same image in train/ and valid/                      | warning "leakage", naming both paths (by content hash) |
 * | only one class                                       | exit 2, one line                                       |
 * | train/ and valid/ with different class names         | exit 2, naming the class                               |
 * | every training image of one class unreadable         | exit 2                                                 |
 * | unreadable file (mode 000; not as root)              | skipped: "cannot read (EACCES)"                        |
 * | unreadable folder (mode 000; test/unreadable.test.ts runs it as nobody) | exit 2: "cannot read the folder …: permission denied" (was: skipped, and a class lost) |
 * | data folder that does not exist                      | exit 2                                                 |
 * | a file given as the data folder                      | exit 2                                                 |
 * | predict: a missing file among good ones              | the good ones answered on stdout, the missing named on stderr, exit 3 |
 * | predict: the bomb, a pipe                            | named with its reason on stderr, exit 3                |
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { EXIT, UsageError } from '../src/errors.ts';
import { ImageReadError, MAX_INPUT_PIXELS, readImage } from '../src/data/image.ts';
import { train } from '../src/pipeline/train.ts';
import { AWKWARD_NAME, BLUE, CORPUS, RED, TINY_LAYER, buildCorpus, buildGoodData, noisy, writeTinyBackbone } from './fixtures/bad-inputs.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(repoRoot, 'bin/finetune.js');
const posix = process.platform !== 'win32';

let root = '';
let data = '';
let backbone = '';
let home = '';

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'finetune-bad-input-'));
  data = path.join(root, 'data');
  home = path.join(root, 'home');
  await mkdir(data);
  if (posix) await buildCorpus(data);
  backbone = await writeTinyBackbone(path.join(root, 'backbone'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], opts: { cwd?: string } = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, FINETUNE_HOME: home, CI: '1', NO_COLOR: '1' };
  delete env.FINETUNE_DEBUG;
  delete env.FINETUNE_CACHE;
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd: opts.cwd ?? repoRoot, env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

const tinyFlags = () => ['--backbone', backbone, '--layer', TINY_LAYER, '--engine', 'tfjs', '--epochs', '2', '--hidden', '8'];
const abs = (rel: string) => path.join(data, rel);
const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('finetune: error:'));

function assertOneLineError(r: CliResult, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const errors = errorLines(r.stderr);
  assert.equal(errors.length, 1, `one error line in:\n${r.stderr}`);
  assert.match(errors[0], pattern);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
}

describe('each kind decodes or is refused with a reason (readImage)', { skip: !posix && 'needs symbolic links and mkfifo' }, () => {
  for (const entry of CORPUS.filter((e) => e.expect === 'ok' && e.pixel)) {
    test(`${entry.kind}: 32×32 RGB of the right colour`, async () => {
      const image = await readImage(abs(entry.rel), { size: [32, 32] });
      assert.equal(image.rgb.length, 32 * 32 * 3);
      const [r, g, b] = entry.pixel!;
      const tol = entry.tolerance ?? 0;
      for (const i of [0, 16 * 32 + 16, 32 * 32 - 1]) {
        const px = [image.rgb[i * 3], image.rgb[i * 3 + 1], image.rgb[i * 3 + 2]];
        assert.ok(Math.abs(px[0] - r) <= tol && Math.abs(px[1] - g) <= tol && Math.abs(px[2] - b) <= tol, `pixel ${i} is ${px}, expected ${entry.pixel} ± ${tol}`);
      }
    });
  }

  test('EXIF orientation 6 is applied before resizing: left-red/right-blue becomes top-red/bottom-blue', async () => {
    const { rgb } = await readImage(abs('train/a/exif-orientation-6.jpg'), { size: [32, 32] });
    const at = (x: number, y: number) => [...rgb.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3)];
    const near = (px: number[], c: typeof RED) => Math.abs(px[0] - c.r) < 30 && Math.abs(px[1] - c.g) < 30 && Math.abs(px[2] - c.b) < 30;
    assert.ok(near(at(30, 2), RED), `top right ${at(30, 2)} should be red`);
    assert.ok(near(at(2, 29), BLUE), `bottom left ${at(2, 29)} should be blue`);
  });

  test('the decompression bomb is refused by the pixel limit, fast and without allocating its pixels', async () => {
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    await assert.rejects(readImage(abs('train/a/bomb-30000x30000.png'), { size: [32, 32] }), (err: unknown) => {
      assert.ok(err instanceof ImageReadError);
      assert.match(err.reason, new RegExp(`too large \\(over ${MAX_INPUT_PIXELS / 1e6} megapixels\\)`));
      return true;
    });
    assert.ok(performance.now() - started < 1000, 'refused from the header, not after decoding');
    assert.ok(process.memoryUsage().rss - rssBefore < 200 * 2 ** 20, 'its 900 megapixels were never allocated');
  });

  const unreadable = CORPUS.filter((e) => e.expect === 'skipped' && /\.(jpg|png)$/.test(e.rel) && !/link|pipe/.test(e.kind));

  test('reasons stay right while many files decode at once (libvips shares one error buffer between threads)', async () => {
    const good = CORPUS.filter((e) => e.expect === 'ok' && e.rel.startsWith('train/a/'));
    for (let round = 0; round < 4; round++) {
      const mixed = [...unreadable, ...good, ...unreadable];
      const outcomes = await Promise.all(mixed.map((e) => readImage(abs(e.rel), { size: [32, 32] }).then(() => 'decoded', (err: ImageReadError) => err.reason)));
      mixed.forEach((e, i) => {
        if (e.expect === 'ok') assert.equal(outcomes[i], 'decoded', e.kind);
        else assert.match(outcomes[i], e.reason!, `${e.kind}, round ${round}`);
      });
    }
  });

  for (const entry of unreadable) {
    test(`${entry.kind}: ImageReadError naming the file`, async () => {
      await assert.rejects(readImage(abs(entry.rel), { size: [32, 32] }), (err: unknown) => {
        assert.ok(err instanceof ImageReadError, String(err));
        assert.equal(err.path, abs(entry.rel));
        assert.match(err.reason, entry.reason!);
        return true;
      });
    });
  }
});

describe('train on the whole corpus (library)', { skip: !posix && 'needs symbolic links and mkfifo' }, () => {
  test('readable kinds are used, unreadable ones are skipped with path and reason, litter is ignored', async () => {
    const tensorsBefore = tf.memory().numTensors;
    const result = await train(data, { backbone, layer: TINY_LAYER, engine: 'tfjs', epochs: 2, hidden: 8, cacheDir: false });
    result.head.dispose();
    assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensors left behind');

    assert.deepEqual(result.classes, ['a', 'b'], 'the empty class is left out, the looping link is not a class');
    const expectedSkipped = CORPUS.filter((e) => e.expect === 'skipped');
    const skipped = new Map(result.skipped.map((s) => [s.path, s.reason]));
    for (const e of expectedSkipped) {
      assert.ok(skipped.has(abs(e.rel)), `${e.kind} (${e.rel}) should be in skipped: ${JSON.stringify(result.skipped, null, 1)}`);
      assert.match(skipped.get(abs(e.rel))!, e.reason!, e.kind);
    }
    assert.equal(result.skipped.length, expectedSkipped.length, `nothing else skipped: ${JSON.stringify(result.skipped, null, 1)}`);
    for (const e of CORPUS.filter((e) => e.expect === 'ignored')) {
      assert.ok(!result.skipped.some((s) => s.path.startsWith(abs(e.rel))), `${e.kind} must not be reported`);
    }

    const okIn = (split: string) => CORPUS.filter((e) => e.rel.startsWith(split) && (e.expect === 'ok' || /leakage/.test(String(e.reason)))).length;
    assert.deepEqual(result.counts, { train: okIn('train/'), valid: okIn('valid/'), skipped: expectedSkipped.length });

    const empty = result.warnings.find((w) => w.includes(abs('train/empty')));
    assert.ok(empty, `a warning names the empty class folder: ${result.warnings}`);
    assert.match(empty, /class "empty" left out/);
    const leak = result.warnings.find((w) => /leakage/.test(w));
    assert.ok(leak, `a leakage warning: ${result.warnings}`);
    assert.ok(leak.includes(abs('valid/a/copy-of-good-1.jpg')) && leak.includes(abs('train/a/good-1.jpg')), leak);
    // A handful of validation images: calibration is skipped, and said so.
    assert.ok(result.warnings.some((w) => /^calibration skipped/.test(w)), `a calibration warning: ${result.warnings}`);
    assert.equal(result.warnings.length, 3, `no other warnings: ${result.warnings}`);
  });

  test('a class whose every training image is unreadable is a UsageError, not a crash', async () => {
    const dir = path.join(root, 'unreadable-class');
    await buildGoodData(dir, 2);
    for (const f of ['a-0.jpg', 'a-1.jpg']) await writeFile(path.join(dir, 'train/a', f), 'not an image');
    await assert.rejects(train(dir, { backbone, layer: TINY_LAYER, engine: 'tfjs', epochs: 1, hidden: 8, cacheDir: false }), (err: unknown) => {
      assert.ok(err instanceof UsageError, String(err));
      assert.match(err.message, /fewer than 2 classes have readable training images/);
      return true;
    });
  });
});

describe('the CLI on bad data', { skip: !posix && 'needs symbolic links and mkfifo' }, () => {
  const model = () => path.join(root, 'model');

  before(async () => {
    await Promise.all([
      mkdir(path.join(root, 'one-class/train/a'), { recursive: true }).then(async () => {
        await mkdir(path.join(root, 'one-class/valid/a'), { recursive: true });
        await writeFile(path.join(root, 'one-class/train/a/1.jpg'), await noisy(40, 40, 10));
        await writeFile(path.join(root, 'one-class/valid/a/1.jpg'), await noisy(40, 40, 20));
      }),
      buildGoodData(path.join(root, 'mismatch'), 1).then(() => mkdir(path.join(root, 'mismatch/valid/c'))).then(async () => {
        await writeFile(path.join(root, 'mismatch/valid/c/c.jpg'), await noisy(40, 40, 99));
      }),
      writeFile(path.join(root, 'a-file.jpg'), 'x'),
    ]);
  });

  test('train on the corpus: exit 3, every skipped file named with its reason on stderr, warnings shown', async () => {
    const r = await runCli(['train', data, ...tinyFlags(), '--out', model()]);
    assert.equal(r.code, EXIT.skipped, r.stderr);
    const skipped = CORPUS.filter((e) => e.expect === 'skipped');
    const trainCount = CORPUS.filter((e) => e.rel.startsWith('train/') && e.expect === 'ok').length;
    assert.match(r.stdout, new RegExp(`images\\s+${trainCount} train, 3 valid, ${skipped.length} skipped`));
    for (const e of skipped) {
      const line = r.stderr.split('\n').find((l) => l.startsWith(`  ${abs(e.rel)}: `));
      assert.ok(line, `stderr lists ${e.rel}:\n${r.stderr}`);
      assert.match(line, e.reason!);
    }
    assert.match(r.stderr, /warning: .*class "empty" left out/);
    assert.match(r.stderr, /warning: leakage: .*copy-of-good-1\.jpg.*good-1\.jpg/);
    for (const e of CORPUS.filter((e) => e.expect === 'ignored')) assert.ok(!r.stderr.includes(abs(e.rel)), `${e.rel} is not mentioned`);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  });

  test('usage errors exit 2 with one line: one class, class names differ, no such folder, a file', async () => {
    const [one, mismatch, missing, file] = await Promise.all([
      runCli(['train', path.join(root, 'one-class'), ...tinyFlags()]),
      runCli(['train', path.join(root, 'mismatch'), ...tinyFlags()]),
      runCli(['train', path.join(root, 'no-such-folder'), ...tinyFlags()]),
      runCli(['train', path.join(root, 'a-file.jpg'), ...tinyFlags()]),
    ]);
    assertOneLineError(one, EXIT.usage, /only one class \("a"\).*at least 2 classes/);
    assertOneLineError(mismatch, EXIT.usage, /"c".*train\/ and valid\/ need the same class names/);
    assertOneLineError(missing, EXIT.usage, /no-such-folder does not exist/);
    assertOneLineError(file, EXIT.usage, /a-file\.jpg is a file, not a folder/);
  });

  test('predict: good ones answered, a missing file, the bomb, a pipe and an empty x.jpg/ folder named; exit 3', async () => {
    const good = abs('train/b/b-1.jpg');
    const r = await runCli(['predict', '--model', model(), '--engine', 'tfjs', good, abs('train/a/no-such.jpg'), abs('train/a/bomb-30000x30000.png'), abs('train/a/pipe.jpg'), abs('train/a/x.jpg'), abs('valid/b/vb-1.jpg')]);
    assert.equal(r.code, EXIT.skipped, r.stderr);
    const answered = r.stdout.trim().split('\n');
    assert.deepEqual(answered.map((l) => l.split('\t')[0]), [good, abs('valid/b/vb-1.jpg')]);
    for (const line of answered) assert.match(line, /\t[ab]\t[01]\.\d{4}$/);
    assert.match(r.stderr, new RegExp(`${abs('train/a/no-such.jpg')}: error: file not found`));
    assert.match(r.stderr, /bomb-30000x30000\.png: error: image too large/);
    assert.match(r.stderr, /pipe\.jpg: error: not a regular file/);
    assert.match(r.stderr, /x\.jpg: error: folder holds no images/);
  });

  test(`predict a file named "${AWKWARD_NAME}" after -- and as ./NAME`, async () => {
    const cwd = abs('train/a');
    const [dashed, dotted] = await Promise.all([
      runCli(['predict', '--model', model(), '--engine', 'tfjs', '--', AWKWARD_NAME], { cwd }),
      runCli(['predict', '--model', model(), '--engine', 'tfjs', `./${AWKWARD_NAME}`], { cwd }),
    ]);
    assert.equal(dashed.code, EXIT.ok, dashed.stderr);
    assert.match(dashed.stdout, new RegExp(`^${AWKWARD_NAME}\t[ab]\t`));
    assert.equal(dotted.code, EXIT.ok, dotted.stderr);
    assert.match(dotted.stdout, new RegExp(`^\\./${AWKWARD_NAME}\t[ab]\t`));
  });

  test('a name with a leading dash and no -- is taken as an option: usage error, exit 2', async () => {
    const r = await runCli(['predict', '--model', model(), AWKWARD_NAME], { cwd: abs('train/a') });
    assert.equal(r.code, EXIT.usage, r.stderr);
  });
});

describe('file kinds that need a non-root user', () => {
  test('an unreadable file is skipped: "cannot read (EACCES)"', { skip: (!posix || process.getuid?.() === 0) && 'root reads every file; needs a POSIX non-root user' }, async () => {
    const dir = path.join(root, 'unreadable');
    await buildGoodData(dir, 1);
    const file = path.join(dir, 'train/a/locked.jpg');
    await writeFile(file, await noisy(40, 40, 50), { mode: 0o000 });
    const result = await train(dir, { backbone, layer: TINY_LAYER, engine: 'tfjs', epochs: 1, hidden: 8, cacheDir: false });
    result.head.dispose();
    assert.deepEqual(result.skipped, [{ path: file, reason: 'cannot read (EACCES)' }]);
  });
});
