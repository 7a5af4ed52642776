import { createHash } from 'node:crypto';
import type { Preprocess } from '../data/preprocess.ts';
import { readOnnxNetwork, type OnnxNetwork } from '../engines/onnx-file.ts';
import { defaultFeatureValue, nearestNames, nodeValues } from '../engines/onnx-surgery.ts';
import { ModelFileError, UsageError } from '../errors.ts';
import { weightsChecksum } from './checksum.ts';

/** Keys finetune writes into metadata_props when it exports a backbone (and reads back). */
export const METADATA = { preprocess: 'finetune.preprocess', inputSize: 'finetune.input_size', layer: 'finetune.layer', source: 'finetune.source' } as const;

export interface OnnxBackbone {
  /** Absolute path of the .onnx file. */
  id: string;
  source: string;
  network: OnnxNetwork;
  /** The graph value (a node output) whose activations are the features. */
  layer: string;
  preprocess: Preprocess;
  inputSize: [number, number];
  /** sha256 of the file (and of its external-data files, when it has them). */
  checksum: string;
}

export function isOnnxPath(spec: string): boolean {
  return /\.onnx$/i.test(spec);
}

export interface OnnxBackboneOptions {
  layer?: string;
  output?: boolean;
  inputSize?: readonly [number, number];
  preprocess?: Preprocess;
}

function parseSize(text: string | undefined): [number, number] | undefined {
  const m = /^(\d+)x(\d+)$/.exec(text ?? '');
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/**
 * PyTorch-family exports (NCHW: torchvision, timm, Hugging Face) normalise with the
 * ImageNet mean/std; TensorFlow exports (NHWC) mostly take x/127.5 − 1.
 */
function guessPreprocess(network: OnnxNetwork): Preprocess {
  const recorded = network.metadata[METADATA.preprocess];
  if (recorded === 'caffe' || recorded === 'tf' || recorded === 'torch' || recorded === 'unit') return recorded;
  return network.input.layout === 'NCHW' ? 'torch' : 'tf';
}

export async function loadOnnxBackbone(file: string, opts: OnnxBackboneOptions = {}): Promise<OnnxBackbone> {
  const network = await readOnnxNetwork(file);
  const { input } = network;
  const declared: [number, number] | undefined = input.height && input.width ? [input.height, input.width] : parseSize(network.metadata[METADATA.inputSize]);
  const inputSize = opts.inputSize ? ([opts.inputSize[0], opts.inputSize[1]] as [number, number]) : declared;
  if (!inputSize) throw new UsageError(`--backbone ${file}: its input ${input.name} leaves the image size open; give --input-size (e.g. 224)`);
  const outputs = (network.model.graph!.output ?? []).map((o) => o.name!);
  const values = nodeValues(network.model).map((v) => v.name);
  const exported = network.metadata[METADATA.layer];
  const layer = opts.output ? outputs[0] : (opts.layer ?? (exported && values.includes(exported) ? exported : defaultFeatureValue(network.model)));
  if (!values.includes(layer)) {
    throw new UsageError(`--layer ${layer}: ${file} has no value of that name (nearest: ${nearestNames(values, layer).join(', ')}; \`finetune models layers ${file}\` lists all)`);
  }
  return { id: file, source: file, network, layer, preprocess: opts.preprocess ?? guessPreprocess(network), inputSize, checksum: await checksumOf(network) };
}

async function checksumOf(network: OnnxNetwork): Promise<string> {
  const own = await weightsChecksum(network.file);
  if (network.dataFiles.length === 0) return own;
  const hash = createHash('sha256').update(own);
  for (const f of network.dataFiles) {
    hash.update(
      await weightsChecksum(f).catch((err: Error) => {
        throw new ModelFileError(`${network.file}: its weights file ${f} cannot be read (${err.message})`, { cause: err });
      }),
    );
  }
  return hash.digest('hex');
}
