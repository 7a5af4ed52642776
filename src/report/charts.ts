/** Inline SVG charts: no script, no external fonts; text inherits the page's font. */
import type { ReliabilityBin } from '../metrics/index.ts';
import { esc, num, percent, truncate } from './html.ts';

export const COLORS = {
  train: '#2563eb',
  valid: '#ea580c',
  grid: '#e5e7eb',
  axis: '#9ca3af',
  text: '#4b5563',
  bar: '#3b82f6',
  gap: '#f97316',
  muted: '#cbd5e1',
} as const;

/** Round step (1, 2 or 5 × 10^k) giving about `count` intervals over [min, max]. */
export function niceStep(min: number, max: number, count = 5): number {
  const span = max - min || Math.abs(max) || 1;
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
}

function ticks(min: number, max: number, step: number): number[] {
  const out: number[] = [];
  const first = Math.ceil(min / step - 1e-9) * step;
  for (let v = first; v <= max + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
  return out;
}

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
}

export interface LineChartOptions {
  label: string;
  series: Series[];
  xLabel: string;
  yFormat: (v: number) => string;
  /** Clamp the nice y-domain to these bounds (e.g. [0, 1] for accuracy). */
  yBounds?: [number, number];
  /** Start the y-axis at zero (losses). */
  yFromZero?: boolean;
}

export function lineChart(options: LineChartOptions): string {
  const width = 480;
  const height = 260;
  const m = { left: 54, right: 14, top: 12, bottom: 42 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const all = options.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (all.length === 0) return '';

  let xMin = Math.min(...all.map(([x]) => x));
  let xMax = Math.max(...all.map(([x]) => x));
  if (xMin === xMax) [xMin, xMax] = [xMin - 1, xMax + 1];
  const xStep = Math.max(1, niceStep(xMin, xMax, 6));

  let yMin = options.yFromZero ? 0 : Math.min(...all.map(([, y]) => y));
  let yMax = Math.max(...all.map(([, y]) => y));
  if (yMin === yMax) [yMin, yMax] = [yMin - 0.5, yMax + 0.5];
  const yStep = niceStep(yMin, yMax, 5);
  yMin = Math.floor(yMin / yStep) * yStep;
  yMax = Math.ceil(yMax / yStep) * yStep;
  if (options.yBounds) {
    yMin = Math.max(yMin, options.yBounds[0]);
    yMax = Math.min(yMax, options.yBounds[1]);
  }

  const sx = (x: number) => m.left + ((x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y: number) => m.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;

  const parts: string[] = [];
  for (const v of ticks(yMin, yMax, yStep)) {
    const y = num(sy(v));
    parts.push(`<line x1="${m.left}" x2="${m.left + plotW}" y1="${y}" y2="${y}" stroke="${COLORS.grid}"/>`);
    parts.push(`<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(options.yFormat(v))}</text>`);
  }
  for (const v of ticks(xMin, xMax, xStep)) {
    const x = num(sx(v));
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.top + plotH}" y2="${m.top + plotH + 4}" stroke="${COLORS.axis}"/>`);
    parts.push(`<text x="${x}" y="${m.top + plotH + 17}" text-anchor="middle">${esc(v)}</text>`);
  }
  parts.push(`<line x1="${m.left}" x2="${m.left + plotW}" y1="${m.top + plotH}" y2="${m.top + plotH}" stroke="${COLORS.axis}"/>`);
  parts.push(`<text x="${m.left + plotW / 2}" y="${height - 4}" text-anchor="middle" class="axis-title">${esc(options.xLabel)}</text>`);

  for (const s of options.series) {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length === 0) continue;
    const d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${num(sx(x))} ${num(sy(y))}`).join('');
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2.25" stroke-linejoin="round"${dash}/>`);
    if (pts.length <= 40) {
      parts.push(pts.map(([x, y]) => `<circle cx="${num(sx(x))}" cy="${num(sy(y))}" r="3" fill="#fff" stroke="${s.color}" stroke-width="2"/>`).join(''));
    }
  }

  return `<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(options.label)}">${parts.join('')}</svg>`;
}

