import * as ort from 'onnxruntime-node';
import { FinetuneError } from '../errors.ts';
import { AdamW } from '../fine-tune/adamw.ts';
import { INPUT_NAME, OUTPUT_NAME, type OnnxGraph } from './onnx-export.ts';
import { LABELS_NAME, LOGITS_NAME, LOSS_NAME, buildTrainingModel, gradName, type HeadLayer, type Param, type TrainingModel } from './onnx-train-graph.ts';
import { cpuSessionOptions } from './onnx-session-options.ts';
import { createRng, type Rng } from '../data/random.ts';

export interface OnnxTrainerOptions {
  /** Graph constants to train, grouped by layer, earliest layer first. */
  layers: string[][];
  head: HeadLayer[];
  threads?: number;
  weightDecay?: number;
  /** Dropout rate after the head's hidden layers while training (as the Keras head's Dropout). */
  dropout?: number;
  /** Seeds the dropout masks. */
  seed?: number;
}

export interface StepResult {
  loss: number;
}

/**
 * Whole-network training on onnxruntime: one session runs forward + backward (the graph from
 * onnx-train-graph.ts), another the forward alone for evaluation; the weights live here in JS
 * and are fed to both each run, AdamW updating them in place between steps.
 */
export class OnnxTrainer {
  private readonly optimizer: AdamW;
  private closed = false;
  private readonly rng: Rng;

  private constructor(
    private readonly graph: OnnxGraph,
    private readonly model: TrainingModel,
    private readonly train: ort.InferenceSession,
    private readonly evaluate: ort.InferenceSession,
    /** Layer group of each param (the head's layers come last). */
    readonly groupOf: number[],
    readonly groups: number,
    weightDecay: number,
    private readonly headRelu: boolean[],
    private readonly dropout: number,
    seed: number,
  ) {
    this.rng = createRng(seed);
    this.optimizer = new AdamW(
      model.params.map((p) => p.data.length),
      { weightDecay },
    );
  }

  static async create(graph: OnnxGraph, opts: OnnxTrainerOptions): Promise<OnnxTrainer> {
    const head = opts.head.map((l) => ({ kernel: Float32Array.from(l.kernel), bias: Float32Array.from(l.bias), relu: l.relu }));
    const dropout = opts.dropout ?? 0;
    if (!(dropout >= 0 && dropout < 1)) throw new FinetuneError(`onnx trainer: dropout ${dropout} must be at least 0 and below 1`);
    const model = buildTrainingModel(graph, { trainable: opts.layers.flat(), head, dropout: dropout > 0 });
    const groupOf: number[] = [];
    opts.layers.forEach((names, i) => names.forEach(() => groupOf.push(i)));
    for (let i = 0; i < head.length * 2; i++) groupOf.push(opts.layers.length);
    const options = cpuSessionOptions(opts.threads);
    const train = await ort.InferenceSession.create(model.trainBytes, options);
    const evaluate = await ort.InferenceSession.create(model.evalBytes, options).catch(async (err: unknown) => {
      await train.release();
      throw err;
    });
    return new OnnxTrainer(graph, model, train, evaluate, groupOf, opts.layers.length + 1, opts.weightDecay ?? 0.01, head.map((l) => l.relu), dropout, opts.seed ?? 0);
  }

  get params(): readonly Param[] {
    return this.model.params;
  }

  get inputSize(): [number, number] {
    return [this.graph.inputDims[1], this.graph.inputDims[2]];
  }

  private feeds(images: Float32Array, count: number): Record<string, ort.Tensor> {
    if (this.closed) throw new FinetuneError('the onnx trainer was disposed');
    const [, h, w, c] = this.graph.inputDims;
    if (images.length !== count * h * w * c) throw new FinetuneError(`onnx trainer: expected ${count} images of ${h}×${w}×${c} floats, got ${images.length} floats`);
    const feeds: Record<string, ort.Tensor> = { [INPUT_NAME]: new ort.Tensor('float32', images, [count, h, w, c]) };
    for (const p of this.model.params) feeds[p.name] = new ort.Tensor('float32', p.data, p.dims);
    return feeds;
  }

  /** One forward + backward + AdamW step on a batch; `rates[g]` is layer group g's learning rate. */
  async step(images: Float32Array, labels: ArrayLike<number>, count: number, rates: number[]): Promise<StepResult> {
    const classes = this.classes;
    const oneHot = new Float32Array(count * classes);
    for (let i = 0; i < count; i++) oneHot[i * classes + labels[i]] = 1;
    const feeds = this.feeds(images, count);
    feeds[LABELS_NAME] = new ort.Tensor('float32', oneHot, [count, classes]);
    const keep = 1 - this.dropout;
    for (const m of this.model.masks) {
      const mask = new Float32Array(count * m.units);
      for (let j = 0; j < mask.length; j++) mask[j] = this.rng() < keep ? 1 / keep : 0;
      feeds[m.name] = new ort.Tensor('float32', mask, [count, m.units]);
    }
    const results = await this.train.run(feeds);
    try {
      const loss = (results[LOSS_NAME].data as Float32Array)[0];
      if (!Number.isFinite(loss)) throw new FinetuneError(`fine-tuning diverged (loss ${loss}); lower --fine-tune-lr`);
      const params = this.model.params;
      this.optimizer.step(
        params.map((p) => p.data),
        params.map((p) => results[gradName(p.name)].data as Float32Array),
        this.groupOf.map((g) => rates[g]),
      );
      return { loss };
    } finally {
      for (const t of Object.values(results)) t.dispose();
    }
  }

  get classes(): number {
    return this.model.params[this.model.params.length - 1].dims[0];
  }

  /** Logits [count, classes] with the current weights. */
  async logits(images: Float32Array, count: number): Promise<Float32Array> {
    const results = await this.evaluate.run(this.feeds(images, count));
    try {
      return Float32Array.from(results[LOGITS_NAME].data as Float32Array);
    } finally {
      for (const t of Object.values(results)) t.dispose();
    }
  }

  /** A copy of every weight (to keep the best epoch's). */
  snapshot(): Float32Array[] {
    return this.model.params.map((p) => Float32Array.from(p.data));
  }

  restore(weights: Float32Array[]): void {
    this.model.params.forEach((p, i) => p.data.set(weights[i]));
  }

  /** The backbone (images → features) as an ONNX model carrying the trained weights. */
  backboneBytes(): Uint8Array {
    const [, h, w, c] = this.graph.inputDims;
    return this.graph.g.encodeGraph([{ name: INPUT_NAME, dims: [-1, h, w, c] }], [{ name: OUTPUT_NAME, dims: [-1, this.graph.featureSize] }], 'backbone', this.model.backboneNodes);
  }

  /** The trained head layers, Keras layout. */
  headLayers(): HeadLayer[] {
    const params = this.model.params;
    const count = this.headRelu.length;
    const first = params.length - 2 * count;
    return Array.from({ length: count }, (_, i) => ({
      kernel: Float32Array.from(params[first + 2 * i].data),
      bias: Float32Array.from(params[first + 2 * i + 1].data),
      relu: this.headRelu[i],
    }));
  }

  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.train.release();
    await this.evaluate.release();
  }
}
