import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import type onnxProto from 'onnx-proto';
import { ModelFileError } from '../errors.ts';
import { checkDevice, extractorFromGraph } from './onnx.ts';
import {
  FEATURE_INPUT,
  FEATURE_OUTPUT,
  declaredShapes,
  decodeModel,
  externalDataFiles,
  featureGraph,
  imageInput,
  inlineExternalData,
  probeGraph,
  type ImageInput,
  type ValueShape,
} from './onnx-surgery.ts';
import type { Device, FeatureExtractor, Pooling } from './types.ts';

/** An ONNX image model read from disk, its external weights inlined. */
export interface OnnxNetwork {
  file: string;
  model: onnxProto.onnx.ModelProto;
  input: ImageInput;
  /** Files holding external initializers (they count in the weights checksum). */
  dataFiles: string[];
  /** metadata_props of the file (finetune's own export records preprocessing and size there). */
  metadata: Record<string, string>;
}

export async function readOnnxNetwork(file: string): Promise<OnnxNetwork> {
  const bytes = await readFile(file).catch((err: NodeJS.ErrnoException) => {
    throw new ModelFileError(`${file} cannot be read (${err.code ?? err.message})`, { cause: err });
  });
  let model: onnxProto.onnx.ModelProto;
  try {
    model = decodeModel(bytes);
  } catch (err) {
    throw new ModelFileError(`${file} is not an ONNX model (${(err as Error).message}); give a .onnx file as written by torch.onnx.export, tf2onnx or optimum`, { cause: err });
  }
  const dir = path.dirname(file);
  const dataFiles = externalDataFiles(model).map((f) => path.join(dir, f));
  try {
    inlineExternalData(model, dir);
  } catch (err) {
    throw new ModelFileError(`${file}: ${(err as Error).message}`, { cause: err });
  }
  const input = imageInput(model);
  if (typeof input === 'string') throw new ModelFileError(`${file} has no image input finetune can feed: ${input}`);
  const metadata = Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? '']));
  return { file, model, input, dataFiles, metadata };
}

const ORT_TYPES: Record<string, number> = { float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11 };

/**
 * The shapes of `values` at `inputSize`: as the file states them when it was exported at
 * that size, else measured by running the cut graph once on a blank image.
 */
export async function valueShapes(network: OnnxNetwork, values: readonly string[], inputSize: readonly [number, number]): Promise<Map<string, ValueShape>> {
  const { input } = network;
  const shapes = new Map<string, ValueShape>();
  if (input.height === inputSize[0] && input.width === inputSize[1]) {
    const declared = declaredShapes(network.model);
    for (const v of values) {
      const s = declared.get(v);
      if (s && s.dims.slice(1).every((d) => d != null)) shapes.set(v, s);
    }
  }
  const missing = values.filter((v) => !shapes.has(v));
  if (missing.length === 0) return shapes;
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(probeGraph(network.model, input, inputSize, missing), { graphOptimizationLevel: 'basic' });
  } catch (err) {
    throw new ModelFileError(`${network.file}: onnxruntime-node cannot run it: ${(err as Error).message}`, { cause: err });
  }
  const [h, w] = inputSize;
  const batch = input.batch ?? 1;
  const blank = new ort.Tensor('float32', new Float32Array(batch * h * w * 3), [batch, h, w, 3]);
  try {
    const results = await session.run({ [FEATURE_INPUT]: blank });
    for (const v of missing) {
      const t = results[v];
      shapes.set(v, { elemType: ORT_TYPES[t.type] ?? 0, dims: [null, ...t.dims.slice(1).map(Number)] });
      t.dispose();
    }
  } catch (err) {
    throw new ModelFileError(`${network.file}: onnxruntime-node fails running it at ${h}×${w}: ${(err as Error).message}`, { cause: err });
  } finally {
    blank.dispose();
    await session.release();
  }
  return shapes;
}

export interface OnnxFileExtractorOptions {
  layer: string;
  pooling: Pooling;
  inputSize: readonly [number, number];
  threads?: number;
  device?: Device;
}

/** `network` cut at `layer`, fed by NHWC float32 images (preprocessed), ending in pooled features. */
export interface OnnxFileFeatureGraph {
  bytes: Uint8Array;
  featureSize: number;
  inputName: string;
  outputName: string;
  /** The batch size the file fixes (exporters often write 1), else undefined. */
  fixedBatch?: number;
}

/** The graph the onnx engine runs for `network` (and `finetune export` builds into its model). */
export async function onnxFileFeatureGraph(network: OnnxNetwork, opts: Pick<OnnxFileExtractorOptions, 'layer' | 'pooling' | 'inputSize'>): Promise<OnnxFileFeatureGraph> {
  const shape = (await valueShapes(network, [opts.layer], opts.inputSize)).get(opts.layer)!;
  let graph: { bytes: Uint8Array; featureSize: number };
  try {
    graph = featureGraph(network.model, { input: network.input, inputSize: opts.inputSize, value: opts.layer, shape, pooling: opts.pooling });
  } catch (err) {
    throw new ModelFileError(`${network.file}: --layer ${opts.layer}: ${(err as Error).message}`, { cause: err });
  }
  return { ...graph, inputName: FEATURE_INPUT, outputName: FEATURE_OUTPUT, fixedBatch: network.input.batch ?? undefined };
}

/** Features of `network` cut at `opts.layer` and pooled, on the onnx engine's worker. */
export async function createOnnxFileExtractor(network: OnnxNetwork, opts: OnnxFileExtractorOptions): Promise<FeatureExtractor> {
  checkDevice(opts);
  const graph = await onnxFileFeatureGraph(network, opts);
  return extractorFromGraph(
    graph.bytes,
    {
      featureSize: graph.featureSize,
      inputSize: opts.inputSize,
      inputName: graph.inputName,
      outputName: graph.outputName,
      fixedBatch: graph.fixedBatch,
      label: network.file,
    },
    opts,
  );
}
