import { createRng, shuffleInPlace } from '../data/random.ts';

/**
 * A fold number (0 … k−1) per row, dealt class by class after a seeded shuffle, so every fold
 * holds about 1/k of each class (a rare class is not left out of a fold's training rows).
 */
export function stratifiedFolds(labels: ArrayLike<number>, k: number, seed: number): Int32Array {
  const rng = createRng(seed);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) byClass.set(labels[i], [...(byClass.get(labels[i]) ?? []), i]);
  const folds = new Int32Array(labels.length);
  let next = 0;
  for (const label of [...byClass.keys()].sort((a, b) => a - b)) {
    // Each class starts where the previous one stopped, so small classes do not all pile into fold 0.
    for (const row of shuffleInPlace(byClass.get(label)!, rng)) folds[row] = next++ % k;
  }
  return folds;
}
