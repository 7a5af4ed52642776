import type { Dataset } from '../data/layout.ts';

/** Below this many validation images a fitted temperature is noise: calibration is skipped. */
export const MIN_CALIBRATION_IMAGES = 30;

/**
 * What training will not be able to measure, each as one line, said before training starts: no
 * validation set at all, a class without validation images, calibration skipped for too few.
 * (A fast.ai valid/ folder missing a class is already named by the layout reader.)
 */
export function validationWarnings(dataset: Dataset, validLabels: ArrayLike<number>, opts: { valSplit: number; calibrate: boolean }): string[] {
  const n = validLabels.length;
  if (n === 0) {
    const why = dataset.layout === 'fastai' ? `${dataset.root}'s validation folder has no readable images` : opts.valSplit === 0 ? '--val-split 0' : 'too few images to split off';
    return [`no validation images (${why}): early stopping watches the training loss, and there is no validation accuracy and no calibration`];
  }
  const warnings: string[] = [];
  if (dataset.layout !== 'fastai') {
    const present = new Set(Array.from(validLabels));
    const missing = dataset.classes.filter((_, c) => !present.has(c));
    if (missing.length > 0) {
      const list = missing.map((c) => `"${c}"`).join(', ');
      warnings.push(`no validation images of class ${list} (too few images to hold one back): validation accuracy does not measure ${missing.length > 1 ? 'them' : 'it'}`);
    }
  }
  if (opts.calibrate && n < MIN_CALIBRATION_IMAGES) {
    warnings.push(`calibration skipped: ${n} validation image(s), at least ${MIN_CALIBRATION_IMAGES} needed; probabilities are the head's own`);
  }
  return warnings;
}
