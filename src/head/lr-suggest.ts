export interface LrPoint {
  lr: number;
  /** Smoothed training loss (exponential moving average, bias-corrected). */
  loss: number;
}

/**
 * The rates a range test's curve suggests: `minimum`, the rate of the lowest loss, and
 * `suggested`, where the loss falls fastest against log(lr) before that minimum (fastai's
 * "steep"), measured over a three-point window so one noisy batch does not decide it. A curve
 * that never falls leaves `suggested` a decade below the minimum.
 */
export function suggestLearningRate(points: readonly LrPoint[]): { suggested: number; minimum: number } {
  let minimum = points[0]?.lr ?? 1e-3;
  let lowest = Infinity;
  for (const p of points) if (p.loss < lowest) [lowest, minimum] = [p.loss, p.lr];
  let suggested = minimum / 10;
  let steepest = 0;
  const upTo = points.findIndex((p) => p.lr === minimum);
  for (let i = 2; i <= upTo; i++) {
    const slope = (points[i].loss - points[i - 2].loss) / Math.log(points[i].lr / points[i - 2].lr);
    if (slope < steepest) [steepest, suggested] = [slope, points[i - 1].lr];
  }
  return { suggested, minimum };
}
