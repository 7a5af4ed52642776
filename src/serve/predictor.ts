import { decodeImage } from '../data/image.ts';
import { preprocessInto } from '../data/preprocess.ts';
import { headProbabilities, openModelFeatures, withTemperature, type FinetuneModel, type PredictOptions } from '../pipeline/predict.ts';
import type { BackbonePart } from '../features/source.ts';

export interface PredictorOptions extends Pick<PredictOptions, 'engine' | 'backend' | 'threads' | 'device' | 'download' | 'weights' | 'backbone' | 'onProgress'> {
  /** Refuse images that declare more pixels than this (default: the reader's own limit). */
  maxPixels?: number;
}

/**
 * One image, decoded for every backbone of the model: views[v][p] is view v (the image, then
 * its mirror with tta) at part p's input size, RGB HWC bytes.
 */
export interface PredictorInput {
  views: Uint8Array[][];
}

/**
 * The model opened once and kept open: bytes are decoded apart from inference (sharp runs on
 * its own threads, the backbone in the engine's), so a caller can decode many requests while
 * one batch runs, then hand the engine whole batches. Answers what `predict` answers.
 */
export interface Predictor {
  readonly model: FinetuneModel;
  readonly classes: string[];
  /** Throws ImageReadError (reason in `.reason`) for bytes that are not a usable image. */
  decode(bytes: Buffer, opts?: { tta?: boolean; name?: string }): Promise<PredictorInput>;
  /** inputs.length × classes probabilities, the bundle's temperature applied, views averaged. */
  run(inputs: PredictorInput[]): Promise<Float32Array>;
  /** One batch of a blank image, so that the engine's first-run costs are paid before requests come. */
  warmUp(): Promise<void>;
  close(): Promise<void>;
}

export async function createPredictor(model: FinetuneModel, opts: PredictorOptions = {}): Promise<Predictor> {
  // No feature cache: a server's images are new each time, and hashing them would cost time.
  const source = await openModelFeatures(model, { ...opts, cacheDir: false });
  const parts: BackbonePart[] = source.parts;
  const k = model.classes.length;
  const temperature = model.manifest.temperature || 1;
  let closed = false;

  async function decodeView(bytes: Buffer, name: string, flip: boolean): Promise<Uint8Array[]> {
    // Parts with the same size and resize share one decode.
    const decoded = new Map<string, Promise<Uint8Array>>();
    return Promise.all(
      parts.map((part) => {
        const size = part.extractor.inputSize;
        const key = `${size[0]}x${size[1]}:${part.resize}`;
        if (!decoded.has(key)) decoded.set(key, decodeImage(name, bytes, { size, resize: part.resize, flip, maxPixels: opts.maxPixels }).then((d) => d.rgb));
        return decoded.get(key)!;
      }),
    );
  }

  const predictor: Predictor = {
    model,
    classes: model.classes,
    async decode(bytes, { tta = false, name = 'image' } = {}) {
      const views = [await decodeView(bytes, name, false)];
      if (tta) views.push(await decodeView(bytes, name, true));
      return { views };
    },
    async run(inputs) {
      if (closed) throw new Error('predictor closed');
      const rows = inputs.flatMap((input) => input.views);
      const n = rows.length;
      const features = new Float32Array(n * source.featureSize);
      let offset = 0;
      for (const [p, part] of parts.entries()) {
        const [h, w] = part.extractor.inputSize;
        const perImage = h * w * 3;
        const batch = new Float32Array(n * perImage);
        rows.forEach((views, r) => preprocessInto(views[p], part.backbone.preprocess, batch, r * perImage));
        const out = await part.extractor.run(batch, n);
        const dim = part.extractor.featureSize;
        for (let r = 0; r < n; r++) features.set(out.subarray(r * dim, (r + 1) * dim), r * source.featureSize + offset);
        offset += dim;
      }
      const probabilities = withTemperature(headProbabilities(model, features, n, source.featureSize), k, temperature);
      // Each input's views averaged, as `predict --tta` averages the image and its mirror.
      const answer = new Float32Array(inputs.length * k);
      let row = 0;
      inputs.forEach((input, i) => {
        for (let v = 0; v < input.views.length; v++, row++) {
          for (let c = 0; c < k; c++) answer[i * k + c] += probabilities[row * k + c] / input.views.length;
        }
      });
      return answer;
    },
    async warmUp() {
      await predictor.run([{ views: [parts.map((part) => new Uint8Array(part.extractor.inputSize[0] * part.extractor.inputSize[1] * 3).fill(128))] }]);
    },
    async close() {
      if (closed) return;
      closed = true;
      await source.close();
    },
  };
  return predictor;
}

