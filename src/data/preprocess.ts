/**
 * Pixel preprocessing modes of the backbones (Keras `imagenet_utils.preprocess_input`):
 * caffe: RGB→BGR minus the ImageNet BGR mean, no scaling (VGG16, ResNet50);
 * tf: x/127.5 − 1 (MobileNet, Inception); torch: x/255 then ImageNet mean/std; unit: x/255.
 */
export const PREPROCESS_MODES = ['caffe', 'tf', 'torch', 'unit'] as const;
export type Preprocess = (typeof PREPROCESS_MODES)[number];

const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68];
const TORCH_MEAN = [0.485, 0.456, 0.406];
const TORCH_STD = [0.229, 0.224, 0.225];

/** Writes the preprocessed HWC RGB image into `out` starting at `offset` (NHWC batch buffer). */
export function preprocessInto(rgb: Uint8Array, mode: Preprocess, out: Float32Array, offset = 0): void {
  const n = rgb.length;
  switch (mode) {
    case 'caffe':
      for (let i = 0; i < n; i += 3) {
        out[offset + i] = rgb[i + 2] - CAFFE_MEAN_BGR[0];
        out[offset + i + 1] = rgb[i + 1] - CAFFE_MEAN_BGR[1];
        out[offset + i + 2] = rgb[i] - CAFFE_MEAN_BGR[2];
      }
      return;
    case 'tf':
      for (let i = 0; i < n; i++) out[offset + i] = rgb[i] / 127.5 - 1;
      return;
    case 'torch':
      for (let i = 0; i < n; i += 3) {
        for (let c = 0; c < 3; c++) out[offset + i + c] = (rgb[i + c] / 255 - TORCH_MEAN[c]) / TORCH_STD[c];
      }
      return;
    case 'unit':
      for (let i = 0; i < n; i++) out[offset + i] = rgb[i] / 255;
      return;
  }
}

export function preprocess(rgb: Uint8Array, mode: Preprocess): Float32Array {
  const out = new Float32Array(rgb.length);
  preprocessInto(rgb, mode, out);
  return out;
}

/**
 * The same preprocessing as one per-pixel affine map out = x·kernel + bias on RGB 0–255
 * (kernel[in][out]: caffe's RGB→BGR is a permutation): the form an exported model carries it in,
 * as a 1×1 convolution, so every runtime that runs convolutions runs the preprocessing too.
 */
export function preprocessAffine(mode: Preprocess): { kernel: number[][]; bias: number[] } {
  const diagonal = (scale: number[]) => scale.map((s, i) => scale.map((_, o) => (i === o ? s : 0)));
  switch (mode) {
    case 'caffe':
      return { kernel: [[0, 0, 1], [0, 1, 0], [1, 0, 0]], bias: CAFFE_MEAN_BGR.map((m) => -m) };
    case 'tf':
      return { kernel: diagonal([1 / 127.5, 1 / 127.5, 1 / 127.5]), bias: [-1, -1, -1] };
    case 'torch':
      return { kernel: diagonal(TORCH_STD.map((s) => 1 / (255 * s))), bias: TORCH_MEAN.map((m, c) => -m / TORCH_STD[c]) };
    case 'unit':
      return { kernel: diagonal([1 / 255, 1 / 255, 1 / 255]), bias: [0, 0, 0] };
  }
}
