/**
 * One-cycle learning rate (fastai's fit_one_cycle): a cosine warm-up from top/25 over the
 * first 25% of the steps, then a cosine decay to top/1e4 (fastai's defaults).
 */
export function oneCycleRate(step: number, totalSteps: number, top: number): number {
  const warm = warmupSteps(totalSteps);
  const cos = (from: number, to: number, frac: number) => to + ((from - to) * (1 + Math.cos(Math.PI * Math.min(1, frac)))) / 2;
  if (step < warm) return cos(top, top / 25, 1 - step / warm);
  return cos(top, top / 1e4, (step - warm) / Math.max(1, totalSteps - warm));
}

/** Steps of oneCycleRate's warm-up. */
export function warmupSteps(totalSteps: number): number {
  return Math.max(1, Math.round(0.25 * totalSteps));
}

/**
 * Discriminative learning rates: layer i of n (0 = earliest) gets a scale spread^((n−1−i)/(n−1)),
 * geometric from `spread` (the earliest) to 1 (the last, i.e. the head): earlier layers hold
 * more general features and move less (fastai's slice(lr/10, lr) with the default 0.1).
 */
export function layerRateScales(layers: number, spread = 0.1): number[] {
  if (layers <= 1) return Array.from({ length: layers }, () => 1);
  return Array.from({ length: layers }, (_, i) => spread ** ((layers - 1 - i) / (layers - 1)));
}
