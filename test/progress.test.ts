/**
 * Progress that says what is happening: the first forward pass takes one image, so a rate
 * (and, in the CLI, a time left) shows as soon as one image is through the backbone.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { extractFeatures } from '../src/features/extract.ts';
import type { FeatureExtractor } from '../src/engines/types.ts';
import type { ProgressEvent } from '../src/progress.ts';
import { writeClassImage } from './fixtures/images.ts';

let tmp: string;
let files: string[];
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-progress-'));
  files = [];
  for (let i = 0; i < 12; i++) files.push(await writeClassImage(path.join(tmp, `img-${i}.png`), i % 2, { seed: i, size: 16 }));
});
after(() => rm(tmp, { recursive: true, force: true }));

test('the first forward pass is one image; its progress event carries a rate', async () => {
  const batches: number[] = [];
  const extractor: FeatureExtractor = {
    engine: 'onnx',
    device: 'cpu',
    featureSize: 2,
    inputSize: [8, 8],
    async run(images, count) {
      batches.push(count);
      await new Promise((r) => setTimeout(r, 5));
      return new Float32Array(count * 2).fill(1);
    },
    async dispose() {},
  };
  const events: ProgressEvent[] = [];
  const result = await extractFeatures(files, { extractor, preprocess: 'unit', batchSize: 8, onProgress: (e) => events.push(e) });
  assert.equal(result.computed, 12);
  assert.equal(batches[0], 1, `batches ${batches.join(', ')}`);
  assert.ok(batches.slice(1).some((n) => n > 1), `later batches are full-sized: ${batches.join(', ')}`);
  const first = events.find((e) => e.status === 'progress') as Extract<ProgressEvent, { status: 'progress' }>;
  assert.equal(first.current, 1);
  assert.ok(Number(first.info?.imagesPerSecond) > 0, JSON.stringify(first));
});
