import { nearestOfClass, type NeighbourTable } from './neighbours.ts';

/**
 * Distance (1 − cosine similarity) to the k-th nearest image of the nearest class: high for an
 * image far from every class (a placeholder, a drawing, another subject), low for one that is
 * merely labelled with the wrong class, which sits inside another class.
 */
export function outlierScores(table: NeighbourTable, n: number, kth: number): Float32Array {
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let best = Infinity;
    for (let c = 0; c < table.classes; c++) {
      const near = nearestOfClass(table, i, c);
      if (near.length === 0) continue;
      best = Math.min(best, 1 - near[Math.min(kth, near.length) - 1].similarity);
    }
    scores[i] = Number.isFinite(best) ? best : 0;
  }
  return scores;
}

/**
 * Scores above median + 3.5 robust standard deviations (1.4826 × median absolute deviation,
 * Iglewicz and Hoaglin's cut): a rule that flags few on a clean set and does not move with outliers.
 */
export function outlierCut(scores: Float32Array): number {
  const median = (v: number[]) => {
    const s = [...v].sort((a, b) => a - b);
    return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const values = Array.from(scores);
  const m = median(values);
  const mad = median(values.map((v) => Math.abs(v - m)));
  return m + 3.5 * 1.4826 * mad;
}
