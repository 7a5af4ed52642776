/**
 * The evaluation report: one HTML file with everything inlined (CSS, SVG, thumbnails as data:
 * URIs) and no script at all; a Content-Security-Policy forbids scripts and network anyway, so
 * a file name that slipped past escaping still could not run or fetch anything.
 */
import type { Evaluation } from '../metrics/index.ts';
import { COLORS, confusionHeatmap, lineChart, reliabilityDiagram } from './charts.ts';
import { planGalleries, type ClassGallery } from './gallery.ts';
import { basename, esc, fixed, isDataImage, percent, reportPage } from './html.ts';
import { STYLES } from './styles.ts';
import type { EpochRecord, ReportImage, ReportInput } from './types.ts';

const MAX_SKIPPED_ROWS = 500;

interface Section {
  id: string;
  nav: string;
  html: string;
}

function section(id: string, title: string, lead: string, body: string, extraClass = ''): string {
  const cls = extraClass ? ` class="${extraClass}"` : '';
  return `<section id="${id}"${cls}><h2>${esc(title)}</h2>${lead ? `<p class="lead">${lead}</p>` : ''}${body}</section>`;
}

function tile(key: string, value: string, sub: string, hero = false): string {
  return `<div class="tile${hero ? ' hero' : ''}"><div class="k">${esc(key)}</div><div class="v">${value}</div><div class="s">${sub}</div></div>`;
}

function metricsSection(input: ReportInput): string {
  const e = input.evaluation;
  const right = Math.round(e.accuracy * e.count);
  const skipped = input.skipped?.length ?? 0;
  const tiles = [
    tile('Accuracy', percent(e.accuracy, 2), `${right} of ${e.count} correct`, true),
    tile('Log loss', fixed(e.logLoss, 4), 'natural log, lower is better'),
    tile('ROC AUC', e.rocAuc == null ? '—' : fixed(e.rocAuc, 4), e.rocAuc == null ? 'two classes only' : `positive class: ${esc(input.classes[1] ?? '')}`),
    tile('ECE', fixed(e.ece, 4), 'expected calibration error'),
    tile('Images', String(e.count), `${input.classes.length} classes`),
    tile('Mistakes', String(e.count - right), percent(1 - e.accuracy) + ' of images'),
  ];
  if (skipped) tiles.push(tile('Skipped', String(skipped), '<a href="#skipped">unreadable files</a>'));

  const modelRows = Object.entries(input.model)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join('');
  const model = modelRows ? `<table class="kv">${modelRows}</table>` : '<p class="empty">No model details given.</p>';
  return section(
    'metrics',
    'Summary',
    '',
    `<div class="split"><div class="tiles">${tiles.join('')}</div><div><h3 style="margin-top:0">Model</h3>${model}</div></div>`,
  );
}

function confusionSection(input: ReportInput): string {
  const { confusionMatrix: matrix } = input.evaluation;
  const pairs: { from: string; to: string; count: number; share: number }[] = [];
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, j) => {
      if (i !== j && count > 0) pairs.push({ from: input.classes[i], to: input.classes[j], count, share: count / total });
    });
  });
  pairs.sort((a, b) => b.count - a.count || b.share - a.share);
  const top = pairs.slice(0, 8);
  const list = top.length
    ? `<table><tr><th>True</th><th>Predicted</th><th class="n">Images</th><th class="n">Of class</th></tr>${top
        .map((p) => `<tr><td>${esc(p.from)}</td><td>${esc(p.to)}</td><td class="n">${p.count}</td><td class="n">${percent(p.share)}</td></tr>`)
        .join('')}</table>`
    : '<p class="empty">No confusions: every image landed on the diagonal.</p>';
  return section(
    'confusion',
    'Confusion matrix',
    'Rows are the true class, columns the prediction. Cells show counts; colour is the share of the row, so the diagonal reads as recall.',
    `<div class="split"><div class="heatwrap">${confusionHeatmap(matrix, input.classes)}</div><div><h3 style="margin-top:0">Most frequent confusions</h3>${list}</div></div>`,
  );
}

function perClassSection(e: Evaluation): string {
  const row = (label: string, p: number, r: number, f: number, support: number, cls = '') =>
    `<tr${cls}><td>${label}</td><td class="n">${fixed(p)}</td><td class="n">${fixed(r)}</td><td class="n">${fixed(f)}<span class="bar"><i style="width:${(f * 100).toFixed(1)}%"></i></span></td><td class="n">${support}</td></tr>`;
  const n = e.perClass.length || 1;
  const total = e.perClass.reduce((s, c) => s + c.support, 0) || 1;
  const mean = (key: 'precision' | 'recall' | 'f1') => e.perClass.reduce((s, c) => s + c[key], 0) / n;
  const weighted = (key: 'precision' | 'recall' | 'f1') => e.perClass.reduce((s, c) => s + c[key] * c.support, 0) / total;
  const rows = e.perClass.map((c) => row(esc(c.label), c.precision, c.recall, c.f1, c.support)).join('');
  return section(
    'per-class',
    'Per-class metrics',
    'Precision: of the images predicted as the class, the share that were. Recall: of the images of the class, the share found. A class never predicted has precision 0.',
    `<table><tr><th>Class</th><th class="n">Precision</th><th class="n">Recall</th><th class="n">F1</th><th class="n">Support</th></tr>${rows}${row(
      'Macro average',
      mean('precision'),
      mean('recall'),
      mean('f1'),
      e.count,
      ' class="avg"',
    )}${row('Weighted average', weighted('precision'), weighted('recall'), weighted('f1'), e.count, ' class="avg"')}</table>`,
  );
}

