import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { batchNormAffine } from '../src/engines/onnx-context.ts';
import { INPUT_NAME, OUTPUT_NAME, buildOnnxGraph } from '../src/engines/onnx-export.ts';
import { FEATURES_GRAD_NAME, buildGradientCheckModel, gradName } from '../src/engines/onnx-train-graph.ts';

/** Deterministic uniform noise in [lo, hi). */
export function noise(length: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** Replaces every weight with noise so that biases, BN statistics and slopes all matter. */
export function randomize(model: tf.LayersModel, seed = 1): void {
  for (const layer of model.layers) {
    const values = layer.weights.map((w, i) => {
      const size = w.shape.reduce((a: number, b) => a * (b ?? 1), 1);
      const positive = /variance/.test(w.originalName);
      return tf.tensor(noise(size, seed * 1000 + i, positive ? 0.5 : -0.5, positive ? 1.5 : 0.5), w.shape as number[]);
    });
    if (values.length > 0) layer.setWeights(values);
    tf.dispose(values);
    seed++;
  }
}

export function relativeError(actual: Float32Array | number[], expected: Float32Array | number[]): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/** ONNX conv kernel [o, i, kh, kw] → TF [kh, kw, i, o]; depthwise [c·m, 1, kh, kw] → [kh, kw, c, m] is the same map with i = 1 per group. */
function onnxToTfKernel(k: Float32Array, [o, i, kh, kw]: number[], depthwise: { channels: number; mult: number } | null): Float32Array {
  const out = new Float32Array(k.length);
  for (let a = 0; a < o; a++)
    for (let b = 0; b < i; b++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++) {
          const v = k[((a * i + b) * kh + y) * kw + x];
          if (depthwise) {
            const c = Math.floor(a / depthwise.mult);
            const m = a % depthwise.mult;
            out[((y * kw + x) * depthwise.channels + c) * depthwise.mult + m] = v;
          } else out[((y * kw + x) * i + b) * o + a] = v;
        }
  return out;
}

export interface GradientComparison {
  /** What was compared → max abs diff / max abs value. */
  errors: Map<string, number>;
  features: number;
}

function shortName(name: string): string {
  return name.split('/').pop()!.replace(/:\d+$/, '').replace(/_\d+$/, '');
}

interface Kernel {
  layer: tf.layers.Layer;
  /** The graph constant and the Keras weight it came from. */
  constant: string;
  variable: string;
  bn: tf.layers.Layer | null;
}

/** The kernels (and unfolded biases) of the exported graph, each with its Keras weight. */
export function kernelsOf(model: tf.LayersModel, layerConstants: Map<string, string[]>): Kernel[] {
  const kernels: Kernel[] = [];
  for (const [layerName, names] of layerConstants) {
    const layer = model.getLayer(layerName);
    const className = layer.getClassName();
    const bn = foldedBatchNorm(model, layer);
    for (const constant of names) {
      const short = shortName(constant.slice(layerName.length + 1));
      let variable: string | null = null;
      if (short === 'kernel') variable = className === 'DepthwiseConv2D' ? 'depthwise_kernel' : className === 'SeparableConv2D' ? 'pointwise_kernel' : 'kernel';
      else if (short === 'depthwise_kernel') variable = 'depthwise_kernel';
      else if (short === 'bias' && !bn) variable = 'bias';
      if (variable) kernels.push({ layer, constant, variable, bn });
    }
  }
  return kernels;
}

/** The BN layer a conv's output feeds alone (then the exporter folded it into the conv). */
function foldedBatchNorm(model: tf.LayersModel, layer: tf.layers.Layer): tf.layers.Layer | null {
  const activation = String((layer.getConfig() as { activation?: unknown }).activation ?? 'linear');
  if (activation !== 'linear') return null;
  const readers = model.layers.filter((l) => l.inboundNodes.some((n) => n.inboundLayers.includes(layer)));
  return readers.length === 1 && readers[0].getClassName() === 'BatchNormalization' ? readers[0] : null;
}

/**
 * Gradients of ⟨features, R⟩ for random R, from the ONNX backward graph and from tfjs's own
 * autodiff on the same layers model (the oracle): the images' gradient and every kernel's,
 * mapped to Keras layout (folded BN scale undone).
 */
export async function compareGradients(model: tf.LayersModel, opts: { layer: string; pooling: 'flatten' | 'avg' | 'max' | 'avgmax'; batch: number; seed?: number; weights?: boolean }): Promise<GradientComparison> {
  const graph = buildOnnxGraph(model, { layer: opts.layer, pooling: opts.pooling });
  const [, h, w, c] = graph.inputDims;
  const seed = opts.seed ?? 7;
  const images = noise(opts.batch * h * w * c, seed, -1, 1);
  const seedGrad = noise(opts.batch * graph.featureSize, seed + 1, -1, 1);

  const kernels = opts.weights === false ? [] : kernelsOf(model, graph.layerConstants);
  const { bytes, params } = buildGradientCheckModel(graph, { trainable: kernels.map((k) => k.constant), images: true });
  const session = await ort.InferenceSession.create(bytes);
  const feeds: Record<string, ort.Tensor> = {
    [INPUT_NAME]: new ort.Tensor('float32', images, [opts.batch, h, w, c]),
    [FEATURES_GRAD_NAME]: new ort.Tensor('float32', seedGrad, [opts.batch, graph.featureSize]),
  };
  for (const p of params) feeds[p.name] = new ort.Tensor('float32', p.data, p.dims);
  const results = await session.run(feeds);
  await session.release();

  const errors = new Map<string, number>();
  const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(opts.layer).output as tf.SymbolicTensor });
  const pooled = (out: tf.Tensor): tf.Tensor => {
    if (out.rank !== 4 || opts.pooling === 'flatten') return out.reshape([opts.batch, -1]);
    if (opts.pooling === 'avg') return out.mean([1, 2]);
    if (opts.pooling === 'max') return out.max([1, 2]);
    return tf.concat([out.mean([1, 2]), out.max([1, 2])], 1);
  };
  const r = tf.tensor2d(seedGrad, [opts.batch, graph.featureSize]);
  const x = tf.tensor4d(images, [opts.batch, h, w, c]);
  const objective = (input: tf.Tensor) => tf.sum(tf.mul(pooled(sub.apply(input, { training: false }) as tf.Tensor), r)) as tf.Scalar;
  const dx = tf.grad(objective)(x);
  errors.set('images', relativeError(results[gradName(INPUT_NAME)].data as Float32Array, dx.dataSync() as Float32Array));
  const variables = kernels.map((k) => {
    const v = k.layer.weights.find((wt) => shortName(wt.originalName) === k.variable);
    if (!v) throw new Error(`${k.layer.name} has no weight ${k.variable}`);
    return v.read() as tf.Variable;
  });
  if (variables.length > 0) {
    const { grads } = tf.variableGrads(() => objective(x), variables);
    kernels.forEach((k, i) => {
      const expected = grads[variables[i].name].dataSync() as Float32Array;
      const onnxGrad = results[gradName(k.constant)].data as Float32Array;
      const dims = params.find((p) => p.name === k.constant)!.dims;
      let actual: Float32Array;
      if (k.variable === 'bias' || dims.length === 2) actual = onnxGrad;
      else {
        const shape = variables[i].shape as number[];
        const depthwise = k.variable === 'depthwise_kernel' ? { channels: shape[2], mult: shape[3] } : null;
        actual = onnxToTfKernel(onnxGrad, dims, depthwise);
        if (k.bn) {
          // folded = kernel · s per output channel (TF's last axis), so d/dkernel = d/dfolded · s.
          const { scale } = batchNormAffine(k.bn);
          for (let j = 0; j < actual.length; j++) actual[j] *= scale[j % dims[0]];
        }
      }
      errors.set(`${k.layer.name}/${k.variable}`, relativeError(actual, expected));
    });
    tf.dispose(grads);
  }
  tf.dispose([r, x, dx]);
  for (const t of Object.values(results)) t.dispose();
  return { errors, features: graph.featureSize };
}

