import os from 'node:os';
import path from 'node:path';

/** Where finetune keeps weights, features and the last-trained pointer: $FINETUNE_HOME or ~/.cache/finetune. */
export function finetuneHome(): string {
  return process.env.FINETUNE_HOME || path.join(os.homedir(), '.cache', 'finetune');
}

export function modelsDir(): string {
  return path.join(finetuneHome(), 'models');
}

/** Keras's own download cache: weights a user already fetched with Keras are found there. */
export function kerasModelsDir(): string {
  return path.join(process.env.KERAS_HOME || path.join(os.homedir(), '.keras'), 'models');
}

export function featureCacheDir(): string {
  return process.env.FINETUNE_CACHE || path.join(finetuneHome(), 'features');
}

/** File holding the path of the model trained last (predict's default --model). */
export function lastModelFile(): string {
  return path.join(finetuneHome(), 'last-model');
}
