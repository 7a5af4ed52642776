/** The page's only stylesheet, inlined: no web fonts, nothing fetched. */
export const STYLES = `
:root{color-scheme:light;--bg:#f5f6f8;--card:#fff;--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--accent:#2563eb;--ok:#15803d;--ok-bg:#dcfce7;--bad:#b91c1c;--bad-bg:#fee2e2;--warn:#b45309}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:1160px;margin:0 auto;padding:28px 24px 48px}
header.top{display:flex;flex-wrap:wrap;align-items:flex-end;justify-content:space-between;gap:8px 24px;margin-bottom:14px}
h1{font-size:26px;line-height:1.2;margin:0;letter-spacing:-.01em}
.subtitle{color:var(--muted);margin:4px 0 0}
nav{display:flex;flex-wrap:wrap;gap:6px;margin:0 0 22px}
nav a{font-size:13px;color:#374151;text-decoration:none;background:var(--card);border:1px solid var(--line);border-radius:999px;padding:3px 11px}
nav a:hover{border-color:var(--accent);color:var(--accent)}
a{color:var(--accent)}
.calib svg{max-width:470px}
section{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:20px 22px 22px;margin:0 0 18px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
h2{font-size:17px;margin:0 0 4px;letter-spacing:-.005em}
h3{font-size:14px;margin:18px 0 8px;color:#374151}
.lead{color:var(--muted);margin:0 0 16px;font-size:14px}
.split{display:grid;grid-template-columns:minmax(0,1.6fr) minmax(260px,1fr);gap:22px;align-items:start}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px}
.tile{border:1px solid var(--line);border-radius:12px;padding:12px 14px;background:#fafbfc}
.tile .k{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.tile .v{font-size:26px;font-weight:650;font-variant-numeric:tabular-nums;line-height:1.25;margin-top:2px}
.tile .s{font-size:12.5px;color:var(--muted)}
.tile.hero{background:linear-gradient(135deg,#eff6ff,#f8fafc);border-color:#bfdbfe}
.tile.hero .v{color:#1d4ed8}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.avg td{color:#374151;background:#fafbfc}
tr.avg:first-of-type td{border-top:2px solid var(--line)}
.kv th{width:38%;text-transform:none;letter-spacing:0;font-size:13px;color:var(--muted);font-weight:500}
.kv td{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
.bar{display:inline-block;vertical-align:middle;width:64px;height:6px;border-radius:3px;background:#e5e7eb;margin-left:8px;overflow:hidden}
.bar i{display:block;height:100%;background:var(--accent)}
svg{font-size:12px;fill:#4b5563;max-width:100%;height:auto}
svg .axis-title{font-size:12px;fill:#374151;font-weight:600}
svg .small{font-size:10px}
svg .cell-count{font-size:15px;font-weight:650}
svg .cell-count.small{font-size:11px}
svg .cell-share{font-size:11px;opacity:.85}
svg rect.diag{stroke:#1e3a8a;stroke-width:1}
.heatwrap{overflow-x:auto}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:20px}
.chart-box h3{margin:0 0 4px}
.legend{display:flex;gap:14px;font-size:12.5px;color:#374151;margin:0 0 4px}
.legend span::before{content:"";display:inline-block;width:14px;height:3px;border-radius:2px;background:var(--c);vertical-align:middle;margin-right:6px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:10px}
.groups{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:0 24px}
.groups h3{margin-top:10px}
.card{margin:0;border:1px solid var(--line);border-radius:10px;overflow:hidden;background:#fff;break-inside:avoid}
.card.ok{border-top:3px solid #22c55e}
.card.bad{border-top:3px solid #ef4444}
.card img,.card .ph{display:block;width:100%;aspect-ratio:1/1;object-fit:cover;background:#f1f5f9}
.card .ph{display:flex;align-items:center;justify-content:center;color:#94a3b8;font-size:12px}
.card .body{padding:7px 8px 8px;font-size:12.5px;line-height:1.35}
.card .name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:11.5px;color:#374151;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.card .pred{display:flex;justify-content:space-between;gap:6px;white-space:nowrap}
.card .pred{margin-top:3px;font-weight:600}
.card .pred span:first-child{overflow:hidden;text-overflow:ellipsis}
.card.ok .pred{color:var(--ok)}
.card.bad .pred{color:var(--bad)}
.card .truth{color:var(--muted);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.card .pbar{height:4px;border-radius:2px;background:#e5e7eb;margin-top:6px;overflow:hidden}
.card .pbar i{display:block;height:100%}
.card.ok .pbar i{background:#22c55e}
.card.bad .pbar i{background:#ef4444}
.pill{display:inline-block;font-size:11.5px;font-weight:600;border-radius:999px;padding:1px 8px;margin-left:6px;vertical-align:1px}
.pill.ok{background:var(--ok-bg);color:var(--ok)}
.pill.bad{background:var(--bad-bg);color:var(--bad)}
.empty{color:var(--muted);font-style:italic;font-size:14px;margin:6px 0}
.note{font-size:13px;color:var(--muted);margin:10px 0 0}
.skipped td:first-child{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
footer{color:var(--muted);font-size:12.5px;text-align:center;margin-top:26px}
@media (max-width:760px){.split{grid-template-columns:1fr}main{padding:18px 12px}}
@media print{
 body{background:#fff;font-size:12px;-webkit-print-color-adjust:exact;print-color-adjust:exact}
 main{max-width:none;padding:0}
 nav{display:none}
 section{box-shadow:none;break-inside:avoid-page;page-break-inside:avoid;border-color:#d1d5db}
 section.gallery-section{break-inside:auto;page-break-inside:auto}
 @page{margin:14mm}
}
`;
