import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { round } from './timing.ts';

export interface Stage {
  stage: string;
  ms: number;
}

export interface PredictProfile {
  model: string;
  backbone: string;
  /** The stages of one `predict` in the order the CLI runs them; they add up to totalMs. */
  stages: Stage[];
  totalMs: number;
  /** Splits of the backbone stages, measured again afterwards in the same (now warm) process. */
  anatomy: Stage[];
}

/**
 * Where a cold `finetune predict IMG --model M` spends its time: the library steps the CLI
 * takes, each timed from a fresh process (module imports included, as they happen first there).
 */
export async function run(opts: { model: string; image: string }): Promise<PredictProfile> {
  const stages: Stage[] = [{ stage: 'node start + tsx loader (to first line of bench code)', ms: performance.now() }];
  const time = async <T>(stage: string, fn: () => Promise<T> | T): Promise<T> => {
    const t = performance.now();
    const value = await fn();
    stages.push({ stage, ms: performance.now() - t });
    return value;
  };
  await time('import commander (CLI parse)', () => import('commander'));
  await time('import @tensorflow/tfjs', () => import('@tensorflow/tfjs'));
  const lib = await time('import src/index.ts (the CLI loads the library so)', () => import('../src/index.ts'));
  const { initBackend } = await import('../src/engines/backend.ts');
  const backend = await time('initBackend(auto): tfjs-node-gpu ▸ tfjs-node ▸ wasm', () => initBackend('auto'));
  const model = await time('loadModel (bundle: manifest + head)', () => lib.loadModel(opts.model));
  // The profile follows the first backbone (a fused model runs each the same way, one after another).
  const b = model.manifest.backbones[0];
  const { isRegistryName } = await import('../src/backbones/registry.ts');
  if (isRegistryName(b.id) || /\.(h5|hdf5|keras)$/i.test(b.id)) {
    // Split out of loadBackbone below: the HDF5 reader is a WebAssembly module compiled on first use.
    await time('import src/formats/keras-h5.ts + h5wasm.ready', async () => {
      await import('../src/formats/keras-h5.ts');
      const h5wasm = (await import('h5wasm/node')).default;
      await h5wasm.ready;
    });
  }
  const backbone = await time(`loadBackbone(${b.id.split('/').pop()}) (build + weights + checksum)`, () =>
    lib.loadBackbone(b.id, { layer: b.layer, preprocess: b.preprocess, download: false }),
  );
  const ort = await time('import onnxruntime-node', () => import('onnxruntime-node'));
  const { createOnnxExtractor, exportToOnnx } = await import('../src/engines/onnx.ts');
  const extractor = await time('createOnnxExtractor (ONNX export + InferenceSession.create)', () => createOnnxExtractor(backbone.model, { layer: b.layer, pooling: b.pooling }));
  const { extractFeatures } = await import('../src/features/extract.ts');
  const features = await time('extractFeatures (1 image: read, hash, decode, engine)', () =>
    extractFeatures([opts.image], { extractor, preprocess: b.preprocess, resize: b.resize, batchSize: 1 }),
  );
  const { headProbabilities } = await import('../src/pipeline/predict.ts');
  await time('head probabilities (tfjs)', () => headProbabilities(model, features.features, 1, features.dim));

  // Anatomy of the heavy stages, timed again now that modules and files are warm.
  const anatomy: Stage[] = [];
  const again = async (stage: string, fn: () => Promise<unknown> | unknown) => {
    const t = performance.now();
    await fn();
    anatomy.push({ stage, ms: round(performance.now() - t, 1) });
  };
  await again('exportToOnnx alone (warm)', () => exportToOnnx(backbone.model, { layer: b.layer, pooling: b.pooling }));
  const bytes = exportToOnnx(backbone.model, { layer: b.layer, pooling: b.pooling }).bytes;
  await again('InferenceSession.create alone (warm, optimisation "all")', async () => {
    const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all', executionMode: 'sequential', interOpNumThreads: 1 });
    await s.release();
  });
  await again('sha256 of the backbone weights file(s) (warm)', async () => {
    const files = backbone.source.endsWith('.h5') ? [backbone.source] : await weightFilesOf(backbone.source);
    const h = createHash('sha256');
    for (const f of files) h.update(await readFile(f));
    h.digest('hex');
  });
  if (isRegistryName(b.id)) {
    const { registryEntry } = await import('../src/backbones/registry.ts');
    await again(`build ${b.id} layers, no weights (warm)`, () => registryEntry(b.id).build({ includeTop: false }).dispose());
  }
  await again('loadBackbone again (warm)', async () => (await lib.loadBackbone(b.id, { layer: b.layer, preprocess: b.preprocess, download: false })).model.dispose());
  await extractor.dispose();
  const rounded = stages.map((s) => ({ stage: s.stage, ms: round(s.ms, 1) }));
  return {
    model: opts.model,
    backbone: `${b.id} (${backend})`,
    stages: rounded,
    totalMs: round(
      rounded.reduce((a, s) => a + s.ms, 0),
      1,
    ),
    anatomy,
  };
}

async function weightFilesOf(folder: string): Promise<string[]> {
  const path = await import('node:path');
  const dir = folder.endsWith('.json') ? path.dirname(folder) : folder;
  const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  return json.weightsManifest.flatMap((g) => g.paths.map((p) => path.join(dir, p)));
}
