import { copyFile, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '../tf.ts';
import { writeLayersModel } from '../bundle/save.ts';
import { UsageError } from '../errors.ts';
import type { Backbone } from '../backbones/resolve.ts';
import { openModelFeatures, type FinetuneModel, type PredictOptions } from '../pipeline/predict.ts';
import { packageVersion } from '../package.ts';
import { demoModelScript, demoPage, DEMO_RUNTIME } from './demo-page.ts';
import onnxProto from 'onnx-proto';
import { isOnnxPath } from '../backbones/onnx-file.ts';
import { onnxFileFeatureGraph } from '../engines/onnx-file.ts';
import { exportToOnnx, INPUT_NAME, OUTPUT_NAME } from '../engines/onnx-export.ts';
import { UnsupportedLayerError } from '../engines/types.ts';
import type { BackbonePart } from '../features/source.ts';
import { composeOnnxModel, type OnnxFeaturePart } from './onnx-compose.ts';
import { pixelModelToOnnx } from './onnx-model.ts';
import { buildPixelModel, PIXELS, PROBABILITIES } from './pixel-model.ts';
import { receiverReadme } from './receiver-readme.ts';
import { EXPORT_FORMATS, type ExportedPreprocessing, type ExportFormat } from './types.ts';

export { EXPORT_FORMATS, type ExportedPreprocessing, type ExportFormat } from './types.ts';

const { onnx } = onnxProto;

export interface ExportOptions extends Pick<PredictOptions, 'weights' | 'backbone' | 'download' | 'onProgress'> {
  format?: ExportFormat;
  /** Also write index.html: classify photos in a browser, offline (tfjs runtime copied in). */
  withDemo?: boolean;
}

export interface ExportResult {
  dir: string;
  format: ExportFormat;
  /** Files written, relative to dir, with their sizes in bytes. */
  files: { name: string; bytes: number }[];
  inputSize: [number, number];
  classes: string[];
}

/**
 * Writes `model` as one self-contained network from resized RGB pixels to calibrated
 * probabilities, with labels.json, preprocess.json and a README for whoever receives the folder.
 * The backbones come from the loader predict uses (same checksum checks), so what is exported is
 * what predict runs. The folder appears whole or not at all.
 */
export async function exportModel(model: FinetuneModel, out: string, opts: ExportOptions = {}): Promise<ExportResult> {
  const format = opts.format ?? 'onnx';
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format ${format}: use one of ${EXPORT_FORMATS.join(', ')}`);
  const records = model.manifest.backbones;
  // A fine-tuned backbone.onnx and an ONNX-file backbone have no layers for tfjs to load.
  const graphOnly = records.find((b) => b.onnx || isOnnxPath(b.id));
  if (graphOnly && format === 'tfjs') {
    const what = graphOnly.onnx ? `its fine-tuned backbone (${graphOnly.onnx.file})` : `its backbone ${graphOnly.id}`;
    throw new UsageError(`--format tfjs: ${model.dir}: ${what} is an ONNX graph, not a tfjs network, so there is no tfjs model to write; use --format onnx`);
  }
  if (graphOnly && opts.withDemo) {
    throw new UsageError(`--with-demo: ${model.dir}: its backbone is an ONNX graph and the demo page runs tfjs; export without --with-demo (the ONNX model runs in onnxruntime-web)`);
  }
  const tmp = await claimOutput(out);
  const progress = opts.onProgress;
  try {
    // ONNX-file parts only run on the onnx engine; tfjs parts are rebuilt from their layers either way.
    const engine = records.some((b) => isOnnxPath(b.id) && !b.onnx) ? 'onnx' : 'tfjs';
    const source = await openModelFeatures(model, { weights: opts.weights, backbone: opts.backbone, download: opts.download, engine, cacheDir: false, onProgress: progress });
    let pixelModel: tf.LayersModel | undefined;
    let composed: ReturnType<typeof composeOnnxModel> | undefined;
    let batch: number | null = null;
    let inputSize: [number, number];
    const temperature = model.manifest.temperature || 1;
    try {
      const [first] = source.parts;
      inputSize = [first.backbone.inputSize[0], first.backbone.inputSize[1]];
      const odd = source.parts.find((p) => p.backbone.inputSize.join('x') !== inputSize.join('x') || p.resize !== first.resize);
      if (odd) {
        throw new UsageError(
          `${model.dir}: its backbones take different inputs (${source.parts.map((p) => `${p.backbone.inputSize.join('×')} ${p.resize}`).join(', ')}); an exported model has one pixels input, so export works for fused backbones of the same input size and resize`,
        );
      }
      progress?.({ status: 'initiate', task: 'export', message: `building one ${format} model: pixels ${inputSize.join('×')} → ${model.classes.length} probabilities` });
      if (graphOnly) {
        const parts = await Promise.all(source.parts.map((p, i) => onnxPart(model, p, i)));
        composed = composeOnnxModel(parts, model.head, { inputSize, temperature });
        batch = composed.batch;
      } else {
        pixelModel = buildPixelModel(
          source.parts.map((p, i) => ({ model: (p.backbone as Backbone).model, layer: p.backbone.layer, preprocess: p.backbone.preprocess, pooling: records[i].pooling })),
          model.head,
          { inputSize, temperature },
        );
      }
    } finally {
      await source.close();
    }
    const resize = records[0].resize;
    const preprocessing = describePreprocessing(model, inputSize, resize, batch);
    try {
      const metadata = { classes: JSON.stringify(model.classes), preprocess: JSON.stringify(preprocessing), producer: `finetune ${packageVersion()}` };
      if (composed) {
        composed.model.metadataProps = Object.entries(metadata).map(([key, value]) => ({ key, value }));
        await writeFile(path.join(tmp, 'model.onnx'), onnx.ModelProto.encode(composed.model).finish());
      } else if (format === 'onnx') {
        await writeFile(path.join(tmp, 'model.onnx'), pixelModelToOnnx(pixelModel!, metadata));
      } else {
        await writeLayersModel(tmp, pixelModel!);
      }
      if (opts.withDemo && pixelModel) {
        await writeFile(path.join(tmp, 'demo-model.js'), demoModelScript(await inMemoryArtifacts(pixelModel)));
        await copyFile(tfjsBrowserBundle(), path.join(tmp, DEMO_RUNTIME));
        await writeFile(path.join(tmp, 'index.html'), demoPage({ title: path.basename(path.resolve(model.dir)), preprocessing }));
      }
    } finally {
      pixelModel?.dispose();
    }
    await writeFile(path.join(tmp, 'labels.json'), JSON.stringify(model.classes, null, 2) + '\n');
    await writeFile(path.join(tmp, 'preprocess.json'), JSON.stringify(preprocessing, null, 2) + '\n');
    await writeFile(path.join(tmp, 'README.md'), receiverReadme({ format, preprocessing, withDemo: !!opts.withDemo, opset: composed?.opset }));
    const files = await listFiles(tmp);
    await rename(tmp, out);
    progress?.({ status: 'done', task: 'export', message: `wrote ${out}` });
    return { dir: out, format, files, inputSize, classes: model.classes };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** A backbone as the ONNX graph predict runs it: the bundle's fine-tuned network, the cut ONNX file, or a tfjs network translated. */
async function onnxPart(model: FinetuneModel, part: BackbonePart, i: number): Promise<OnnxFeaturePart> {
  const record = model.manifest.backbones[i];
  const common = { preprocess: part.backbone.preprocess, label: record.onnx ? record.onnx.file : path.basename(record.id) };
  const trained = model.backboneOnnx?.[i];
  if (record.onnx && trained) return { ...common, bytes: trained, inputName: INPUT_NAME, outputName: OUTPUT_NAME, featureSize: record.featureSize };
  if ('network' in part.backbone) {
    const graph = await onnxFileFeatureGraph(part.backbone.network, { layer: part.backbone.layer, pooling: part.pooling, inputSize: part.backbone.inputSize });
    return { ...common, ...graph };
  }
  if (!('model' in part.backbone)) throw new Error(`backbone ${record.id}: neither a network nor an ONNX graph`);
  try {
    const graph = exportToOnnx(part.backbone.model, { layer: part.backbone.layer, pooling: part.pooling });
    return { ...common, bytes: graph.bytes, inputName: INPUT_NAME, outputName: OUTPUT_NAME, featureSize: graph.featureSize };
  } catch (err) {
    if (err instanceof UnsupportedLayerError) throw new UsageError(`--format onnx: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Refuses an existing OUT before any work and makes the temporary sibling the files go into. */
async function claimOutput(out: string): Promise<string> {
  if (await stat(out).catch(() => null)) throw new UsageError(`${out} already exists: choose a new folder for the export (or remove it)`);
  const parent = path.dirname(path.resolve(out));
  const info = await stat(parent).catch(() => null);
  if (!info?.isDirectory()) throw new UsageError(`cannot export to ${out}: the folder ${parent} does not exist; create it first`);
  const tmp = path.join(parent, `.${path.basename(out)}.export-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  try {
    await mkdir(tmp);
  } catch (err) {
    throw new UsageError(`cannot write into ${parent} (${(err as NodeJS.ErrnoException).code ?? err}): choose a writable place for the export`, { cause: err });
  }
  return tmp;
}

function describePreprocessing(model: FinetuneModel, [height, width]: [number, number], resize: 'squash' | 'crop', batch: number | null): ExportedPreprocessing {
  const temperature = model.manifest.temperature || 1;
  return {
    input: { name: PIXELS, dtype: 'float32', shape: [batch, height, width, 3], layout: 'NHWC', channels: 'RGB', range: [0, 255] },
    resize: { width, height, mode: resize, fit: resize === 'crop' ? 'cover' : 'fill', position: 'centre', kernel: 'lanczos3', by: 'sharp (libvips), as `finetune predict` does' },
    before: ['EXIF orientation applied', 'alpha flattened onto white', 'converted to sRGB', 'pixel values kept as 0-255 floats (no scaling: the model does its own)'],
    insideModel: model.manifest.backbones.map((b) => ({ backbone: path.isAbsolute(b.id) ? path.basename(b.id) : b.id, layer: b.layer, preprocess: b.preprocess, pooling: b.pooling })),
    output: { name: PROBABILITIES, shape: [null, model.classes.length], classes: model.classes, temperature, calibrated: temperature !== 1 },
  };
}

async function inMemoryArtifacts(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return saved!;
}

/** tfjs's browser bundle, from the installed @tensorflow/tfjs (the version finetune itself uses). */
function tfjsBrowserBundle(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('@tensorflow/tfjs/package.json')), 'dist', 'tf.min.js');
}

async function listFiles(dir: string): Promise<{ name: string; bytes: number }[]> {
  const names = (await readdir(dir)).sort();
  return Promise.all(names.map(async (name) => ({ name, bytes: (await stat(path.join(dir, name))).size })));
}
