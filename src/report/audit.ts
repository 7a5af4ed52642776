/**
 * The audit report: the evaluate report's page (same stylesheet, same CSP, no script), showing
 * each label issue beside its nearest images of the given and of the suggested class, the
 * near-duplicate pairs side by side, and the outliers beside their nearest images.
 */
import { basename, esc, isDataImage, percent, reportPage } from './html.ts';
import { STYLES } from './styles.ts';


export interface AuditThumb {
  path: string;
  /** data:image URI ('' shows a placeholder). */
  thumbnail: string;
  /** Small print under the picture: class, split, similarity. */
  caption: string;
}

export interface AuditReportInput {
  title: string;
  generatedAt: string;
  classes: string[];
  /** Key/value table: data, backbone, folds, thresholds … */
  settings: Record<string, string | number>;
  counts: { images: number; labelIssues: number; duplicates: number; leakage: number; outliers: number };
  labelIssues: { image: AuditThumb; given: string; suggested: string; score: number; suggestedProbability: number; nearestGiven: AuditThumb[]; nearestSuggested: AuditThumb[] }[];
  duplicates: { a: AuditThumb; b: AuditThumb; similarity: number; score: number; leakage: boolean; exact: boolean }[];
  outliers: { image: AuditThumb; label: string; score: number; nearest: AuditThumb[] }[];
  /** How many of each kind exist beyond those shown. */
  hidden: { labelIssues: number; duplicates: number; outliers: number };
}

const AUDIT_STYLES = `
.row{display:grid;grid-template-columns:150px minmax(0,1fr) minmax(0,1fr);gap:14px;align-items:start;padding:12px 0;border-bottom:1px solid var(--line)}
.row:last-child{border-bottom:0}
.row.two{grid-template-columns:minmax(0,1fr)}
.strip{display:grid;grid-template-columns:repeat(auto-fill,minmax(92px,1fr));gap:8px}
.strip h4,.row h4{grid-column:1/-1;margin:0;font-size:12.5px;color:var(--muted);font-weight:600}
.thumb{margin:0;border:1px solid var(--line);border-radius:8px;overflow:hidden;background:#fff}
.thumb img,.thumb .ph{display:block;width:100%;aspect-ratio:1/1;object-fit:cover;background:#f1f5f9}
.thumb .ph{display:flex;align-items:center;justify-content:center;color:#94a3b8;font-size:12px}
.thumb figcaption{padding:4px 6px;font-size:11.5px;line-height:1.3;color:#374151;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.thumb.main{border:2px solid var(--bad)}
.pairs{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:14px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:6px;border:1px solid var(--line);border-radius:10px;padding:8px;background:#fafbfc}
.pair .verdict{grid-column:1/-1}
.verdict{font-size:13px;line-height:1.45}
.verdict b{font-variant-numeric:tabular-nums}
`;

function thumb(t: AuditThumb, main = false): string {
  const picture = isDataImage(t.thumbnail) ? `<img src="${esc(t.thumbnail)}" alt="${esc(basename(t.path))}">` : '<div class="ph">no preview</div>';
  return `<figure class="thumb${main ? ' main' : ''}" title="${esc(t.path)}">${picture}<figcaption>${esc(t.caption)}</figcaption></figure>`;
}

function strip(title: string, items: AuditThumb[]): string {
  return `<div class="strip"><h4>${title}</h4>${items.length ? items.map((t) => thumb(t)).join('') : '<p class="empty">none</p>'}</div>`;
}

function section(id: string, title: string, lead: string, body: string): string {
  return `<section id="${id}" class="gallery-section"><h2>${esc(title)}</h2><p class="lead">${lead}</p>${body}</section>`;
}

const more = (n: number, what: string) => (n > 0 ? `<p class="note">… and ${n} more ${what} in the JSON output (<code>--json</code>).</p>` : '');

