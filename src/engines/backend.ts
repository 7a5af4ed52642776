import * as tf from '../tf.ts';
import { UsageError } from '../errors.ts';

/**
 * The tfjs backend, chosen at run time: tfjs-node-gpu ▸ tfjs-node ▸ wasm ▸ cpu. The native
 * packages are optional (their install downloads libtensorflow), so they are imported only
 * if present.
 */
export { BACKENDS, type BackendChoice } from './types.ts';
import type { BackendChoice } from './types.ts';

const NATIVE: Record<'node-gpu' | 'node', string> = {
  'node-gpu': '@tensorflow/tfjs-node-gpu',
  node: '@tensorflow/tfjs-node',
};

let chosen: Promise<string> | undefined;
let chosenFor: BackendChoice | undefined;

async function tryNative(kind: 'node-gpu' | 'node'): Promise<boolean> {
  try {
    await import(NATIVE[kind]);
    return tf.findBackend('tensorflow') !== undefined && (await tf.setBackend('tensorflow'));
  } catch {
    return false;
  }
}

async function tryWasm(): Promise<boolean> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    return await tf.setBackend('wasm');
  } catch {
    return false;
  }
}

async function pick(choice: BackendChoice): Promise<string> {
  // Production mode skips debug checks, and tfjs's own console advert for tfjs-node: the library never prints.
  tf.enableProdMode();
  const order: BackendChoice[] = choice === 'auto' ? ['node-gpu', 'node', 'wasm', 'cpu'] : [choice];
  for (const kind of order) {
    const ok = kind === 'node-gpu' || kind === 'node' ? await tryNative(kind) : kind === 'wasm' ? await tryWasm() : await tf.setBackend('cpu');
    if (ok) {
      await tf.ready();
      return kind;
    }
  }
  throw new UsageError(`--backend ${choice} is not available here: ${choice.startsWith('node') ? `install ${NATIVE[choice as 'node']} (it downloads libtensorflow)` : 'use --backend auto'}`);
}

/** Sets up the tfjs backend once per process; returns which one runs (`node-gpu`, `node`, `wasm`, `cpu`). */
export function initBackend(choice: BackendChoice = 'auto'): Promise<string> {
  if (!chosen || chosenFor !== choice) {
    chosenFor = choice;
    chosen = pick(choice);
  }
  return chosen;
}
