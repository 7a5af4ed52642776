import os from 'node:os';
import type * as ort from 'onnxruntime-node';

/**
 * Session options of the training graphs run in this thread (head and whole-network): the CPU
 * provider, every core on one op at a time, and errors only, since the library never prints
 * (onnxruntime warns on stderr otherwise).
 */
export function cpuSessionOptions(threads?: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
    logSeverityLevel: 3,
  };
}
