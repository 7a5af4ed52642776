import { writeFileAtomic } from '../fs/atomic.ts';
import path from 'node:path';
import { thumbnailDataUri } from '../data/image.ts';
import { renderAuditReport, type AuditThumb } from '../report/audit.ts';
import type { AuditResult, Neighbour } from './audit.ts';

/** Candidates of each kind shown with thumbnails; the rest are counted (all are in --json). */
export const REPORT_LIMITS = { labelIssues: 40, duplicates: 40, outliers: 20, neighbours: 4 };

/** Builds the audit report (thumbnails of the shown images only) and writes it atomically. */
export async function writeAuditReport(file: string, result: AuditResult, opts: { title?: string; thumbnailSize?: number } = {}): Promise<string> {
  const size = opts.thumbnailSize ?? 160;
  const byPath = new Map(result.images.map((i) => [i.path, i]));
  const thumbs = new Map<string, Promise<string>>();
  const picture = (p: string) => {
    if (!thumbs.has(p)) thumbs.set(p, thumbnailDataUri(p, size).catch(() => ''));
    return thumbs.get(p)!;
  };
  const rel = (p: string) => path.relative(result.root, p) || p;
  const image = async (p: string, caption?: string): Promise<AuditThumb> => {
    const info = byPath.get(p);
    return { path: p, thumbnail: await picture(p), caption: caption ?? `${info?.label ?? ''} · ${info?.split ?? ''} · ${path.basename(p)}` };
  };
  const neighbours = (list: Neighbour[]) => Promise.all(list.slice(0, REPORT_LIMITS.neighbours).map((n) => image(n.path, `cos ${n.similarity.toFixed(2)} · ${path.basename(n.path)}`)));
  const L = REPORT_LIMITS;
  const html = renderAuditReport({
    title: opts.title ?? `audit of ${result.root}`,
    generatedAt: new Date().toISOString(),
    classes: result.classes,
    settings: {
      data: `${result.root} (${result.layout})`,
      backbone: result.settings.backbone,
      features: result.settings.featureSize,
      'label score': `${result.settings.labelScore}, ${result.settings.folds}-fold out-of-fold, ${result.settings.epochs} epochs per head`,
      'duplicate threshold': `CSLS score ≥ ${result.settings.duplicateThreshold} (2·cos − r_a − r_b)`,
      'outlier cut': `distance to the ${result.settings.outlierK}th nearest > ${result.settings.outlierCut.toFixed(3)}`,
    },
    counts: result.counts,
    labelIssues: await Promise.all(
      result.labelIssues.slice(0, L.labelIssues).map(async (l) => ({
        image: await image(l.path, `${l.given} · ${rel(l.path)}`),
        given: l.given,
        suggested: l.suggested,
        score: l.score,
        suggestedProbability: l.suggestedProbability,
        nearestGiven: await neighbours(l.nearestGiven),
        nearestSuggested: await neighbours(l.nearestSuggested),
      })),
    ),
    duplicates: await Promise.all(
      result.duplicates.slice(0, L.duplicates).map(async (d) => ({
        a: await image(d.a, `${d.labelA} · ${d.splitA} · ${path.basename(d.a)}`),
        b: await image(d.b, `${d.labelB} · ${d.splitB} · ${path.basename(d.b)}`),
        similarity: d.similarity,
        score: d.score,
        leakage: d.leakage,
        exact: d.exact,
      })),
    ),
    outliers: await Promise.all(
      result.outliers.slice(0, L.outliers).map(async (o) => ({ image: await image(o.path, `${o.label} · ${rel(o.path)}`), label: o.label, score: o.score, nearest: await neighbours(o.nearest) })),
    ),
    hidden: {
      labelIssues: Math.max(0, result.labelIssues.length - L.labelIssues),
      duplicates: Math.max(0, result.duplicates.length - L.duplicates),
      outliers: Math.max(0, result.outliers.length - L.outliers),
    },
  });
  await writeFileAtomic(file, html);
  return file;
}
