import type { BenchResults } from './bench.ts';
import type { Row } from './table.ts';
import { fmt } from './table.ts';

const TARGETS = { pipelineRatio: 0.85, darknetPredictS: 1.0, rssGrowth: 1.1, cacheS: 2, headGemmShare: 0.2, onnxFileRatio: 0.95 };

/** The summary table and its footnotes, from whatever parts ran. */
export function buildRows(r: BenchResults): { rows: Row[]; notes: string[] } {
  const rows: Row[] = [];
  const notes: string[] = [];
  const flops = r.flopsPerImage;
  const gemm = r.gemm?.gflops;
  if (flops) notes.push(`VGG16 conv base at 224²: ${fmt(flops / 1e9, 3)} GFLOP per image (2·H·W·Cin·Cout·9 summed over its 13 convolutions).`);

  if (r.gemm) {
    rows.push({ part: 1, figure: `float32 GEMM ${r.gemm.n}³, onnxruntime, ${r.gemm.threads} threads (GFLOP/s)`, value: fmt(r.gemm.gflops, 1) });
    if (flops) rows.push({ part: 1, figure: 'VGG16 ceiling at that rate (images/s)', value: fmt((r.gemm.gflops * 1e9) / flops) });
  }

  const onnx = r.vggOnnx?.throughput ?? [];
  for (const t of onnx) {
    const share = gemm ? `, ${Math.round((t.gflops / gemm) * 100)}% of GEMM` : '';
    rows.push({ part: 2, figure: `VGG16 onnx, batch ${t.batch} (images/s; ${fmt(t.gflops, 1)} GFLOP/s${share})`, value: fmt(t.imagesPerSecond) });
  }
  const wasm = r.vggWasm?.throughput ?? [];
  for (const t of wasm) rows.push({ part: 2, figure: `VGG16 tfjs-wasm, batch ${t.batch} (images/s; ${fmt(t.gflops, 1)} GFLOP/s)`, value: fmt(t.imagesPerSecond, 3) });
  for (const w of wasm) {
    const o = onnx.find((t) => t.batch === w.batch);
    if (o) rows.push({ part: 2, figure: `onnx / tfjs-wasm, batch ${w.batch}`, value: `${fmt(o.imagesPerSecond / w.imagesPerSecond, 1)}×` });
  }
  if (r.vggWasm) notes.push(`tfjs-wasm runs on one thread in Node and is slow (≈ 1 image/s): batches 1 and 8 only, one warm-up pass, then ${wasm[0]?.runs.length ?? 0} timed pass(es) each.`);

  if (typeof r.torch === 'string') notes.push(`PyTorch peer ${r.torch}.`);
  else if (r.torch) {
    const gf = flops ? `; ${fmt((r.torch.imagesPerSecond * flops) / 1e9, 1)} GFLOP/s` : '';
    rows.push({ part: 3, figure: `VGG16 PyTorch ${r.torch.version}, batch ${r.torch.batch}, ${r.torch.threads} threads (images/s${gf})`, value: fmt(r.torch.imagesPerSecond, 3) });
    const torchBatch = r.torch.batch;
    const o = onnx.find((t) => t.batch === torchBatch);
    if (o) rows.push({ part: 3, figure: `onnx / PyTorch, batch ${o.batch}`, value: `${fmt(o.imagesPerSecond / r.torch.imagesPerSecond, 1)}×` });
  }

  const p = r.vggOnnx?.pipeline;
  if (p) {
    // The stricter reference: the faster of the tensor-fed figures of this run at that batch size.
    const fromPart2 = onnx.find((t) => t.batch === p.batch)?.imagesPerSecond ?? 0;
    const reference = Math.max(p.tensorImagesPerSecond, fromPart2);
    const ratio = p.imagesPerSecond / reference;
    rows.push({ part: 4, figure: `JPEG files → features, ${p.images} images, batch ${p.batch}, no cache (images/s)`, value: fmt(p.imagesPerSecond) });
    rows.push({ part: 4, figure: `same extractor fed decoded tensors, batch ${p.batch} (images/s)`, value: fmt(reference) });
    rows.push({ part: 4, figure: 'files / tensors', value: fmt(ratio), target: `≥ ${TARGETS.pipelineRatio}`, pass: ratio >= TARGETS.pipelineRatio });
    // Measured inside the same runs, so the machine's load cancels out of this one.
    rows.push({ part: 4, figure: 'files / engine rate inside the same runs (engine busy share)', value: fmt(p.imagesPerSecond / p.engineImagesPerSecond) });
    notes.push(`Pipeline images: ${p.source}; reference = the faster of the tensor-fed figures at batch ${p.batch} in this run (part 2, and passes interleaved with the file runs).`);
  }

  const s = r.startup;
  if (s) {
    rows.push({ part: 5, figure: 'finetune --help, cold (s)', value: fmt(s.help.exitS) });
    rows.push({ part: 5, figure: `predict 1 image, ${s.darknet.backbone.split(' ')[0]} model, cold → answer (s)`, value: fmt(s.darknet.answerS), target: `≤ ${TARGETS.darknetPredictS}`, pass: s.darknet.answerS <= TARGETS.darknetPredictS });
    rows.push({ part: 5, figure: 'predict 1 image, VGG16 model, cold → answer (s)', value: fmt(s.vgg16.answerS) });
    notes.push(`The CLI ran ${s.cliRuns === 'dist' ? 'the compiled dist/ (up to date with src/)' : 'src/ through tsx (no up-to-date dist/; `npm run build` makes one)'}; the stage profiles below run the library through tsx.`);
    notes.push(`predict: best of ${s.darknet.runs.length} cold process(es) after one warm-up, each with an empty feature cache; backbone: ${s.darknet.backbone}. Process exit came ${fmt(s.darknet.exitS - s.darknet.answerS)} s (darknet) / ${fmt(s.vgg16.exitS - s.vgg16.answerS)} s (VGG16) after the answer.`);
    for (const [name, prof] of [['darknet', s.darknet.profile], ['VGG16', s.vgg16.profile]] as const) {
      if (!prof) continue;
      const top = [...prof.stages].sort((a, b) => b.ms - a.ms).slice(0, 4);
      notes.push(`predict (${name}) where the time goes, ${Math.round(prof.totalMs)} ms in all: ${top.map((t) => `${t.stage} ${Math.round(t.ms)} ms`).join('; ')} (all stages in results.json → startup.*.profile).`);
    }
  }

  if (r.rss) {
    const { small, large } = r.rss;
    const growth = large.maxRssMB / small.maxRssMB;
    rows.push({ part: 6, figure: `peak RSS, extraction of ${small.images} images (MB)`, value: fmt(small.maxRssMB, 0) });
    rows.push({ part: 6, figure: `peak RSS, extraction of ${large.images} images (MB)`, value: fmt(large.maxRssMB, 0) });
    rows.push({ part: 6, figure: `peak RSS ${large.images} / ${small.images}`, value: fmt(growth), target: `≤ ${TARGETS.rssGrowth}`, pass: growth <= TARGETS.rssGrowth });
    notes.push(`RSS: ${small.network}, a process per size, files repeated to reach the count; ${fmt(large.imagesPerSecond, 1)} images/s.`);
  }

  const ft = r.finetune;
  if (ft) {
    for (const model of ['vgg16', 'mobilenet_v2'] as const) {
      const ours = ft[model];
      const torch = ft.torch[model];
      const peer = typeof torch === 'object' ? torch.imagesPerSecond : undefined;
      if (ours) {
        const share = gemm ? `, ${Math.round((ours.gflops / gemm) * 100)}% of GEMM` : '';
        rows.push({ part: 8, figure: `${model} fine-tuning step, onnx, batch ${ours.batch} at ${ours.size}² (images/s; ${fmt(ours.gflops, 1)} GFLOP/s as 3× forward${share}; peak RSS ${fmt(ours.peakRssMb, 0)} MB)`, value: fmt(ours.imagesPerSecond, 3) });
      }
      if (peer !== undefined) rows.push({ part: 8, figure: `${model} fine-tuning step, PyTorch, batch 16 (images/s)`, value: fmt(peer, 3) });
      if (ours && peer) {
        const target = model === 'vgg16' ? 1.5 : 2;
        rows.push({ part: 8, figure: `${model} fine-tuning onnx / PyTorch`, value: fmt(ours.imagesPerSecond / peer), target: `≥ ${target}`, pass: ours.imagesPerSecond / peer >= target });
      }
      if (typeof torch === 'string') notes.push(`PyTorch ${model} fine-tuning: ${torch}`);
    }
    if (ft.vgg16 && gemm) {
      const share = ft.vgg16.gflops / gemm;
      rows.push({ part: 8, figure: 'VGG16 fine-tuning share of the GEMM ceiling', value: fmt(share), target: '≥ 0.35', pass: share >= 0.35 });
    }
    notes.push('Fine-tuning: every backbone weight and a Dense(256, relu) → Dense(2) head trained, AdamW, random weights and images; GFLOP/s counts 3× the forward convolutions and dense layers.');
  }

  if (r.cache) {
    const c = r.cache;
    rows.push({ part: 7, figure: `feature cache: getMany of ${c.entries.toLocaleString('en')} × ${c.dim} floats (s)`, value: fmt(c.getManySeconds), target: `< ${TARGETS.cacheS}`, pass: c.getManySeconds < TARGETS.cacheS });
    rows.push({ part: 7, figure: 'feature cache: open + read the index (s)', value: fmt(c.openSeconds) });
  }
  if (r.head) {
    const h = r.head;
    const share = gemm ? h.gflops / gemm : undefined;
    rows.push({ part: 8, figure: `head training, ${h.heads} heads × ${h.epochs} epochs on ${h.rows.toLocaleString('en')} × ${h.dim}, batch ${h.batch}, ${h.engine} (s)`, value: fmt(h.seconds, 1) });
    rows.push({
      part: 8,
      figure: `head training rate (GFLOP/s${share !== undefined ? `; ${Math.round(share * 100)}% of GEMM` : ''})`,
      value: fmt(h.gflops, 1),
      ...(share !== undefined && { target: `≥ ${TARGETS.headGemmShare * 100}% of GEMM`, pass: share >= TARGETS.headGemmShare }),
    });
    notes.push(`head: ${fmt(h.gflopTotal, 0)} GFLOP of training GEMMs (forward and weight gradients, ${h.hidden} hidden units) over the whole call's wall time (initialisation, merge and final scores included); one run.`);
  }
  if (r.onnxFile) {
    const f = r.onnxFile;
    rows.push({ part: 12, figure: `${f.network} from .h5, batch ${f.batch} (images/s)`, value: fmt(f.h5ImagesPerSecond) });
    rows.push({ part: 12, figure: 'the same as --backbone model.onnx (models export --format onnx) (images/s)', value: fmt(f.onnxImagesPerSecond) });
    rows.push({ part: 12, figure: '.onnx / .h5', value: fmt(f.ratio), target: `≥ ${TARGETS.onnxFileRatio}`, pass: f.ratio >= TARGETS.onnxFileRatio });
    notes.push(`onnx-file: best of ${f.runs} timed batches each, the two interleaved in one process.`);
  }
  for (const [part, message] of Object.entries(r.errors)) notes.push(`${part} FAILED: ${message}`);
  return { rows, notes };
}