const shortNumber = (v: number) => String(Number(v.toFixed(4)));
const shortPercent = (v: number) => `${Number((v * 100).toFixed(2))}%`;

function legend(items: { name: string; color: string }[]): string {
  return `<div class="legend">${items.map((i) => `<span style="--c:${i.color}">${esc(i.name)}</span>`).join('')}</div>`;
}

function curvesSection(history: EpochRecord[]): string {
  const hasValid = history.some((h) => h.valLoss != null || h.valAccuracy != null);
  const pts = (key: keyof EpochRecord) =>
    history.filter((h) => typeof h[key] === 'number').map((h) => [h.epoch, h[key] as number] as [number, number]);
  const keys = hasValid
    ? [
        { name: 'train', color: COLORS.train },
        { name: 'valid', color: COLORS.valid },
      ]
    : [{ name: 'train', color: COLORS.train }];
  const chart = (title: string, trainKey: keyof EpochRecord, validKey: keyof EpochRecord, accuracy: boolean) =>
    `<div class="chart-box"><h3>${title}</h3>${legend(keys)}${lineChart({
      label: title,
      xLabel: 'Epoch',
      yFormat: accuracy ? shortPercent : shortNumber,
      yFromZero: !accuracy,
      yBounds: accuracy ? [0, 1] : undefined,
      series: [
        { name: 'train', color: COLORS.train, points: pts(trainKey) },
        { name: 'valid', color: COLORS.valid, points: pts(validKey) },
      ],
    })}</div>`;

  let note = '';
  const withValLoss = history.filter((h) => typeof h.valLoss === 'number');
  if (withValLoss.length) {
    const best = withValLoss.reduce((a, b) => ((b.valLoss as number) < (a.valLoss as number) ? b : a));
    note = `<p class="note">Lowest validation loss ${fixed(best.valLoss, 4)} at epoch ${esc(best.epoch)}${
      typeof best.valAccuracy === 'number' ? ` (validation accuracy ${percent(best.valAccuracy, 2)})` : ''
    }.</p>`;
  }
  return section(
    'curves',
    'Training curves',
    'Loss and accuracy per epoch of head training. A validation curve that turns up while training keeps falling means overfitting.',
    `<div class="charts">${chart('Loss', 'loss', 'valLoss', false)}${chart('Accuracy', 'accuracy', 'valAccuracy', true)}</div>${note}`,
  );
}

function imageCard(image: ReportImage): string {
  const ok = image.trueLabel === image.predictedLabel;
  const name = basename(image.path);
  const top = Object.entries(image.probabilities)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([label, p]) => `${label} ${percent(p)}`)
    .join(', ');
  const trueProbability = image.probabilities[image.trueLabel];
  const truthTip = !ok && typeof trueProbability === 'number' ? `\ntrue class ${image.trueLabel}: ${percent(trueProbability)}` : '';
  const tip = `${image.path}\n${top}${truthTip}`;
  const picture = isDataImage(image.thumbnail)
    ? `<img src="${esc(image.thumbnail)}" alt="${esc(name)}">`
    : '<div class="ph">no preview</div>';
  const width = Math.max(0, Math.min(1, image.probability)) * 100;
  return `<figure class="card ${ok ? 'ok' : 'bad'}" title="${esc(tip)}">${picture}<figcaption class="body"><div class="name">${esc(
    name,
  )}</div><div class="pred"><span>${ok ? '✓' : '✗'} ${esc(image.predictedLabel)}</span><span>${percent(image.probability)}</span></div><div class="truth">true: ${esc(image.trueLabel)}</div><div class="pbar"><i style="width:${width.toFixed(1)}%"></i></div></figcaption></figure>`;
}

function grid(images: ReportImage[], empty: string): string {
  return images.length ? `<div class="gallery">${images.map(imageCard).join('')}</div>` : `<p class="empty">${empty}</p>`;
}

function perClassGrids(groups: ClassGallery<ReportImage>[], heading: (label: string) => string, empty: string): string {
  const shown = groups.filter((g) => g.items.length > 0);
  if (shown.length === 0) return `<p class="empty">${empty}</p>`;
  return `<div class="groups">${shown.map((g) => `<div><h3>${heading(esc(g.label))}</h3>${grid(g.items, '')}</div>`).join('')}</div>`;
}

