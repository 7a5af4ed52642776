/**
 * AdamW (Loshchilov & Hutter: decoupled weight decay) over Float32Arrays, in place. In JS
 * rather than as an ONNX update graph: one pass over the weights costs ≈ 10 flops each,
 * well under 1% of a step's forward+backward, and the weights stay where the feeds read them.
 */
export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  weightDecay?: number;
}

export class AdamW {
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];
  private t = 0;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;
  private readonly weightDecay: number;

  constructor(sizes: number[], opts: AdamWOptions = {}) {
    this.m = sizes.map((n) => new Float32Array(n));
    this.v = sizes.map((n) => new Float32Array(n));
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.epsilon = opts.epsilon ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  /** One update of every weight; `rates[i]` is weight i's learning rate for this step. */
  step(weights: Float32Array[], grads: Float32Array[], rates: number[]): void {
    this.t++;
    const { beta1: b1, beta2: b2, epsilon: eps, weightDecay: wd } = this;
    const c1 = 1 / (1 - b1 ** this.t);
    const c2 = 1 / (1 - b2 ** this.t);
    for (let i = 0; i < weights.length; i++) {
      const w = weights[i];
      const g = grads[i];
      const m = this.m[i];
      const v = this.v[i];
      const lr = rates[i];
      const decay = 1 - lr * wd;
      for (let j = 0; j < w.length; j++) {
        const gj = g[j];
        const mj = (m[j] = b1 * m[j] + (1 - b1) * gj);
        const vj = (v[j] = b2 * v[j] + (1 - b2) * gj * gj);
        w[j] = w[j] * decay - (lr * mj * c1) / (Math.sqrt(vj * c2) + eps);
      }
    }
  }
}
