import { UsageError } from '../errors.ts';
import { MOBILENET_PARAMETERS, MOBILENET_TOP_LAYERS, mobilenet, mobilenetWeights, type MobileNetAlpha } from './mobilenet.ts';
import { MOBILENET_V2_TOP_LAYERS, MOBILENET_V2_WEIGHTS, mobilenetV2 } from './mobilenet-v2.ts';
import { RESNET50_TOP_LAYERS, RESNET50_WEIGHTS, resnet50 } from './resnet50.ts';
import { VGG16_TOP_LAYERS, VGG16_WEIGHTS, vgg16 } from './vgg16.ts';
import { VGG19_TOP_LAYERS, VGG19_WEIGHTS, vgg19 } from './vgg19.ts';
import type { RegistryEntry } from './types.ts';

export type { RegistryEntry, WeightsFile } from './types.ts';

function mobilenetEntry(alpha: MobileNetAlpha, name: string, aliases: readonly string[] = []): RegistryEntry {
  return {
    name,
    description: `MobileNet v1, width ${alpha.toFixed(2)} (Keras applications), ImageNet`,
    aliases,
    inputSize: [224, 224],
    preprocess: 'tf',
    defaultLayer: 'conv_pw_13_relu',
    topLayers: MOBILENET_TOP_LAYERS,
    build: ({ includeTop, inputSize }) => mobilenet({ alpha, includeTop, inputSize }),
    weights: mobilenetWeights(alpha, 224),
    parameters: MOBILENET_PARAMETERS[alpha],
  };
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
    build: ({ includeTop, inputSize }) => vgg16({ includeTop, inputSize }),
    weights: VGG16_WEIGHTS,
    parameters: { notop: 14_714_688, full: 138_357_544 },
  },
  vgg19: {
    name: 'vgg19',
    description: 'VGG19 (Keras applications), ImageNet',
    inputSize: [224, 224],
    preprocess: 'caffe',
    defaultLayer: 'block5_pool',
    topLayers: VGG19_TOP_LAYERS,
    build: ({ includeTop, inputSize }) => vgg19({ includeTop, inputSize }),
    weights: VGG19_WEIGHTS,
    parameters: { notop: 20_024_384, full: 143_667_240 },
  },
  mobilenet: mobilenetEntry(1.0, 'mobilenet', ['mobilenet_1.0']),
  'mobilenet_0.25': mobilenetEntry(0.25, 'mobilenet_0.25'),
  'mobilenet_0.5': mobilenetEntry(0.5, 'mobilenet_0.5', ['mobilenet_0.50']),
  'mobilenet_0.75': mobilenetEntry(0.75, 'mobilenet_0.75'),
  mobilenet_v2: {
    name: 'mobilenet_v2',
    description: 'MobileNetV2, width 1.00 (Keras applications), ImageNet',
    aliases: ['mobilenetv2', 'mobilenet_v2_1.0'],
    inputSize: [224, 224],
    preprocess: 'tf',
    defaultLayer: 'out_relu',
    topLayers: MOBILENET_V2_TOP_LAYERS,
    build: ({ includeTop, inputSize }) => mobilenetV2({ alpha: 1.0, includeTop, inputSize }),
    weights: MOBILENET_V2_WEIGHTS,
    parameters: { notop: 2_257_984, full: 3_538_984 },
  },
  resnet50: {
    name: 'resnet50',
    description: 'ResNet50 v1 (Keras applications), ImageNet',
    inputSize: [224, 224],
    preprocess: 'caffe',
    defaultLayer: 'conv5_block3_out',
    topLayers: RESNET50_TOP_LAYERS,
    build: ({ includeTop, inputSize }) => resnet50({ includeTop, inputSize }),
    weights: RESNET50_WEIGHTS,
    parameters: { notop: 23_587_712, full: 25_636_712 },
  },
} satisfies Record<string, RegistryEntry>);

const BY_NAME: ReadonlyMap<string, RegistryEntry> = new Map(
  Object.values(REGISTRY).flatMap((entry) => [entry.name, ...(entry.aliases ?? [])].map((name) => [name, entry] as const)),
);

export function registryEntry(name: string): RegistryEntry {
  const entry = BY_NAME.get(name.toLowerCase());
  if (!entry) throw new UsageError(`unknown backbone "${name}": use one of ${Object.keys(REGISTRY).join(', ')}, or a path to a tfjs model folder or Keras .h5 file`);
  return entry;
}

/** Registry names and their aliases, case-insensitively. */
export function isRegistryName(spec: string): boolean {
  return BY_NAME.has(spec.toLowerCase());
}
