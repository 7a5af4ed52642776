/**
 * tfjs as finetune uses it: core, layers and the CPU backend. The `@tensorflow/tfjs` bundle
 * also loads the converter, data and WebGL packages, which doubles start-up time (≈ 550 ms
 * against ≈ 280 ms here) for nothing a command-line run needs.
 */
import '@tensorflow/tfjs-backend-cpu';

export * from '@tensorflow/tfjs-core';
export * from '@tensorflow/tfjs-layers';
