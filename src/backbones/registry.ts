import type * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.ts';
import type { Preprocess } from '../data/preprocess.ts';
import { VGG16_TOP_LAYERS, VGG16_WEIGHTS, vgg16 } from './vgg16.ts';

export interface WeightsFile {
  /** File name as Keras publishes it (and caches it in ~/.keras/models). */
  file: string;
  url: string;
  md5?: string;
  bytes: number;
}

export interface RegistryEntry {
  name: string;
  description: string;
  inputSize: readonly [number, number];
  preprocess: Preprocess;
  defaultLayer: string;
  /** Layers that exist only in the with-top network (they need the `full` weights). */
  topLayers: readonly string[];
  build(opts: { includeTop: boolean }): tf.LayersModel;
  weights: { notop: WeightsFile; full?: WeightsFile };
  parameters: { notop: number; full?: number };
}

/** Frozen: a name maps to one network; an unknown name lists the known ones. */
export const REGISTRY: Readonly<Record<string, RegistryEntry>> = Object.freeze({
  vgg16: {
    name: 'vgg16',
    description: 'VGG16 (Keras applications), ImageNet',
    inputSize: [224, 224],
    preprocess: 'caffe',
    defaultLayer: 'block5_pool',
    topLayers: VGG16_TOP_LAYERS,
    build: ({ includeTop }) => vgg16({ includeTop }),
    weights: VGG16_WEIGHTS,
    parameters: { notop: 14_714_688, full: 138_357_544 },
  },
});

export function registryEntry(name: string): RegistryEntry {
  const entry = REGISTRY[name.toLowerCase()];
  if (!entry) throw new UsageError(`unknown backbone "${name}": use one of ${Object.keys(REGISTRY).join(', ')}, or a path to a tfjs model folder or Keras .h5 file`);
  return entry;
}

export function isRegistryName(spec: string): boolean {
  return Object.hasOwn(REGISTRY, spec.toLowerCase());
}
