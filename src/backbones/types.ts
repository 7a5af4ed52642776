import type * as tf from '@tensorflow/tfjs';
import type { Preprocess } from '../data/preprocess.ts';

/** Types the registry and each network's module share (kept apart so neither imports the other). */
export interface WeightsFile {
  /** File name as Keras publishes it (and caches it in ~/.keras/models). */
  file: string;
  url: string;
  /** Keras's published md5 (`get_file(file_hash=…)`); undefined where Keras publishes none (MobileNet, MobileNetV2). */
  md5?: string;
  bytes: number;
}

export interface RegistryEntry {
  name: string;
  description: string;
  /** Other names that select this entry (Keras's spellings). */
  aliases?: readonly string[];
  inputSize: readonly [number, number];
  preprocess: Preprocess;
  defaultLayer: string;
  /** Layers that exist only in the with-top network (they need the `full` weights). */
  topLayers: readonly string[];
  /** inputSize: run the conv base at another size (without the top, which fixes 224×224). */
  build(opts: { includeTop: boolean; inputSize?: readonly [number, number] }): tf.LayersModel;
  weights: { notop: WeightsFile; full?: WeightsFile };
  parameters: { notop: number; full?: number };
}