/** White → deep blue; `t` in [0, 1]. */
function blueScale(t: number): string {
  const from = [248, 250, 252];
  const to = [30, 64, 175];
  const c = from.map((f, i) => Math.round(f + (to[i] - f) * Math.sqrt(t)));
  return `rgb(${c.join(',')})`;
}

/**
 * Rows = true class, columns = predicted. Colour is the row share (so the diagonal reads as
 * recall whatever the class sizes); the cell text is the count.
 */
export function confusionHeatmap(matrix: number[][], classes: string[]): string {
  const k = classes.length;
  const cell = Math.max(22, Math.min(96, Math.floor(440 / Math.max(k, 1))));
  const maxChars = Math.min(18, Math.max(...classes.map((c) => c.length), 1));
  const labelW = Math.ceil(maxChars * 7.2) + 14;
  const rotate = maxChars * 7.2 > cell - 6;
  const headerH = rotate ? Math.ceil(labelW * 0.72) + 8 : 24;
  const axisPad = 22;
  const left = axisPad + labelW;
  const top = axisPad + headerH;
  const width = left + k * cell + (rotate ? Math.ceil(labelW * 0.72) : 8);
  const height = top + k * cell + 8;
  const showText = cell >= 26;

  const parts: string[] = [];
  parts.push(`<text x="${left + (k * cell) / 2}" y="14" text-anchor="middle" class="axis-title">Predicted class</text>`);
  parts.push(`<text transform="translate(12 ${top + (k * cell) / 2}) rotate(-90)" text-anchor="middle" class="axis-title">True class</text>`);

  classes.forEach((name, j) => {
    const label = esc(truncate(name, 18));
    const cx = left + j * cell + cell / 2;
    if (rotate) {
      parts.push(`<text transform="translate(${num(cx)} ${top - 6}) rotate(-45)" text-anchor="start"><title>${esc(name)}</title>${label}</text>`);
    } else {
      parts.push(`<text x="${num(cx)}" y="${top - 8}" text-anchor="middle"><title>${esc(name)}</title>${label}</text>`);
    }
    parts.push(`<text x="${left - 8}" y="${num(top + j * cell + cell / 2)}" text-anchor="end" dominant-baseline="middle"><title>${esc(name)}</title>${label}</text>`);
  });

  // Big matrices are mostly zeros: one background rect stands for them, and per-cell tooltips
  // go, so that 30 classes stay tens of kilobytes rather than hundreds.
  const compact = k > 12;
  parts.push(`<rect x="${left}" y="${top}" width="${k * cell - 2}" height="${k * cell - 2}" fill="${blueScale(0)}"/>`);
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, j) => {
      if (count === 0 && compact && i !== j) return;
      const share = total ? count / total : 0;
      const x = left + j * cell;
      const y = top + i * cell;
      const diagonal = i === j ? ' class="diag"' : '';
      const tip = compact ? '' : `<title>true ${esc(classes[i])}, predicted ${esc(classes[j])}: ${count} (${percent(share)} of row)</title>`;
      parts.push(`<rect x="${x}" y="${y}" width="${cell - 2}" height="${cell - 2}" rx="3" fill="${blueScale(share)}"${diagonal}>${tip}</rect>`);
      if (showText) {
        const ink = share > 0.45 ? '#fff' : '#1f2937';
        const cx = num(x + (cell - 2) / 2);
        const cy = y + (cell - 2) / 2;
        if (cell >= 56) {
          parts.push(`<text x="${cx}" y="${num(cy - 2)}" text-anchor="middle" fill="${ink}" class="cell-count">${count}</text>`);
          parts.push(`<text x="${cx}" y="${num(cy + 14)}" text-anchor="middle" fill="${ink}" class="cell-share">${percent(share, 0)}</text>`);
        } else {
          parts.push(`<text x="${cx}" y="${num(cy + 4)}" text-anchor="middle" fill="${ink}" class="cell-count small">${count}</text>`);
        }
      }
    });
  });

  return `<svg class="heatmap" viewBox="0 0 ${width} ${height}" width="${width}" role="img" aria-label="Confusion matrix">${parts.join('')}</svg>`;
}

