/**
 * Calibration: how far the model's stated confidence is from its hit rate (reliability bins,
 * expected calibration error), and temperature scaling to bring the two closer.
 */

export interface ReliabilityBin {
  lower: number;
  upper: number;
  count: number;
  /** Mean top-1 confidence of the samples in the bin; 0 when the bin is empty. */
  confidence: number;
  /** Fraction of the bin's samples predicted correctly; 0 when the bin is empty. */
  accuracy: number;
}

export const RELIABILITY_BINS = 10;

/**
 * Equal-width bins on [0, 1], lower edge inclusive (the last bin also holds 1.0).
 * ECE = Σ (count_b / n) · |accuracy_b − confidence_b|.
 */
export function reliability(
  confidences: ArrayLike<number>,
  correct: ArrayLike<boolean>,
  binCount: number = RELIABILITY_BINS,
): { bins: ReliabilityBin[]; ece: number } {
  const n = confidences.length;
  const sums = Array.from({ length: binCount }, () => ({ count: 0, confidence: 0, hits: 0 }));
  for (let i = 0; i < n; i++) {
    const c = confidences[i];
    const index = Math.min(Math.max(Math.floor(c * binCount), 0), binCount - 1);
    sums[index].count++;
    sums[index].confidence += c;
    if (correct[i]) sums[index].hits++;
  }
  let ece = 0;
  const bins = sums.map((s, b) => {
    const confidence = s.count ? s.confidence / s.count : 0;
    const accuracy = s.count ? s.hits / s.count : 0;
    if (n > 0) ece += (s.count / n) * Math.abs(accuracy - confidence);
    return { lower: b / binCount, upper: (b + 1) / binCount, count: s.count, confidence, accuracy };
  });
  return { bins, ece };
}

function checkTemperature(temperature: number): void {
  if (!(temperature > 0) || !Number.isFinite(temperature)) {
    throw new RangeError(`temperature must be a finite number > 0, got ${temperature}`);
  }
}

/** softmax(logits / T), computed stably. A logit of -Infinity stays probability 0. */
export function applyTemperature(logits: ArrayLike<number>, temperature: number): Float64Array {
  checkTemperature(temperature);
  const out = new Float64Array(logits.length);
  let max = -Infinity;
  for (let j = 0; j < logits.length; j++) max = Math.max(max, logits[j] / temperature);
  let sum = 0;
  for (let j = 0; j < logits.length; j++) {
    out[j] = Math.exp(logits[j] / temperature - max);
    sum += out[j];
  }
  for (let j = 0; j < out.length; j++) out[j] /= sum;
  return out;
}

/** log of clipped probabilities, the logits to give `fitTemperature` when only softmax output is kept. */
export function logitsFromProbabilities(probabilities: ArrayLike<number>): Float64Array {
  return Float64Array.from(probabilities, (p) => Math.log(Math.max(p, 1e-15)));
}

/**
 * The temperatures a fit may return. A small or perfectly separated validation split pushes
 * T towards 0 (certainty); the bounds keep one lucky split from making every later prediction
 * 0 or 1, and one unlucky one from flattening them all.
 */
export const TEMPERATURE_RANGE = [0.5, 10] as const;

/**
 * The T > 0 that minimises the mean log loss of softmax(logits / T) (Guo et al. 2017).
 * With s = 1/T the loss is convex in s, so its derivative is monotone and a bisection on its
 * sign finds the optimum without step sizes to tune. The answer lies in TEMPERATURE_RANGE
 * (convex in s: the optimum over the range is the unbounded one clamped to it).
 * A logit of -Infinity (log of a probability that underflowed) is read as 1e-15 of the row's
 * top class, so one such sample cannot make the loss infinite at every T.
 */
export function fitTemperature(labels: ArrayLike<number>, logits: ArrayLike<number>[]): number {
  if (labels.length !== logits.length) {
    throw new RangeError(`fitTemperature: ${labels.length} labels but ${logits.length} logit rows`);
  }
  if (labels.length === 0) throw new RangeError('fitTemperature: no samples');
  const rows = logits.map((row, i) => finiteLogits(row, i));
  labels = Array.from(labels);
  for (let i = 0; i < labels.length; i++) {
    if (!Number.isInteger(labels[i]) || labels[i] < 0 || labels[i] >= rows[i].length) {
      throw new RangeError(`fitTemperature: label ${labels[i]} of sample ${i} is not a class index of its row`);
    }
  }

  // d/ds mean(logsumexp(s·z) − s·z_y) = mean(E_softmax(s·z)[z] − z_y), increasing in s.
  const slope = (s: number): number => {
    let total = 0;
    for (let i = 0; i < rows.length; i++) {
      const z = rows[i];
      let max = -Infinity;
      for (let j = 0; j < z.length; j++) max = Math.max(max, s * z[j]);
      let weight = 0;
      let weighted = 0;
      for (let j = 0; j < z.length; j++) {
        const w = Math.exp(s * z[j] - max);
        weight += w;
        weighted += w * z[j];
      }
      total += weighted / weight - z[labels[i]];
    }
    return total / rows.length;
  };

  const [minT, maxT] = TEMPERATURE_RANGE;
  let lo = Math.log(1 / maxT);
  let hi = Math.log(1 / minT);
  if (slope(Math.exp(hi)) <= 0) return minT;
  if (slope(Math.exp(lo)) >= 0) return maxT;
  for (let iteration = 0; iteration < 60; iteration++) {
    const mid = (lo + hi) / 2;
    if (slope(Math.exp(mid)) < 0) lo = mid;
    else hi = mid;
  }
  return 1 / Math.exp((lo + hi) / 2);
}

function finiteLogits(row: ArrayLike<number>, index: number): Float64Array {
  const z = Float64Array.from(row);
  let max = -Infinity;
  for (const v of z) {
    if (Number.isNaN(v) || v === Infinity) throw new RangeError(`fitTemperature: logit row ${index} contains ${v}`);
    if (v > max) max = v;
  }
  if (max === -Infinity) throw new RangeError(`fitTemperature: logit row ${index} has no finite value`);
  const floor = max + Math.log(1e-15);
  for (let j = 0; j < z.length; j++) if (z[j] === -Infinity) z[j] = floor;
  return z;
}
