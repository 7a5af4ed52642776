import onnxProto from 'onnx-proto';
import type * as tf from '../tf.ts';
import { exportToOnnx, INPUT_NAME, OUTPUT_NAME } from '../engines/onnx-export.ts';
import { UnsupportedLayerError } from '../engines/types.ts';
import { UsageError } from '../errors.ts';
import { PIXELS, PROBABILITIES } from './pixel-model.ts';

const { onnx } = onnxProto;

/**
 * The pixel model (export/pixel-model.ts) as one ONNX graph, translated by the same exporter the
 * onnx engine runs backbones with, its input named `pixels` and output `probabilities`, and
 * `metadata` (class names, preprocessing) in metadata_props for tools that read a model alone.
 */
export function pixelModelToOnnx(model: tf.LayersModel, metadata: Record<string, string>): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = exportToOnnx(model, { layer: PROBABILITIES, pooling: 'avg' }).bytes;
  } catch (err) {
    if (err instanceof UnsupportedLayerError) throw new UsageError(`--format onnx: ${err.message}; use --format tfjs`, { cause: err });
    throw err;
  }
  const proto = onnx.ModelProto.decode(bytes);
  const graph = proto.graph!;
  // The layer named `probabilities` already gave a value that name: it steps aside for the graph's output.
  const rename = (name: string) => (name === INPUT_NAME ? PIXELS : name === OUTPUT_NAME ? PROBABILITIES : name === PIXELS || name === PROBABILITIES ? `${name}/inner` : name);
  for (const init of graph.initializer ?? []) init.name = rename(init.name ?? '');
  for (const node of graph.node ?? []) {
    node.input = (node.input ?? []).map(rename);
    node.output = (node.output ?? []).map(rename);
  }
  for (const value of [...(graph.input ?? []), ...(graph.output ?? [])]) value.name = rename(value.name ?? '');
  graph.name = 'finetune';
  proto.docString = 'pixels: float32 [N, H, W, 3], RGB 0-255, already resized as preprocess.json says; probabilities: [N, classes], calibrated, classes in the order of labels.json';
  proto.metadataProps = Object.entries(metadata).map(([key, value]) => ({ key, value }));
  return onnx.ModelProto.encode(proto).finish();
}
