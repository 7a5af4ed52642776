import * as tf from '../tf.ts';
import type { ExportedPreprocessing } from './types.ts';

/**
 * The page's resize, as a script of its own so a test can run it in Node beside sharp: libvips's
 * downsizing re-done in JavaScript (resizeAxis), since a canvas resize uses the browser's kernel.
 */
export const RESIZE_SCRIPT = String.raw`/**
 * The resize finetune does (preprocess.json): sharp's lanczos3, rewritten here because a canvas
 * resize uses the browser's own kernel (measured on real photos: up to 0.16 apart in probability
 * for darknet-tiny). Downsizing follows libvips's arithmetic (vips_resize → vips_reducev, then
 * vips_reduceh): lanczos3 masks for 64 sub-pixel positions, weights truncated to 12-bit fixed
 * point, integer sums rounded back to bytes after each axis, edge pixels repeated; a factor of 4
 * or more is first box-averaged by floor(factor / 2), as libvips's gap of 2 does. This gives
 * sharp's bytes exactly for squash downsizing by less than 4, and by 4 to 10 (box factors 2 and
 * 4), checked against sharp 0.35 / libvips 8.18 in test/export-demo-resize.test.ts. Not yet
 * exact: other box factors (libvips rounds their averages otherwise, ±2 levels), upsizing (a
 * photo smaller than the input: libvips interpolates bicubically) and crop.
 */
function lanczos(x) {
  if (x === 0) return 1;
  if (x <= -3 || x >= 3) return 0;
  const p = Math.PI * x;
  return (3 * Math.sin(p) * Math.sin(p / 3)) / (p * p);
}

/** One axis reduced by factor (> 1) to outLength samples, as vips_reducev/vips_reduceh do for 8-bit images. */
function reduce(src, width, height, factor, outLength, vertical) {
  const n = vertical ? height : width;
  const across = vertical ? width : height;
  const points = 2 * Math.round(3 * factor) + 1;
  const masks = [];
  for (let t = 0; t <= 64; t++) {
    const half = t / 64 + points / 2 - 1;
    const c = new Float64Array(points);
    let sum = 0;
    for (let i = 0; i < points; i++) { c[i] = lanczos((i - half) / factor); sum += c[i]; }
    masks.push(Int32Array.from(c, (v) => Math.trunc((v / sum) * 4096)));
  }
  const outWidth = vertical ? width : outLength;
  const out = new Uint8ClampedArray(outWidth * (vertical ? outLength : height) * 3);
  for (let o = 0; o < outLength; o++) {
    const start = (o + 0.5) * factor - 0.5 + 1 - points / 2;
    const first = Math.floor(start);
    const mask = masks[Math.round((start - first) * 64)];
    const taps = new Int32Array(points);
    for (let i = 0; i < points; i++) taps[i] = Math.min(n - 1, Math.max(0, first + i));
    for (let q = 0; q < across; q++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let i = 0; i < points; i++) acc += mask[i] * src[(vertical ? taps[i] * width + q : q * width + taps[i]) * 3 + c];
        out[(vertical ? o * width + q : q * outLength + o) * 3 + c] = (acc + 2048) >> 12;
      }
    }
  }
  return out;
}

/** One axis box-averaged by k (vips_shrinkv/vips_shrinkh with ceil: the last block repeats the edge). */
function boxShrink(src, width, height, k, vertical) {
  const n = vertical ? height : width;
  const across = vertical ? width : height;
  const outLength = Math.ceil(n / k);
  const out = new Uint8ClampedArray((vertical ? width : outLength) * (vertical ? outLength : height) * 3);
  for (let o = 0; o < outLength; o++) {
    for (let q = 0; q < across; q++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let i = 0; i < k; i++) {
          const p = Math.min(n - 1, o * k + i);
          acc += src[(vertical ? p * width + q : q * width + p) * 3 + c];
        }
        out[(vertical ? o * width + q : q * outLength + o) * 3 + c] = Math.floor((acc + Math.floor(k / 2)) / k);
      }
    }
  }
  return out;
}

/** Upsizing one axis (a photo smaller than the input): lanczos3 in floating point, close to but not libvips's interpolator. */
function enlarge(src, width, height, outLength, vertical) {
  const n = vertical ? height : width;
  const outWidth = vertical ? width : outLength;
  const out = new Uint8ClampedArray(outWidth * (vertical ? outLength : height) * 3);
  const scale = n / outLength;
  for (let o = 0; o < outLength; o++) {
    const centre = (o + 0.5) * scale - 0.5;
    const taps = [];
    let sum = 0;
    for (let i = Math.floor(centre - 3); i <= Math.ceil(centre + 3); i++) {
      const w = lanczos(i - centre);
      if (w === 0) continue;
      taps.push([Math.min(n - 1, Math.max(0, i)), w]);
      sum += w;
    }
    const across = vertical ? width : height;
    for (let q = 0; q < across; q++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (const [i, w] of taps) acc += w * src[(vertical ? i * width + q : q * width + i) * 3 + c];
        out[(vertical ? o * width + q : q * outLength + o) * 3 + c] = Math.round(acc / sum);
      }
    }
  }
  return out;
}

/** One axis from n to outLength samples, factor = n / outLength as sharp states it (crop: the one factor of both axes). */
function resizeAxis(img, factor, outLength, vertical) {
  const n = vertical ? img.h : img.w;
  if (outLength === n) return img;
  let { rgb, w, h } = img;
  if (factor < 1) {
    rgb = enlarge(rgb, w, h, outLength, vertical);
  } else {
    const k = Math.max(1, Math.floor(factor / 2));
    if (k > 1) {
      rgb = boxShrink(rgb, w, h, k, vertical);
      if (vertical) h = Math.ceil(h / k); else w = Math.ceil(w / k);
    }
    rgb = reduce(rgb, w, h, factor / k, outLength, vertical);
  }
  return vertical ? { rgb, w, h: outLength } : { rgb, w: outLength, h };
}
`;

