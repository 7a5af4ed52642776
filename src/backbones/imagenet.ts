import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { expandInputs, inInputOrder } from '../data/inputs.ts';
import { UsageError } from '../errors.ts';
import { reasonOf } from '../fs/reasons.ts';
import { kerasModelsDir, modelsDir } from '../paths.ts';
import type { CacheOptions } from '../features/store.ts';
import type { OnProgress } from '../progress.ts';
import { openFeatureSource, type EngineSettings } from '../features/source.ts';

export interface ImagenetClass {
  index: number;
  name: string;
  probability: number;
}

export type ImagenetPrediction = { path: string; top: ImagenetClass[] } | { path: string; error: string };

export interface ImagenetOptions extends EngineSettings, CacheOptions {
  backbone?: string;
  weights?: string;
  top?: number;
  /** JSON with the 1000 class names: Keras's imagenet_class_index.json or an array of names. */
  classNames?: string;
  onProgress?: OnProgress;
  signal?: AbortSignal;
}

/** Keras's {"0": ["n01440764", "tench"], …} or a plain array of names (index = class). */
function parseClassNames(json: unknown): string[] | undefined {
  if (Array.isArray(json) && json.length > 0) return json.map(String);
  if (json && typeof json === 'object') {
    const entries = json as Record<string, [string, string] | string>;
    const count = Math.max(-1, ...Object.keys(entries).map(Number).filter(Number.isInteger)) + 1;
    if (count > 0) return Array.from({ length: count }, (_, i) => {
      const entry = entries[String(i)];
      return Array.isArray(entry) ? entry[1] : (entry ?? `class ${i}`);
    });
  }
  return undefined;
}

async function readJson(file: string): Promise<unknown> {
  return JSON.parse(await readFile(file, 'utf8'));
}

/** Class names from --class-names, $FINETUNE_HOME/models or ~/.keras/models; numbers only when none is found. */
export async function imagenetClassNames(explicit?: string): Promise<string[] | undefined> {
  if (explicit) {
    const json = await readJson(explicit).catch((err: unknown) => {
      const reason = err instanceof SyntaxError ? `is not JSON (${err.message})` : `cannot be read (${reasonOf(err)})`;
      throw new UsageError(`--class-names ${explicit} ${reason}: give Keras's imagenet_class_index.json or a JSON array of names`, { cause: err });
    });
    const names = parseClassNames(json);
    if (!names) throw new UsageError(`--class-names ${explicit} holds no class names: give Keras's imagenet_class_index.json or a JSON array of names`);
    return names;
  }
  const candidates = [path.join(modelsDir(), 'imagenet_class_index.json'), path.join(kerasModelsDir(), 'imagenet_class_index.json')];
  for (const file of candidates) {
    const names = await readJson(file).then(parseClassNames, () => undefined);
    if (names) return names;
  }
  return undefined;
}

/**
 * Networks trained outside the standard class order (Darknet) ship a `*-to-imagenet-index.json`
 * beside their weights, whose `std` array maps output position → standard ImageNet index.
 */
async function outputOrder(folder: string): Promise<number[] | undefined> {
  const files = await readdir(folder).catch(() => [] as string[]);
  const mapFile = files.find((f) => f.endsWith('-to-imagenet-index.json'));
  if (!mapFile) return undefined;
  const map = (await readJson(path.join(folder, mapFile))) as { std?: number[] };
  return Array.isArray(map.std) ? map.std : undefined;
}

/** The backbone's own top-k ImageNet classes for each image: the sanity check users run first. */
export async function imagenetTop(inputs: string[], opts: ImagenetOptions = {}): Promise<ImagenetPrediction[]> {
  const spec = opts.backbone ?? 'vgg16';
  // Read first: a wrong --class-names must fail before the backbone loads and the images run.
  const names = await imagenetClassNames(opts.classNames);
  const opened = await openFeatureSource(spec, { weights: opts.weights, output: true, pooling: 'avg' }, opts, opts.onProgress);
  try {
    const { paths, entries } = await expandInputs(inputs);
    const result = await opened.extract(paths, { onProgress: opts.onProgress, signal: opts.signal });
    const source = opened.backbone.source;
    const order = await outputOrder(/\.(json|h5|hdf5|keras|onnx)$/i.test(source) ? path.dirname(source) : source);
    const k = opts.top ?? 5;
    const reasons = new Map(result.skipped.map((s) => [s.path, s.reason]));
    const out: ImagenetPrediction[] = paths.map((p, i) => {
      if (!result.ok[i]) return { path: p, error: reasons.get(p) ?? 'unreadable image' };
      const row = asProbabilities(Array.from(result.features.subarray(i * result.dim, (i + 1) * result.dim)));
      const ranked = row.map((probability, position) => ({ position, probability })).sort((a, b) => b.probability - a.probability).slice(0, k);
      return {
        path: p,
        top: ranked.map(({ position, probability }) => {
          const index = order?.[position] ?? position;
          return { index, name: names?.[index] ?? `class ${index}`, probability };
        }),
      };
    });
    return inInputOrder(entries, out, (s) => ({ path: s.path, error: s.reason }));
  } finally {
    await opened.close();
  }
}

/** Some networks end on logits (Darknet's last layer is the pooled 1×1 convolution): softmax those. */
function asProbabilities(row: number[]): number[] {
  const sum = row.reduce((a, b) => a + b, 0);
  if (row.every((v) => v >= 0) && Math.abs(sum - 1) < 1e-3) return row;
  const max = Math.max(...row);
  const exp = row.map((v) => Math.exp(v - max));
  const total = exp.reduce((a, b) => a + b, 0);
  return exp.map((v) => v / total);
}
