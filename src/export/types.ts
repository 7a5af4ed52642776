/** Shapes the exporter and the files it writes beside the model (README, demo) share. */
export const EXPORT_FORMATS = ['onnx', 'tfjs'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** What the receiver must do to an image before `pixels`: written to preprocess.json and the ONNX metadata. */
export interface ExportedPreprocessing {
  input: { name: string; dtype: 'float32'; /** The batch is open (null) unless the backbone's ONNX graph fixes it. */ shape: [number | null, number, number, 3]; layout: 'NHWC'; channels: 'RGB'; range: [0, 255] };
  resize: { width: number; height: number; mode: 'squash' | 'crop'; fit: 'fill' | 'cover'; position: 'centre'; kernel: 'lanczos3'; by: string };
  before: string[];
  insideModel: { backbone: string; layer: string; preprocess: string; pooling: string }[];
  output: { name: string; shape: [null, number]; classes: string[]; temperature: number; calibrated: boolean };
}
