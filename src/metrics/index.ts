export {
  evaluatePredictions,
  confusionMatrix,
  perClassMetrics,
  logLoss,
  argmax,
  PROBABILITY_EPSILON,
  type ClassMetrics,
  type Evaluation,
} from './classification.ts';
export { rocAuc } from './roc.ts';
export {
  reliability,
  applyTemperature,
  fitTemperature,
  logitsFromProbabilities,
  RELIABILITY_BINS,
  TEMPERATURE_RANGE,
  type ReliabilityBin,
} from './calibration.ts';
