import type { LabelScore } from './label-issues.ts';

/** The audit's own defaults; everything else (backbone, head, engine) is train's. */
export const AUDIT_DEFAULTS = Object.freeze({
  folds: 5,
  /**
   * Epochs of each fold's head (no validation set to stop on): 2 found as many planted label flips
   * as 5 (within a point, README, Audit) in half the time.
   */
  epochs: 2,
  labelScore: 'self-confidence' as LabelScore,
  /**
   * CSLS score (2·cos − r_a − r_b on centred average-pooled features) at or above which two images
   * are near-duplicates: chosen on copies planted in dogscats (README, Audit) for darknet-tiny and
   * mobilenet_v2 alike.
   */
  duplicateThreshold: 0.35,
  /** Outlier score: distance to the k-th nearest image of the nearest class. */
  outlierK: 5,
  /** Nearest images of a class kept per image (report thumbnails). */
  neighbours: 5,
});
