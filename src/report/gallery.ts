/**
 * Which images each gallery shows. Every choice is a ranking with a total order (ties broken by
 * path, the random sample ordered by a seeded hash of the path), so picking from all images or
 * from only the previously picked ones gives the same galleries: the CLI can make thumbnails for
 * just those, then hand only them to `renderReport`.
 */
import type { GalleryItem } from './types.ts';

export const DEFAULT_PER_GALLERY = 8;

export interface GalleryOptions {
  perGallery?: number;
  seed?: number;
}

export interface ClassGallery<T> {
  label: string;
  items: T[];
}

export interface GalleryPlan<T> {
  /** Random (seeded) sample of correctly classified images. */
  correct: T[];
  /** Per true class, the wrong predictions made with the highest probability. */
  mistakes: ClassGallery<T>[];
  /** Top probability nearest 1/numClasses: the model could hardly tell. */
  uncertain: T[];
  /** Per true class, the right predictions made with the highest probability. */
  confident: ClassGallery<T>[];
}

/** Per-class galleries shrink as classes grow, so 100 classes do not mean 800 thumbnails. */
export function perClassLimit(perGallery: number, numClasses: number): number {
  return Math.max(1, Math.min(Math.ceil(perGallery / 2), Math.floor((4 * perGallery) / Math.max(numClasses, 1))));
}

/** FNV-1a then a murmur3 finaliser: a stable, well-mixed 32-bit key per (seed, path). */
export function seededKey(seed: number, text: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  const input = `${seed}\u0000${text}`;
  for (let i = 0; i < input.length; i++) {
    h ^= input.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const byPath = (a: GalleryItem, b: GalleryItem) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

function topBy<T extends GalleryItem>(items: T[], key: (item: T) => number, limit: number): T[] {
  return items
    .map((item) => ({ item, k: key(item) }))
    .sort((a, b) => a.k - b.k || byPath(a.item, b.item))
    .slice(0, limit)
    .map(({ item }) => item);
}

const isCorrect = (item: GalleryItem) => item.trueLabel === item.predictedLabel;

export function planGalleries<T extends GalleryItem>(items: T[], classes: string[], options: GalleryOptions = {}): GalleryPlan<T> {
  const { perGallery = DEFAULT_PER_GALLERY, seed = 0 } = options;
  const limit = Math.max(0, Math.floor(perGallery));
  const perClass = limit === 0 ? 0 : perClassLimit(limit, classes.length);
  const correct = items.filter(isCorrect);
  const wrong = items.filter((item) => !isCorrect(item));
  const chance = 1 / Math.max(classes.length, 1);

  const perTrueClass = (pool: T[]) =>
    classes.map((label) => ({
      label,
      items: topBy(pool.filter((item) => item.trueLabel === label), (item) => -item.probability, perClass),
    }));

  return {
    correct: topBy(correct, (item) => seededKey(seed, item.path), limit),
    mistakes: perTrueClass(wrong),
    uncertain: topBy(items, (item) => Math.abs(item.probability - chance), limit),
    confident: perTrueClass(correct),
  };
}

/** Every class named by the items, in order of first appearance. */
function classesOf(items: GalleryItem[]): string[] {
  const seen = new Set<string>();
  for (const item of items) {
    for (const label of Object.keys(item.probabilities)) seen.add(label);
    seen.add(item.trueLabel);
    seen.add(item.predictedLabel);
  }
  return [...seen];
}

/** The paths `renderReport` will show, so that thumbnails are made for these only. */
export function selectGalleryImages(items: GalleryItem[], opts: GalleryOptions = {}): Set<string> {
  const plan = planGalleries(items, classesOf(items), opts);
  const chosen = new Set<string>();
  for (const item of [...plan.correct, ...plan.uncertain]) chosen.add(item.path);
  for (const group of [...plan.mistakes, ...plan.confident]) for (const item of group.items) chosen.add(item.path);
  return chosen;
}
