/** Text → HTML. Every piece of user data (paths, class names, model fields) goes through here. */
export function esc(value: string | number): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

export function percent(value: number, digits = 1): string {
  return Number.isFinite(value) ? `${(value * 100).toFixed(digits)}%` : '—';
}

export function fixed(value: number | null | undefined, digits = 3): string {
  return value == null || !Number.isFinite(value) ? '—' : value.toFixed(digits);
}

/** SVG coordinates: two decimals are plenty and keep the file small. */
export function num(value: number): string {
  return String(Math.round(value * 100) / 100);
}

export function truncate(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars - 1)}…`;
}

export function basename(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

/** Only inline images: anything else could reach the network or run code. */
export function isDataImage(uri: string): boolean {
  return /^data:image\/(?:jpeg|png|webp|gif|avif);base64,[A-Za-z0-9+/]+={0,2}$/.test(uri);
}

/** Nothing but inline styles and data: images, so a report opened from anywhere loads nothing. */
const CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

/** The page every finetune report is: one self-contained HTML file, no script. */
export function reportPage(p: { title: string; styles: string; subtitle: string; nav: string; body: string; footer: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="generator" content="finetune">
<title>${esc(p.title)}</title>
<style>${p.styles}</style>
</head>
<body>
<main>
<header class="top"><div><h1>${esc(p.title)}</h1><p class="subtitle">${p.subtitle}</p></div></header>
<nav>${p.nav}</nav>
${p.body}
<footer>${p.footer}</footer>
</main>
</body>
</html>
`;
}
