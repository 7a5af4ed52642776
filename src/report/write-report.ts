import { TRAIN_DEFAULTS } from '../defaults.ts';
import { writeFileAtomic } from '../fs/atomic.ts';
import { thumbnailDataUri } from '../data/image.ts';
import type { EvaluateResult } from '../pipeline/evaluate.ts';
import type { FinetuneModel } from '../pipeline/predict.ts';
import { renderReport, selectGalleryImages, type ReportImage } from './index.ts';

/** Builds the self-contained HTML report of an evaluation (thumbnails only for gallery images) and writes it atomically. */
export async function writeReport(file: string, model: FinetuneModel, result: EvaluateResult, opts: { title?: string; thumbnailSize?: number } = {}): Promise<string> {
  const seed = model.manifest.training.seed ?? TRAIN_DEFAULTS.seed;
  const chosen = selectGalleryImages(result.items, { seed });
  const images: ReportImage[] = [];
  for (const item of result.items) {
    if (!chosen.has(item.path)) continue;
    const thumbnail = await thumbnailDataUri(item.path, opts.thumbnailSize ?? 176).catch(() => '');
    images.push({ ...item, thumbnail });
  }
  const parts = model.manifest.backbones;
  const each = (f: (b: (typeof parts)[number]) => string | number) => parts.map(f).join(' + ');
  const html = renderReport({
    title: opts.title ?? `${model.dir} — ${result.split} split`,
    generatedAt: new Date().toISOString(),
    classes: model.classes,
    model: {
      model: model.dir,
      backbone: each((b) => b.id),
      layer: each((b) => b.layer),
      pooling: each((b) => b.pooling),
      preprocess: each((b) => b.preprocess),
      'input size': each((b) => `${b.inputSize[0]}×${b.inputSize[1]}`),
      features: model.manifest.featureSize,
      split: result.split,
    },
    evaluation: result.evaluation,
    history: model.manifest.history,
    images,
    skipped: result.skipped,
    seed,
  });
  await writeFileAtomic(file, html);
  return file;
}
