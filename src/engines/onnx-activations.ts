import type { GraphBuilder } from './onnx-graph.ts';
import { storedAxis, type LayerContext, type Value } from './onnx-context.ts';

/** tfjs's activation names (`hardSigmoid`, `gelu_new`) and Keras's (`hard_sigmoid`) alike. */
function normalize(name: string): string {
  return name.replace(/_/g, '').toLowerCase();
}

/** Applies a tfjs/Keras activation by name to `v`; an unknown name makes the layer unsupported. */
export function applyActivation(cx: LayerContext, v: Value, activation: unknown): Value {
  const name = normalize(String(activation ?? 'linear'));
  const g = cx.g;
  const base = `${cx.layer.name}/${name}`;
  const unary = (op: string, attrs = {}): Value => ({ name: g.op(op, [v.name], attrs, base), shape: v.shape });
  const rank = v.shape.length;
  switch (name) {
    case 'linear':
      return v;
    case 'relu':
      return unary('Relu');
    case 'relu6':
      return { name: clip(g, v.name, 0, 6, base), shape: v.shape };
    case 'sigmoid':
      return unary('Sigmoid');
    case 'tanh':
      return unary('Tanh');
    case 'softmax':
      return unary('Softmax', { axis: storedAxis(-1, rank) });
    case 'logsoftmax':
      return unary('LogSoftmax', { axis: storedAxis(-1, rank) });
    case 'elu':
      return unary('Elu', { alpha: { float: 1 } });
    case 'selu':
      return unary('Selu');
    case 'hardsigmoid':
      // tfjs: clip(0.2x + 0.5, 0, 1)
      return unary('HardSigmoid', { alpha: { float: 0.2 }, beta: { float: 0.5 } });
    case 'softplus':
      return unary('Softplus');
    case 'softsign':
      return unary('Softsign');
    case 'swish':
    case 'silu':
      return { name: g.op('Mul', [v.name, g.op('Sigmoid', [v.name], {}, base)], {}, base), shape: v.shape };
    case 'mish': {
      const softplus = g.op('Softplus', [v.name], {}, base);
      return { name: g.op('Mul', [v.name, g.op('Tanh', [softplus], {}, base)], {}, base), shape: v.shape };
    }
    case 'gelu': {
      // tfjs: x * 0.5 * (1 + erf(x / sqrt 2))
      const erf = g.op('Erf', [g.op('Mul', [v.name, g.scalar(`${base}/inv_sqrt2`, Math.SQRT1_2)], {}, base)], {}, base);
      const cdf = g.op('Mul', [g.op('Add', [erf, g.scalar(`${base}/one`, 1)], {}, base), g.scalar(`${base}/half`, 0.5)], {}, base);
      return { name: g.op('Mul', [v.name, cdf], {}, base), shape: v.shape };
    }
    default:
      return cx.fail(`activation "${String(activation)}" is not translated`);
  }
}

export function clip(g: GraphBuilder, input: string, min: number, max: number, base: string): string {
  return g.op('Clip', [input, g.scalar(`${base}/min`, min), g.scalar(`${base}/max`, max)], {}, base);
}

/**
 * Keras ReLU: max_value above, identity from `threshold`, slope `negativeSlope` below it.
 * tfjs 4.22 keeps only maxValue (Keras's other two arguments are dropped when a model loads),
 * so the general branch runs only for layers that really carry them.
 */
export function relu(cx: LayerContext, v: Value, maxValue: number | null, negativeSlope: number, threshold: number): Value {
  const g = cx.g;
  const base = cx.layer.name;
  const capped = (x: string) => (maxValue == null ? x : g.op('Min', [x, g.scalar(`${base}/max_value`, maxValue)], {}, base));
  if (threshold === 0 && negativeSlope === 0) {
    return { name: maxValue == null ? g.op('Relu', [v.name], {}, base) : clip(g, v.name, 0, maxValue, base), shape: v.shape };
  }
  if (threshold === 0) {
    return { name: capped(g.op('LeakyRelu', [v.name], { alpha: { float: negativeSlope } }, base)), shape: v.shape };
  }
  const t = g.scalar(`${base}/threshold`, threshold);
  const above = g.op('GreaterOrEqual', [v.name, t], {}, base);
  const below = g.op('Mul', [g.op('Sub', [v.name, t], {}, base), g.scalar(`${base}/negative_slope`, negativeSlope)], {}, base);
  return { name: g.op('Where', [above, capped(v.name), below], {}, base), shape: v.shape };
}
