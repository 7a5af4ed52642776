export { renderReport } from './render.ts';
export { selectGalleryImages, planGalleries, DEFAULT_PER_GALLERY, type GalleryOptions, type GalleryPlan } from './gallery.ts';
export { esc as escapeHtml } from './html.ts';
export type { ReportImage, EpochRecord, ReportInput, GalleryItem } from './types.ts';
