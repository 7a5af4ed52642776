/**
 * Confident learning (Northcutt et al. 2021, as cleanlab does it) on out-of-fold probabilities:
 * a rank of every image by how little the other images' model believes its given label, and
 * the images the confident joint counts as labelled off its class.
 */
export const LABEL_SCORES = ['self-confidence', 'normalized-margin'] as const;
export type LabelScore = (typeof LABEL_SCORES)[number];

export interface LabelVerdict {
  /** Label quality in [0, 1]: low means the given label is probably wrong. */
  score: number;
  /** The class the confident joint puts the image in, else the likeliest other class. */
  suggested: number;
  /** Counted off the diagonal of the confident joint: the audit calls it a label issue. */
  flagged: boolean;
}

/**
 * self-confidence: p(given). normalized-margin: (p(given) − max other p + 1) / 2, which also looks
 * at how strongly one other class is preferred (the same ranking as self-confidence with 2 classes).
 */
export function labelQuality(row: ArrayLike<number>, given: number, method: LabelScore): number {
  if (method === 'self-confidence') return row[given];
  let other = 0;
  for (let j = 0; j < row.length; j++) if (j !== given && row[j] > other) other = row[j];
  return (row[given] - other + 1) / 2;
}

/**
 * Per-class thresholds t_j = mean p(j) over the images labelled j. An image is counted in class
 * j* = argmax over the classes j whose p(j) ≥ t_j; it is flagged when j* is not its given label.
 */
export function judgeLabels(probabilities: Float32Array, labels: ArrayLike<number>, classes: number, method: LabelScore): LabelVerdict[] {
  const n = labels.length;
  const sums = new Float64Array(classes);
  const counts = new Float64Array(classes);
  for (let i = 0; i < n; i++) {
    sums[labels[i]] += probabilities[i * classes + labels[i]];
    counts[labels[i]]++;
  }
  // A class no image is labelled with cannot be confidently joined: its threshold is above any p.
  const thresholds = Array.from(sums, (s, j) => (counts[j] > 0 ? s / counts[j] : 2));
  const verdicts: LabelVerdict[] = [];
  for (let i = 0; i < n; i++) {
    const row = probabilities.subarray(i * classes, (i + 1) * classes);
    const given = labels[i];
    let confident = -1;
    let other = -1;
    for (let j = 0; j < classes; j++) {
      if (row[j] >= thresholds[j] && (confident < 0 || row[j] > row[confident])) confident = j;
      if (j !== given && (other < 0 || row[j] > row[other])) other = j;
    }
    const flagged = confident >= 0 && confident !== given;
    verdicts.push({ score: labelQuality(row, given, method), suggested: flagged ? confident : other, flagged });
  }
  return verdicts;
}