export function renderAuditReport(input: AuditReportInput): string {
  const c = input.counts;
  const tiles = [
    ['Images', String(c.images), `${input.classes.length} classes`],
    ['Label issues', String(c.labelIssues), 'given label contradicted'],
    ['Near-duplicates', String(c.duplicates), `${c.leakage} across train/valid`],
    ['Outliers', String(c.outliers), 'far from every class'],
  ]
    .map(([k, v, s]) => `<div class="tile"><div class="k">${esc(k)}</div><div class="v">${esc(v)}</div><div class="s">${esc(s)}</div></div>`)
    .join('');
  const settings = Object.entries(input.settings)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join('');
  const summary = `<section id="summary"><h2>Summary</h2><div class="split"><div class="tiles">${tiles}</div><div><table class="kv">${settings}</table></div></div></section>`;

  const issues = input.labelIssues
    .map(
      (l) =>
        `<div class="row">${thumb(l.image, true)}${strip(`Nearest labelled ${esc(l.given)} (given)`, l.nearestGiven)}${strip(`Nearest labelled ${esc(l.suggested)} (suggested)`, l.nearestSuggested)}<div class="verdict" style="grid-column:1/-1">given <b>${esc(l.given)}</b> · suggested <b>${esc(l.suggested)}</b> (${percent(l.suggestedProbability)}) · label quality <b>${l.score.toFixed(3)}</b></div></div>`,
    )
    .join('');
  const labelSection = section(
    'label-issues',
    'Label issues',
    'Images whose given label the other images contradict: each was scored by a head trained without it (out-of-fold), and the confident joint counts it in another class. Beside each, its nearest images of the given and of the suggested class.',
    (issues || '<p class="empty">No label issues found.</p>') + more(input.hidden.labelIssues, 'label issues'),
  );

  const pairs = input.duplicates
    .map(
      (d) =>
        `<div class="pair">${thumb(d.a)}${thumb(d.b)}<div class="verdict">score <b>${d.score.toFixed(3)}</b> · cosine <b>${d.similarity.toFixed(3)}</b>${d.exact ? '<span class="pill bad">same bytes</span>' : ''}${d.leakage ? '<span class="pill bad">train/valid leakage</span>' : ''}</div></div>`,
    )
    .join('');
  const duplicateSection = section(
    'duplicates',
    'Near-duplicates',
    'Pairs whose pooled features are near-identical: resized, recompressed or slightly cropped copies. A pair across train and valid lets validation score images the head trained on.',
    (pairs ? `<div class="pairs">${pairs}</div>` : '<p class="empty">No near-duplicate pairs found.</p>') + more(input.hidden.duplicates, 'pairs'),
  );

  const outliers = input.outliers
    .map((o) => `<div class="row">${thumb(o.image, true)}${strip('Nearest images of any class', o.nearest)}<div class="verdict">labelled <b>${esc(o.label)}</b><br>distance <b>${o.score.toFixed(3)}</b></div></div>`)
    .join('');
  const outlierSection = section(
    'outliers',
    'Outliers',
    'Images far from every class (distance to the k-th nearest image of the nearest class): placeholders, drawings, other subjects.',
    (outliers || '<p class="empty">No outliers found.</p>') + more(input.hidden.outliers, 'outliers'),
  );

  const nav = [
    ['summary', 'Summary'],
    ['label-issues', 'Label issues'],
    ['duplicates', 'Near-duplicates'],
    ['outliers', 'Outliers'],
  ]
    .map(([id, name]) => `<a href="#${id}">${name}</a>`)
    .join('');
  return reportPage({
    title: input.title,
    styles: STYLES + AUDIT_STYLES,
    subtitle: `${c.images} images · ${input.classes.length} classes (${input.classes.map(esc).join(', ')}) · generated ${esc(input.generatedAt)}`,
    nav,
    body: `${summary}\n${labelSection}\n${duplicateSection}\n${outlierSection}`,
    footer: 'Made by finetune audit · one self-contained file: no scripts, nothing loaded from the network. finetune never moves or deletes your files: edit the fix list and train with --exclude.',
  });
}
