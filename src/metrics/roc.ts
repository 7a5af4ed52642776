/**
 * Area under the ROC curve as the Mann-Whitney U statistic: the probability that a random
 * positive scores above a random negative, ties counting one half (average ranks).
 * labels: 1 = positive, 0 = negative. NaN when either class is absent (the area is undefined).
 */
export function rocAuc(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  const n = labels.length;
  if (scores.length !== n) throw new RangeError(`rocAuc: ${n} labels but ${scores.length} scores`);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < n; i++) {
    if (labels[i] !== 0 && labels[i] !== 1) throw new RangeError(`rocAuc: label ${labels[i]} of sample ${i} is not 0 or 1`);
    if (Number.isNaN(scores[i])) throw new RangeError(`rocAuc: score of sample ${i} is NaN`);
  }
  order.sort((a, b) => scores[a] - scores[b]);

  let positives = 0;
  let positiveRankSum = 0;
  for (let start = 0; start < n; ) {
    let end = start;
    while (end + 1 < n && scores[order[end + 1]] === scores[order[start]]) end++;
    // Ranks are 1-based; a run of ties shares the mean of its ranks.
    const averageRank = (start + end) / 2 + 1;
    for (let k = start; k <= end; k++) {
      if (labels[order[k]] === 1) {
        positives++;
        positiveRankSum += averageRank;
      }
    }
    start = end + 1;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return Number.NaN;
  const u = positiveRankSum - (positives * (positives + 1)) / 2;
  return u / (positives * negatives);
}