function gallerySections(input: ReportInput): string[] {
  const plan = planGalleries(input.images, input.classes, { perGallery: input.perGallery, seed: input.seed });
  const chance = 1 / Math.max(input.classes.length, 1);
  const gallery = (id: string, title: string, lead: string, body: string) => section(id, title, lead, body, 'gallery-section');
  return [
    gallery('gallery-correct', 'A random sample of correct predictions', `Drawn with seed ${esc(input.seed ?? 0)}.`, grid(plan.correct, 'No image was classified correctly.')),
    gallery(
      'gallery-mistakes',
      'Most confident mistakes',
      'Wrong predictions made with the highest probability, by true class. Often mislabelled images, or a class the training data under-represents.',
      perClassGrids(plan.mistakes, (l) => `True class ${l}<span class="pill bad">wrong</span>`, 'No mistakes: every image was classified correctly.'),
    ),
    gallery(
      'gallery-uncertain',
      'Most uncertain',
      `Top probability nearest ${percent(chance)} (chance for ${input.classes.length} classes): the model could hardly decide.`,
      grid(plan.uncertain, 'No images.'),
    ),
    gallery(
      'gallery-confident',
      'Most confident correct predictions',
      'Right predictions made with the highest probability, by true class: what the model finds typical of each class.',
      perClassGrids(plan.confident, (l) => `True class ${l}<span class="pill ok">right</span>`, 'No correct predictions.'),
    ),
  ];
}

const signed = (v: number) => `${v > 0 ? '+' : v < 0 ? '−' : ''}${Math.abs(v).toFixed(1)}`;

function calibrationSection(e: Evaluation): string {
  const rows = e.reliability
    .filter((b) => b.count > 0)
    .map(
      (b) =>
        `<tr><td>${b.lower.toFixed(1)}–${b.upper.toFixed(1)}</td><td class="n">${b.count}</td><td class="n">${percent(b.confidence)}</td><td class="n">${percent(b.accuracy)}</td><td class="n">${signed((b.accuracy - b.confidence) * 100)}</td></tr>`,
    )
    .join('');
  const legendHtml = legend([
    { name: 'accuracy in bin', color: COLORS.bar },
    { name: 'mean confidence', color: COLORS.gap },
    { name: 'perfect calibration', color: '#6b7280' },
  ]);
  return section(
    'calibration',
    'Calibration',
    `Does a prediction made with 90% confidence come true 90% of the time? Bars below the diagonal mean overconfidence. Expected calibration error (ECE): <strong>${fixed(
      e.ece,
      4,
    )}</strong>.`,
    `<div class="split"><div class="calib">${legendHtml}${reliabilityDiagram(e.reliability)}</div><div><table><tr><th>Confidence</th><th class="n">Images</th><th class="n">Mean conf.</th><th class="n">Accuracy</th><th class="n">Gap</th></tr>${rows}</table><p class="note">Gap = accuracy − mean confidence, in percentage points: negative means overconfident. Ten equal-width bins on the top-1 probability; empty bins are left out.</p></div></div>`,
  );
}

function skippedSection(skipped: { path: string; reason: string }[]): string {
  const rows = skipped
    .slice(0, MAX_SKIPPED_ROWS)
    .map((s) => `<tr><td>${esc(s.path)}</td><td>${esc(s.reason)}</td></tr>`)
    .join('');
  const more = skipped.length > MAX_SKIPPED_ROWS ? `<p class="note">… and ${skipped.length - MAX_SKIPPED_ROWS} more.</p>` : '';
  return section(
    'skipped',
    'Skipped files',
    `${skipped.length} file${skipped.length === 1 ? ' was' : 's were'} not evaluated.`,
    `<table class="skipped"><tr><th>File</th><th>Reason</th></tr>${rows}</table>${more}`,
  );
}

/** The whole report as one HTML document. */
export function renderReport(input: ReportInput): string {
  const e = input.evaluation;
  const sections: Section[] = [
    { id: 'metrics', nav: 'Summary', html: metricsSection(input) },
    { id: 'confusion', nav: 'Confusion matrix', html: confusionSection(input) },
    { id: 'per-class', nav: 'Per class', html: perClassSection(e) },
  ];
  if (input.history && input.history.length > 0) sections.push({ id: 'curves', nav: 'Training curves', html: curvesSection(input.history) });
  const [correct, mistakes, uncertain, confident] = gallerySections(input);
  sections.push(
    { id: 'gallery-correct', nav: 'Correct', html: correct },
    { id: 'gallery-mistakes', nav: 'Mistakes', html: mistakes },
    { id: 'gallery-uncertain', nav: 'Uncertain', html: uncertain },
    { id: 'gallery-confident', nav: 'Confident', html: confident },
    { id: 'calibration', nav: 'Calibration', html: calibrationSection(e) },
  );
  if (input.skipped && input.skipped.length > 0) sections.push({ id: 'skipped', nav: 'Skipped', html: skippedSection(input.skipped) });

  const nav = sections.map((s) => `<a href="#${s.id}">${esc(s.nav)}</a>`).join('');
  const subtitle = `${e.count} images · ${input.classes.length} classes (${input.classes.map(esc).join(', ')}) · generated ${esc(input.generatedAt)}`;
  return reportPage({
    title: input.title,
    styles: STYLES,
    subtitle,
    nav,
    body: sections.map((s) => s.html).join('\n'),
    footer: 'Made by finetune · one self-contained file: no scripts, nothing loaded from the network.',
  });
}
