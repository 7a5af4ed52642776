import type * as tf from '@tensorflow/tfjs';
import { loadBackbone } from '../src/backbones/resolve.ts';
import type { Preprocess } from '../src/data/preprocess.ts';
import { initBackend } from '../src/engines/backend.ts';
import { createOnnxExtractor } from '../src/engines/onnx.ts';
import { extractFeatures } from '../src/features/extract.ts';
import { log, round } from './timing.ts';

export interface RssResult {
  images: number;
  network: string;
  /** RSS once the backbone and engine are up, before any image. */
  rssBeforeMB: number;
  /** process.resourceUsage().maxRSS at the end: the peak of the whole process. */
  maxRssMB: number;
  seconds: number;
  imagesPerSecond: number;
}

/**
 * One process, one extraction over `n` files (the list repeated as needed), no cache. Peak
 * RSS must not grow with n: the pipeline's queue is bounded and features are n×dim floats.
 */
export async function run(opts: { backbone: string | null; files: string[]; n: number; batch: number }): Promise<RssResult> {
  await initBackend('wasm');
  let model: tf.LayersModel;
  let layer: string;
  let preprocess: Preprocess;
  let network: string;
  if (opts.backbone) {
    const b = await loadBackbone(opts.backbone);
    ({ model, layer, preprocess } = b);
    network = `darknet-tiny → ${layer}`;
  } else {
    const { smallNet, SMALL_NET_LAYER } = await import('./small-net.ts');
    model = smallNet();
    layer = SMALL_NET_LAYER;
    preprocess = 'unit';
    network = 'small 4-conv network (../shared absent)';
  }
  const extractor = await createOnnxExtractor(model, { layer, pooling: 'avg' });
  const paths = Array.from({ length: opts.n }, (_, i) => opts.files[i % opts.files.length]);
  const rssBefore = process.memoryUsage().rss;
  const t = performance.now();
  const result = await extractFeatures(paths, { extractor, preprocess, batchSize: opts.batch });
  const seconds = (performance.now() - t) / 1000;
  if (result.computed !== opts.n) throw new Error(`rss: ${result.computed} of ${opts.n} images computed (${result.skipped.length} skipped)`);
  await extractor.dispose();
  model.dispose();
  const out = {
    images: opts.n,
    network,
    rssBeforeMB: round(rssBefore / 2 ** 20, 1),
    maxRssMB: round(process.resourceUsage().maxRSS / 1024, 1),
    seconds: round(seconds, 2),
    imagesPerSecond: round(opts.n / seconds, 1),
  };
  log(`extraction of ${opts.n} images: peak RSS ${out.maxRssMB} MB (${out.imagesPerSecond} images/s)`);
  return out;
}
