import type * as tf from '@tensorflow/tfjs';
import { buildOnnxGraph } from '../src/engines/onnx-export.ts';
import { OnnxTrainer } from '../src/engines/onnx-trainer.ts';
import { trainableLayers } from '../src/engines/onnx-train-graph.ts';
import { createRng } from '../src/data/random.ts';
import { bestOf, log, round } from './timing.ts';

export interface FineTuneBenchRow {
  model: string;
  batch: number;
  size: number;
  /** Forward FLOPs of one image (convolutions and dense layers); a training step counts 3×. */
  forwardFlopsPerImage: number;
  imagesPerSecond: number;
  gflops: number;
  peakRssMb: number;
  runs: number[];
}

/** 2·multiply-adds of every Conv2D, DepthwiseConv2D and Dense layer, from the layer shapes. */
export function forwardFlops(model: tf.LayersModel): number {
  let total = 0;
  for (const layer of model.layers) {
    const kind = layer.getClassName();
    const out = layer.outputShape as number[];
    const inShape = (layer.input as tf.SymbolicTensor).shape as number[];
    if (kind === 'Conv2D' || kind === 'DepthwiseConv2D') {
      const [kh, kw] = layer.getConfig().kernelSize as number[];
      const [, h, w, cout] = out;
      const perOutput = kind === 'Conv2D' ? inShape[3] * kh * kw : kh * kw;
      total += 2 * h * w * cout * perOutput;
    } else if (kind === 'Dense') total += 2 * inShape[inShape.length - 1] * out[out.length - 1];
  }
  return total;
}

function glorot(rows: number, cols: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const limit = Math.sqrt(6 / (rows + cols));
  return Float32Array.from({ length: rows * cols }, () => (2 * rng() - 1) * limit);
}

/**
 * One whole-network fine-tuning step (forward, backward through backbone and head, AdamW) as
 * ../shared/peers/torch_finetune.py does it: random weights, head Dense(256, relu) → Dense(2),
 * global average pooling, every backbone weight trained.
 */
export async function run(opts: { model: 'vgg16' | 'mobilenet_v2'; batch: number; size?: number; runs: number; threads?: number }): Promise<FineTuneBenchRow> {
  const size = opts.size ?? 224;
  let model: tf.LayersModel;
  let layer: string;
  if (opts.model === 'vgg16') {
    const { vgg16 } = await import('../src/backbones/vgg16.ts');
    model = vgg16({ inputSize: [size, size] });
    layer = 'block5_pool';
  } else {
    const { mobilenetV2 } = await import('../src/backbones/mobilenet-v2.ts');
    model = mobilenetV2({ inputSize: [size, size] });
    layer = 'out_relu';
  }
  const flops = forwardFlops(model);
  const graph = buildOnnxGraph(model, { layer, pooling: 'avg' });
  const layers = trainableLayers(graph).map((l) => l.constants);
  const head = [
    { kernel: glorot(graph.featureSize, 256, 1), bias: new Float32Array(256), relu: true },
    { kernel: glorot(256, 2, 2), bias: new Float32Array(2), relu: false },
  ];
  const trainer = await OnnxTrainer.create(graph, { layers, head, threads: opts.threads });
  model.dispose();
  const rng = createRng(3);
  const images = Float32Array.from({ length: opts.batch * size * size * 3 }, () => 2 * rng() - 1);
  const labels = Array.from({ length: opts.batch }, (_, i) => i % 2);
  const rates = Array.from({ length: trainer.groups }, () => 1e-5);
  const timed = await bestOf(() => trainer.step(images, labels, opts.batch, rates), { warmup: 1, runs: opts.runs });
  await trainer.dispose();
  const imagesPerSecond = opts.batch / timed.best;
  const row: FineTuneBenchRow = {
    model: opts.model,
    batch: opts.batch,
    size,
    forwardFlopsPerImage: flops,
    imagesPerSecond: round(imagesPerSecond),
    gflops: round((3 * flops * imagesPerSecond) / 1e9, 1),
    peakRssMb: round(process.resourceUsage().maxRSS / 1024, 0),
    runs: timed.runs.map((s) => round(s)),
  };
  log(`${opts.model} fine-tuning step, batch ${opts.batch} at ${size}²: ${row.imagesPerSecond} images/s, ${row.gflops} GFLOP/s (3× forward), peak RSS ${row.peakRssMb} MB`);
  return row;
}
