import { rename, rm, stat, writeFile } from 'node:fs/promises';
import onnxProto from 'onnx-proto';
import type { Preprocess } from '../data/preprocess.ts';
import { valueShapes } from '../engines/onnx-file.ts';
import { cutGraph } from '../engines/onnx-surgery.ts';
import { UnsupportedLayerError } from '../engines/types.ts';
import { ModelFileError, UsageError } from '../errors.ts';
import { METADATA } from './onnx-file.ts';
import { loadAnyBackbone } from './resolve.ts';

const { onnx } = onnxProto;

export interface OnnxExportOptions {
  weights?: string;
  /** Export up to this layer (default: the backbone's feature layer). */
  layer?: string;
  inputSize?: readonly [number, number];
  preprocess?: Preprocess;
}

export interface OnnxExportResult {
  file: string;
  layer: string;
  /** The output's shape, batch first (null). */
  outputShape: (number | null)[];
  inputSize: [number, number];
  preprocess: Preprocess;
  bytes: number;
}

/**
 * Any backbone finetune loads (registry with weights, tfjs folder, Keras .h5, ONNX) as one
 * ONNX file computing its feature layer, unpooled: tfjs kinds take NHWC float32 images and
 * give the layer in Keras order; an ONNX file keeps its own input and is cut at the layer.
 * Preprocessing, input size and layer go in metadata_props, so `--backbone OUT.onnx`
 * picks the same settings and gives the same features.
 */
export async function exportBackboneOnnx(spec: string, out: string, opts: OnnxExportOptions = {}): Promise<OnnxExportResult> {
  if (!/\.onnx$/i.test(out)) throw new UsageError(`${out}: name the ONNX file to write with a .onnx ending`);
  if (await stat(out).catch(() => null)) throw new UsageError(`${out} already exists: choose a new file name for the export`);
  const backbone = await loadAnyBackbone(spec, { weights: opts.weights, layer: opts.layer, inputSize: opts.inputSize, preprocess: opts.preprocess, download: false });
  let model: onnxProto.onnx.ModelProto;
  try {
    if ('model' in backbone) {
      const { exportToOnnx } = await import('../engines/onnx-export.ts');
      const exported = exportToOnnx(backbone.model, { layer: backbone.layer, pooling: 'avg', unpooled: true });
      model = onnx.ModelProto.decode(exported.bytes);
    } else {
      const shape = (await valueShapes(backbone.network, [backbone.layer], backbone.inputSize)).get(backbone.layer)!;
      model = cutGraph(backbone.network.model, [backbone.layer]);
      model.graph!.output = [{ name: backbone.layer, type: { tensorType: { elemType: shape.elemType, shape: { dim: shape.dims.map((d) => (d == null ? { dimParam: 'N' } : { dimValue: d })) } } } }];
    }
  } catch (err) {
    if (err instanceof UnsupportedLayerError) throw new ModelFileError(`${spec}: cannot export to ONNX: ${err.message}`, { cause: err });
    throw err;
  } finally {
    if ('model' in backbone) backbone.model.dispose();
  }
  const output = model.graph!.output![0];
  const outputShape = (output.type?.tensorType?.shape?.dim ?? []).map((d, i) => (i === 0 || d.dimValue == null ? null : Number(d.dimValue)));
  const [h, w] = backbone.inputSize;
  const recorded: Record<string, string> = {
    [METADATA.preprocess]: backbone.preprocess,
    [METADATA.inputSize]: `${h}x${w}`,
    [METADATA.layer]: output.name!,
    [METADATA.source]: `${backbone.id} → ${backbone.layer} (sha256 ${backbone.checksum})`,
  };
  model.metadataProps = [...(model.metadataProps ?? []).filter((p) => !(p.key! in recorded)), ...Object.entries(recorded).map(([key, value]) => ({ key, value }))];
  model.producerName = 'finetune';
  const bytes = onnx.ModelProto.encode(model).finish();
  const tmp = `${out}.export-${process.pid}`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, out);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new ModelFileError(`cannot write ${out}: ${(err as Error).message}`, { cause: err });
  }
  return { file: out, layer: backbone.layer, outputShape, inputSize: [h, w], preprocess: backbone.preprocess, bytes: bytes.byteLength };
}
