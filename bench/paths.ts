import { existsSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..');
/** Read-only data, weights and peers beside the repository; absent on most machines. BENCH_SHARED moves it (e.g. to try the fallbacks). */
export const SHARED = path.resolve(process.env.BENCH_SHARED ?? path.join(ROOT, '..', 'shared'));

export const DARKNET_DIR = path.join(SHARED, 'backbones', 'darknet-tiny');
export const DOGSCATS_DIR = path.join(SHARED, 'data', 'dogscats');
export const TORCH_PEER = path.join(SHARED, 'peers', 'torch_vgg16.py');
export const CLI = path.join(ROOT, 'bin', 'finetune.js');

export function sharedHas(p: string): boolean {
  return existsSync(p);
}
