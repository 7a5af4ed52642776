import { existsSync } from 'node:fs';
import path from 'node:path';
import { REGISTRY, type WeightsFile } from './registry.ts';
import { weightsCandidates } from './weights-lookup.ts';
import { modelsDir } from '../paths.ts';

/**
 * What `finetune models pull NAME` can fetch: each registry backbone's no-top weights under
 * its name, the with-top weights under NAME-full, and Keras's ImageNet class index.
 */
export interface PullTarget {
  name: string;
  backbone?: string;
  top: boolean;
  file: WeightsFile;
}

export const IMAGENET_CLASSES: WeightsFile = {
  file: 'imagenet_class_index.json',
  url: 'https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json',
  bytes: 35_363,
};

export function pullTargets(): PullTarget[] {
  const targets: PullTarget[] = [];
  for (const entry of Object.values(REGISTRY)) {
    targets.push({ name: entry.name, backbone: entry.name, top: false, file: entry.weights.notop });
    if (entry.weights.full) targets.push({ name: `${entry.name}-full`, backbone: entry.name, top: true, file: entry.weights.full });
  }
  targets.push({ name: 'imagenet-classes', top: false, file: IMAGENET_CLASSES });
  return targets;
}

/** Where a file is fetched from: its published URL, or $FINETUNE_MIRROR/<file> (air-gapped mirrors, tests). */
export function sourceUrl(file: WeightsFile): string {
  const mirror = process.env.FINETUNE_MIRROR;
  return mirror ? `${mirror.replace(/\/+$/, '')}/${file.file}` : file.url;
}

export function pullDestination(file: WeightsFile): string {
  return path.join(modelsDir(), file.file);
}

/** The first place the file already is (finetune's cache, then Keras's), if any. */
export function presentAt(file: WeightsFile): string | undefined {
  return weightsCandidates(file).find((p) => existsSync(p));
}

/** FINETUNE_OFFLINE=1 forbids every download. */
export function offlineByEnv(): boolean {
  return ['1', 'true', 'yes'].includes((process.env.FINETUNE_OFFLINE ?? '').toLowerCase());
}
