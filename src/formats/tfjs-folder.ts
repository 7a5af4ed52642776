import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '../tf.ts';
import { ModelFileError } from '../errors.ts';
import { withInputSize } from './topology.ts';

interface WeightsGroup {
  paths: string[];
  weights: tf.io.WeightsManifestEntry[];
}

export interface TfjsFolder {
  artifacts: tf.io.ModelArtifacts;
  /** sha256 of the weight shards in manifest order: names the weights, not the folder. */
  checksum: string;
}

/**
 * Reads a tfjs layers-model folder (`model.json` + shards) from disk. Weight paths must stay
 * inside the folder: a manifest is data, and `../` in it must not reach other files.
 */
export async function readTfjsFolder(dirOrJson: string): Promise<TfjsFolder> {
  const jsonPath = dirOrJson.endsWith('.json') ? dirOrJson : path.join(dirOrJson, 'model.json');
  const dir = path.dirname(jsonPath);
  let json: { modelTopology?: unknown; weightsManifest?: WeightsGroup[]; format?: string };
  try {
    json = JSON.parse(await readFile(jsonPath, 'utf8'));
  } catch (err) {
    const what = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : 'is not valid JSON';
    throw new ModelFileError(`${jsonPath} ${what}: expected a tfjs layers model (model.json + weight shards)`, { cause: err });
  }
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new ModelFileError(`${jsonPath} is not a tfjs layers model: it needs "modelTopology" and "weightsManifest"`);
  }
  const hash = createHash('sha256');
  const buffers: Buffer[] = [];
  const weightSpecs: tf.io.WeightsManifestEntry[] = [];
  for (const group of json.weightsManifest) {
    for (const rel of group.paths) {
      const file = path.resolve(dir, rel);
      if (path.relative(dir, file).startsWith('..') || path.isAbsolute(rel)) {
        throw new ModelFileError(`${jsonPath}: weight path "${rel}" points outside its folder; refusing to read it`);
      }
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (err) {
        throw new ModelFileError(`${file} is missing: the weights listed in ${jsonPath} must sit beside it`, { cause: err });
      }
      hash.update(bytes);
      buffers.push(bytes);
    }
    weightSpecs.push(...group.weights);
  }
  const joined = Buffer.concat(buffers);
  const expected = expectedByteLength(weightSpecs);
  if (joined.byteLength !== expected) {
    throw new ModelFileError(
      `${jsonPath}: weight shards hold ${joined.byteLength} bytes but the manifest needs ${expected}; the files are truncated or mismatched`,
    );
  }
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer;
  return {
    artifacts: { modelTopology: json.modelTopology as tf.io.ModelArtifacts['modelTopology'], weightSpecs, weightData, format: json.format },
    checksum: hash.digest('hex'),
  };
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

function expectedByteLength(specs: tf.io.WeightsManifestEntry[]): number {
  let total = 0;
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const dtype = spec.quantization?.dtype ?? spec.dtype;
    total += size * (BYTES[dtype] ?? 4);
  }
  return total;
}

/** Loads a tfjs layers model from a folder on disk (tf.loadLayersModel with a file handler). */
export async function loadTfjsFolder(dirOrJson: string, opts: { inputSize?: readonly [number, number] } = {}): Promise<{ model: tf.LayersModel; checksum: string }> {
  const { artifacts, checksum } = await readTfjsFolder(dirOrJson);
  if (opts.inputSize) artifacts.modelTopology = withInputSize(artifacts.modelTopology, opts.inputSize) as tf.io.ModelArtifacts['modelTopology'];
  // A resized model may have lost its top: the top's weights are then left unread.
  const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts), { strict: !opts.inputSize });
  return { model, checksum };
}
