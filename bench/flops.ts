import type * as tf from '@tensorflow/tfjs';

/**
 * Multiply-adds ×2 of every Conv2D from the layer shapes: 2·Hout·Wout·Cin·Cout·kh·kw (the
 * bias, ReLU and pooling are left out; they are < 0.1% of VGG16's work).
 */
export function convFlops(model: tf.LayersModel): number {
  let total = 0;
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'Conv2D') continue;
    const [, h, w, cout] = layer.outputShape as number[];
    const cin = (layer.input as tf.SymbolicTensor).shape[3] as number;
    const [kh, kw] = layer.getConfig().kernelSize as number[];
    total += 2 * h * w * cin * cout * kh * kw;
  }
  return total;
}

/** VGG16's conv base at size², counted on the library's own definition. */
export async function run(opts: { size?: number }): Promise<{ flopsPerImage: number }> {
  const { vgg16 } = await import('../src/backbones/vgg16.ts');
  const size = opts.size ?? 224;
  const model = vgg16({ inputSize: [size, size] });
  try {
    return { flopsPerImage: convFlops(model) };
  } finally {
    model.dispose();
  }
}