/**
 * Accuracy per confidence bin as bars, each bin's mean confidence as a tick, the diagonal of
 * perfect calibration, and below it how many images fell in each bin.
 */
export function reliabilityDiagram(bins: ReliabilityBin[]): string {
  const width = 440;
  const m = { left: 50, right: 14, top: 12 };
  const plot = width - m.left - m.right;
  const histH = 60;
  const gapH = 26;
  const height = m.top + plot + gapH + histH + 44;
  const sx = (v: number) => m.left + v * plot;
  const sy = (v: number) => m.top + plot - v * plot;
  const histTop = m.top + plot + gapH;
  const maxCount = Math.max(1, ...bins.map((b) => b.count));

  const parts: string[] = [];
  for (let v = 0; v <= 1.0001; v += 0.2) {
    const t = Math.round(v * 10) / 10;
    parts.push(`<line x1="${m.left}" x2="${m.left + plot}" y1="${num(sy(t))}" y2="${num(sy(t))}" stroke="${COLORS.grid}"/>`);
    parts.push(`<text x="${m.left - 8}" y="${num(sy(t))}" text-anchor="end" dominant-baseline="middle">${t.toFixed(1)}</text>`);
    parts.push(`<text x="${num(sx(t))}" y="${histTop + histH + 16}" text-anchor="middle">${t.toFixed(1)}</text>`);
  }
  for (const b of bins) {
    const x = sx(b.lower) + 1.5;
    const w = sx(b.upper) - sx(b.lower) - 3;
    const tip = `${b.lower.toFixed(1)}–${b.upper.toFixed(1)}: ${b.count} images`;
    if (b.count > 0) {
      parts.push(`<rect x="${num(x)}" y="${num(sy(b.accuracy))}" width="${num(w)}" height="${num(plot * b.accuracy)}" fill="${COLORS.bar}" rx="2"><title>${tip}, accuracy ${percent(b.accuracy)}, mean confidence ${percent(b.confidence)}</title></rect>`);
      // Overconfidence (the usual failure) is shaded above the bar; underconfidence already
      // shows as bar above the tick.
      if (b.confidence > b.accuracy) {
        parts.push(`<rect x="${num(x)}" y="${num(sy(b.confidence))}" width="${num(w)}" height="${num((b.confidence - b.accuracy) * plot)}" fill="${COLORS.gap}" fill-opacity=".16"/>`);
      }
      parts.push(`<line x1="${num(x)}" x2="${num(x + w)}" y1="${num(sy(b.confidence))}" y2="${num(sy(b.confidence))}" stroke="${COLORS.gap}" stroke-width="3"/>`);
    }
    const h = (b.count / maxCount) * histH;
    parts.push(`<rect x="${num(x)}" y="${num(histTop + histH - h)}" width="${num(w)}" height="${num(Math.max(h, b.count ? 1 : 0))}" fill="${COLORS.muted}" rx="1.5"><title>${tip}</title></rect>`);
    if (b.count) parts.push(`<text x="${num(x + w / 2)}" y="${num(histTop + histH - h - 4)}" text-anchor="middle" class="small">${b.count}</text>`);
  }
  parts.push(`<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(1)}" y2="${sy(1)}" stroke="#6b7280" stroke-dasharray="5 4" stroke-width="1.5"/>`);
  parts.push(`<line x1="${m.left}" x2="${m.left + plot}" y1="${sy(0)}" y2="${sy(0)}" stroke="${COLORS.axis}"/>`);
  parts.push(`<line x1="${m.left}" x2="${m.left + plot}" y1="${histTop + histH}" y2="${histTop + histH}" stroke="${COLORS.axis}"/>`);
  parts.push(`<text transform="translate(14 ${m.top + plot / 2}) rotate(-90)" text-anchor="middle" class="axis-title">Accuracy</text>`);
  parts.push(`<text transform="translate(14 ${histTop + histH / 2}) rotate(-90)" text-anchor="middle" class="axis-title">Images</text>`);
  parts.push(`<text x="${m.left + plot / 2}" y="${height - 6}" text-anchor="middle" class="axis-title">Confidence (top-1 probability)</text>`);

  return `<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="Reliability diagram">${parts.join('')}</svg>`;
}
