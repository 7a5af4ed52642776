import type { Evaluation } from '../metrics/index.ts';

export interface ReportImage {
  path: string;
  trueLabel: string;
  predictedLabel: string;
  /** Probability of the predicted class. */
  probability: number;
  probabilities: Record<string, number>;
  /** `data:image/jpeg;base64,…`, made by the caller; '' (or anything not a data:image URI) shows a placeholder. */
  thumbnail: string;
}

export type { EpochRecord } from '../head/train.ts';
import type { EpochRecord } from '../head/train.ts';

export interface ReportInput {
  title: string;
  generatedAt: string;
  classes: string[];
  /** Shown as a key/value table: backbone, layer, engine, path … */
  model: Record<string, string | number>;
  evaluation: Evaluation;
  /** Training curves are drawn when given; the section is left out otherwise. */
  history?: EpochRecord[];
  /** All evaluated images, or only those `selectGalleryImages` picked: the galleries come out the same. */
  images: ReportImage[];
  skipped?: { path: string; reason: string }[];
  /** Seed for the random sample of correct images. */
  seed?: number;
  /** Images per gallery; must match what was given to `selectGalleryImages`. */
  perGallery?: number;
}

export type GalleryItem = Omit<ReportImage, 'thumbnail'>;