/** The tfjs browser bundle, copied beside the page so it runs without a network. */
export const DEMO_RUNTIME = 'tf.min.js';

/** JSON that is safe inside a <script> element (no `</script>`, no `<!--`). */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The model as a script that sets `FINETUNE_MODEL`: a page opened from file:// may load scripts
 * but not fetch() files beside it, so model.json cannot be read there; a script can carry it.
 */
export function demoModelScript(artifacts: tf.io.ModelArtifacts): string {
  const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData ?? new ArrayBuffer(0)));
  const model = { modelTopology: artifacts.modelTopology, weightSpecs: artifacts.weightSpecs, weightData: Buffer.from(weights).toString('base64') };
  return `// The exported model for index.html (tfjs layers format, weights base64).\nwindow.FINETUNE_MODEL = ${scriptJson(model)};\n`;
}

/**
 * index.html: pick or drop photos; each is resized in a canvas as preprocess.json says and run
 * through the model with tfjs's CPU backend (float32 everywhere, so the numbers match Node's).
 * Nothing is fetched: the runtime and the model are scripts in the same folder.
 */
export function demoPage(opts: { title: string; preprocessing: ExportedPreprocessing }): string {
  const { resize, output } = opts.preprocessing;
  const config = { width: resize.width, height: resize.height, mode: resize.mode, classes: output.classes };
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(opts.title)} — finetune demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 46rem; color: #1f2937; }
  #drop { border: 2px dashed #9ca3af; border-radius: 10px; padding: 2rem; text-align: center; }
  #drop.over { border-color: #2563eb; background: #eff6ff; }
  #status { color: #6b7280; margin: .8rem 0; }
  ol { list-style: none; padding: 0; }
  li.result { display: flex; gap: 1rem; align-items: center; border-bottom: 1px solid #e5e7eb; padding: .6rem 0; }
  li.result canvas { width: 96px; height: 96px; object-fit: contain; image-rendering: auto; border-radius: 4px; background: #f3f4f6; }
  .label { font-weight: 600; font-size: 1.1rem; }
  .name { color: #6b7280; font-size: .85rem; word-break: break-all; }
  .bar { height: 6px; background: #2563eb; border-radius: 3px; }
  .error { color: #b91c1c; }
  table { border-collapse: collapse; font-size: .85rem; } td { padding: 0 .6rem 0 0; }
</style>
</head>
<body>
<h1>${escapeHtml(opts.title)}</h1>
<p>Classes: ${output.classes.map(escapeHtml).join(', ')}. Photos stay on this computer: nothing is uploaded.</p>
<div id="drop">
  <p>Drop photos here, or choose them: <input id="files" type="file" accept="image/*" multiple></p>
</div>
<p id="status">Loading the model…</p>
<ol id="results"></ol>
<script src="${DEMO_RUNTIME}"></script>
<script src="demo-model.js"></script>
<script>
const CONFIG = ${scriptJson(config)};
const statusLine = document.getElementById('status');

function decodeBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

const ready = (async () => {
  // CPU: exact float32 like finetune's own runtime (WebGL may compute in half precision).
  await tf.setBackend('cpu');
  const m = window.FINETUNE_MODEL;
  const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: m.modelTopology, weightSpecs: m.weightSpecs, weightData: decodeBase64(m.weightData) }));
  statusLine.textContent = 'Ready: choose or drop photos.';
  return model;
})();
ready.catch((err) => { statusLine.textContent = 'The model did not load: ' + err.message; statusLine.className = 'error'; });

${RESIZE_SCRIPT}
function toPixels(bitmap, canvas) {
  const { width, height } = CONFIG;
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const cx = canvas.getContext('2d', { willReadFrequently: true });
  cx.fillStyle = '#ffffff';
  cx.fillRect(0, 0, bitmap.width, bitmap.height);
  cx.drawImage(bitmap, 0, 0);
  const rgba = cx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  let rgb = new Uint8ClampedArray(bitmap.width * bitmap.height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  let w = bitmap.width, h = bitmap.height;
  let targetW = width, targetH = height;
  let factorW = w / width, factorH = h / height;
  if (CONFIG.mode === 'crop') {
    // sharp's cover: one factor for both axes, the smaller, then the centre cut out.
    const f = Math.min(w / width, h / height);
    factorW = factorH = f;
    targetW = Math.max(width, Math.round(w / f));
    targetH = Math.max(height, Math.round(h / f));
  }
  let img = resizeAxis({ rgb, w, h }, factorH, targetH, true);
  img = resizeAxis(img, factorW, targetW, false);
  rgb = img.rgb; w = img.w; h = img.h;
  // sharp centres an odd remainder to the right and down: (d + 1) / 2.
  const left = Math.floor((w - width + 1) / 2), top = Math.floor((h - height + 1) / 2);
  const pixels = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width * 3; x++) pixels[y * width * 3 + x] = rgb[((y + top) * w + left) * 3 + x];
  // The thumbnail: what the model saw.
  canvas.width = width;
  canvas.height = height;
  const shown = cx.createImageData(width, height);
  for (let i = 0, j = 0; j < pixels.length; i += 4, j += 3) {
    shown.data[i] = pixels[j];
    shown.data[i + 1] = pixels[j + 1];
    shown.data[i + 2] = pixels[j + 2];
    shown.data[i + 3] = 255;
  }
  cx.putImageData(shown, 0, 0);
  return pixels;
}

/** Why this photo's numbers may differ from finetune predict's in the last decimals ('' when the resize is libvips's to the byte). */
function inexactResize(file, w, h) {
  const fw = w / CONFIG.width, fh = h / CONFIG.height;
  if (/jpe?g/i.test(file.type) && Math.min(fw, fh) >= 2) return 'approximate: sharp decodes a JPEG this large at reduced size, which a browser cannot';
  if (CONFIG.mode === 'crop') return 'approximate: the crop resize is not yet libvips’s to the byte';
  if (Math.min(fw, fh) < 1) return 'approximate: smaller than the model input, enlarged in JavaScript';
  if ([fw, fh].some((f) => f >= 4 && ![2, 4].includes(Math.floor(f / 2)))) return 'approximate: reduced by a factor libvips averages differently';
  return '';
}

function show(item, file, probabilities, note) {
  const ranked = CONFIG.classes.map((name, c) => [name, probabilities[c]]).sort((a, b) => b[1] - a[1]);
  const [label, probability] = ranked[0];
  item.dataset.label = label;
  item.dataset.probability = String(probability);
  item.dataset.probabilities = JSON.stringify(Object.fromEntries(CONFIG.classes.map((name, c) => [name, probabilities[c]])));
  const text = document.createElement('div');
  const head = document.createElement('div');
  head.className = 'label';
  head.textContent = label + ' ' + probability.toFixed(4);
  const name = document.createElement('div');
  name.className = 'name';
  name.textContent = file.name;
  const table = document.createElement('table');
  for (const [cls, p] of ranked) {
    const row = table.insertRow();
    row.insertCell().textContent = cls;
    row.insertCell().textContent = p.toFixed(4);
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = Math.round(p * 120) + 'px';
    row.insertCell().appendChild(bar);
  }
  text.append(head, name, table);
  if (note) {
    item.dataset.note = note;
    const line = document.createElement('div');
    line.className = 'name';
    line.textContent = note;
    text.append(line);
  }
  item.append(text);
}

async function classify(files) {
  const model = await ready;
  const list = document.getElementById('results');
  for (const file of files) {
    const item = document.createElement('li');
    item.className = 'result';
    item.dataset.name = file.name;
    const canvas = document.createElement('canvas');
    item.append(canvas);
    list.append(item);
    try {
      const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
      const note = inexactResize(file, bitmap.width, bitmap.height);
      const pixels = toPixels(bitmap, canvas);
      bitmap.close();
      const output = tf.tidy(() => model.predict(tf.tensor4d(pixels, [1, CONFIG.height, CONFIG.width, 3])));
      const probabilities = Array.from(await output.data());
      output.dispose();
      show(item, file, probabilities, note);
    } catch (err) {
      item.dataset.error = String(err && err.message || err);
      const line = document.createElement('div');
      line.className = 'error';
      line.textContent = file.name + ': not an image this browser can decode';
      item.append(line);
    }
  }
  statusLine.textContent = list.children.length + ' photo(s) classified.';
}

document.getElementById('files').addEventListener('change', (e) => classify([...e.target.files]));
const drop = document.getElementById('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); classify([...e.dataTransfer.files]); });
</script>
</body>
</html>
`;
}
