import type { ExportedPreprocessing, ExportFormat } from './types.ts';

/** Node: sharp resizes exactly as finetune does (same library, kernel and fit). */
function nodeResize(p: ExportedPreprocessing): string {
  const { width, height, fit } = p.resize;
  return `const { data } = await sharp(process.argv[2]).rotate().flatten({ background: '#ffffff' }).toColourspace('srgb')
  .resize(${width}, ${height}, { fit: '${fit}' }).raw().toBuffer({ resolveWithObject: true });`;
}

/** Browser: a canvas resize (the browser's kernel, not lanczos3: probabilities differ slightly). */
function canvasPixels(p: ExportedPreprocessing): string {
  const { width, height, mode } = p.resize;
  const draw =
    mode === 'crop'
      ? `const s = Math.max(${width} / img.naturalWidth, ${height} / img.naturalHeight);
cx.drawImage(img, (img.naturalWidth - ${width} / s) / 2, (img.naturalHeight - ${height} / s) / 2, ${width} / s, ${height} / s, 0, 0, ${width}, ${height});`
      : `cx.drawImage(img, 0, 0, ${width}, ${height});`;
  return `const cx = Object.assign(document.createElement('canvas'), { width: ${width}, height: ${height} }).getContext('2d');
${draw}
const rgba = cx.getImageData(0, 0, ${width}, ${height}).data;
const pixels = new Float32Array(${width * height * 3}).map((_, i) => rgba[Math.floor(i / 3) * 4 + (i % 3)]);`;
}

/** The README.md of an exported folder: what is in it, what the input must be, how to run it. */
export function receiverReadme(opts: { format: ExportFormat; preprocessing: ExportedPreprocessing; withDemo: boolean; opset?: number }): string {
  const p = opts.preprocessing;
  const batch = p.input.shape[0] ?? 'N';
  const { width, height } = p.resize;
  const classes = p.output.classes;
  const modelFile = opts.format === 'onnx' ? 'model.onnx' : 'model.json';
  const other = opts.format === 'onnx' ? 'tfjs' : 'onnx';
  const inside = p.insideModel.map((b) => `${b.backbone} up to ${b.layer} (${b.preprocess} preprocessing, ${b.pooling} pooling)`).join(' and ');
  return `# An image classifier exported by finetune

Classes (\`labels.json\`, in output order): ${classes.join(', ')}.

| file | what |
| --- | --- |
| \`${modelFile}\` | the whole classifier${opts.format === 'tfjs' ? ' (tfjs layers model; weights in `weights.bin`)' : ` (ONNX, opset ${opts.opset ?? 17}; class names and preprocessing also in its metadata_props)`} |
| \`labels.json\` | class names, in the order of the output |
| \`preprocess.json\` | input size, resize mode and kernel, what the pixels must be |
${opts.withDemo ? '| `index.html` | a demo: open it in a browser, pick or drop photos (runs offline: `tf.min.js` and `demo-model.js` are beside it) |\n' : ''}
**Input** \`${p.input.name}\`: float32 [${batch}, ${height}, ${width}, 3], RGB, values 0–255 (not scaled), after
resizing each image to ${width}×${height} (${p.resize.mode === 'crop' ? 'scale to cover, then cut the centre' : 'stretched to the size, aspect ratio not kept'}; finetune uses
sharp with the ${p.resize.kernel} kernel, after applying EXIF orientation and flattening alpha onto white).

**Output** \`${p.output.name}\`: float32 [${batch}, ${classes.length}], probabilities that sum to 1${p.output.calibrated ? `, calibrated (softmax temperature ${p.output.temperature.toFixed(3)} built in)` : ''}.

Inside the model: ${inside}, then the trained head and the softmax. Nothing else is needed
to run it. With sharp, as below, the probabilities equal \`finetune predict\`'s within 1e-4
(about 1e-7 in finetune's tests). Another resize (a browser canvas, PIL) moves them: by up to
0.16 measured with a canvas for a darknet-tiny model on real photos.

## onnxruntime-node${opts.format === 'onnx' ? '' : ` (export with \`--format onnx\` for model.onnx)`}

\`\`\`js
// npm install onnxruntime-node sharp; node classify.mjs photo.jpg
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { readFileSync } from 'node:fs';
const labels = JSON.parse(readFileSync(new URL('./labels.json', import.meta.url), 'utf8'));
const session = await ort.InferenceSession.create(new URL('./model.onnx', import.meta.url).pathname);
${nodeResize(p)}
const { probabilities } = await session.run({ pixels: new ort.Tensor('float32', Float32Array.from(data), [1, ${height}, ${width}, 3]) });
const best = probabilities.data.indexOf(Math.max(...probabilities.data));
console.log(labels[best], probabilities.data[best]);
\`\`\`

## onnxruntime-web${opts.format === 'onnx' ? '' : ` (export with \`--format onnx\` for model.onnx)`}

Serve this folder over http (browsers do not fetch files from file://), with \`ort.min.js\`
from the onnxruntime-web package beside the page.

\`\`\`html
<img id="photo" src="photo.jpg">
<script src="ort.min.js"></script>
<script type="module">
const labels = await (await fetch('labels.json')).json();
const session = await ort.InferenceSession.create('model.onnx');
const img = document.getElementById('photo'); await img.decode();
${canvasPixels(p)}
const { probabilities } = await session.run({ pixels: new ort.Tensor('float32', pixels, [1, ${height}, ${width}, 3]) });
const best = probabilities.data.indexOf(Math.max(...probabilities.data));
document.body.append(\`\${labels[best]} \${probabilities.data[best].toFixed(3)}\`);
</script>
\`\`\`

## @tensorflow/tfjs${opts.format === 'tfjs' ? '' : ` (export with \`--format ${other}\` for model.json)`}

\`\`\`html
<img id="photo" src="photo.jpg">
<script src="tf.min.js"></script>
<script type="module">
const labels = await (await fetch('labels.json')).json();
const model = await tf.loadLayersModel('model.json');
const img = document.getElementById('photo'); await img.decode();
${canvasPixels(p)}
const probabilities = await model.predict(tf.tensor4d(pixels, [1, ${height}, ${width}, 3])).data();
const best = probabilities.indexOf(Math.max(...probabilities));
document.body.append(\`\${labels[best]} \${probabilities[best].toFixed(3)}\`);
</script>
\`\`\`

In Node, \`tf.loadLayersModel('file://…/model.json')\` needs @tensorflow/tfjs-node; without it,
read model.json and weights.bin yourself and pass them to \`tf.io.fromMemory\`.
`;
}