/**
 * The second oracle, for what tfjs cannot differentiate (dilated convolutions) or differentiates
 * wrongly (its 'same' average pooling backward divides by the whole window, its forward by the
 * pixels inside): central differences of ⟨features, R⟩ through the exported forward graph.
 * Exact up to rounding when the network is linear in what is perturbed, so tests keep it linear.
 */
export async function finiteDifferenceErrors(model: tf.LayersModel, opts: { layer: string; batch: number; step?: number }): Promise<Map<string, number>> {
  const pooling = 'flatten' as const;
  const graph = buildOnnxGraph(model, { layer: opts.layer, pooling });
  const kernels = kernelsOf(model, graph.layerConstants);
  const [, h, w, c] = graph.inputDims;
  const images = noise(opts.batch * h * w * c, 11, -1, 1);
  const seedGrad = noise(opts.batch * graph.featureSize, 12, -1, 1);
  const constants = kernels.map((k) => graph.g.constants.get(k.constant)!);
  const forward = await ort.InferenceSession.create(
    graph.g.encodeGraph(
      [{ name: INPUT_NAME, dims: [-1, h, w, c] }, ...constants.map((k) => ({ name: k.name, dims: k.dims }))],
      [{ name: OUTPUT_NAME, dims: [-1, graph.featureSize] }],
    ),
  );
  const values = [images, ...constants.map((k) => Float32Array.from(k.data as Float32Array))];
  const dims = [[opts.batch, h, w, c], ...constants.map((k) => k.dims)];
  const names = [INPUT_NAME, ...constants.map((k) => k.name)];
  const objective = async (): Promise<number> => {
    const feeds: Record<string, ort.Tensor> = {};
    names.forEach((n, i) => (feeds[n] = new ort.Tensor('float32', values[i], dims[i])));
    const out = (await forward.run(feeds))[OUTPUT_NAME];
    const f = out.data as Float32Array;
    let sum = 0;
    for (let i = 0; i < f.length; i++) sum += f[i] * seedGrad[i];
    out.dispose();
    return sum;
  };
  const step = opts.step ?? 0.5;
  const numeric = async (v: Float32Array): Promise<Float32Array> => {
    const grad = new Float32Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const keep = v[i];
      v[i] = keep + step;
      const up = await objective();
      v[i] = keep - step;
      const down = await objective();
      v[i] = keep;
      grad[i] = (up - down) / (2 * step);
    }
    return grad;
  };
  const expected: Float32Array[] = [];
  for (const v of values) expected.push(await numeric(v));
  await forward.release();

  const check = buildOnnxGraph(model, { layer: opts.layer, pooling });
  const { bytes, params } = buildGradientCheckModel(check, { trainable: kernels.map((k) => k.constant), images: true });
  const session = await ort.InferenceSession.create(bytes);
  const feeds: Record<string, ort.Tensor> = {
    [INPUT_NAME]: new ort.Tensor('float32', images, [opts.batch, h, w, c]),
    [FEATURES_GRAD_NAME]: new ort.Tensor('float32', seedGrad, [opts.batch, graph.featureSize]),
  };
  for (const p of params) feeds[p.name] = new ort.Tensor('float32', p.data, p.dims);
  const results = await session.run(feeds);
  await session.release();
  const errors = new Map<string, number>();
  names.forEach((n, i) => errors.set(n, relativeError(results[gradName(n)].data as Float32Array, expected[i])));
  for (const t of Object.values(results)) t.dispose();
  return errors;
}
