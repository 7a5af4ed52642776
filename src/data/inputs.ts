import { stat } from 'node:fs/promises';
import fg from 'fast-glob';
import { listImages, type Skipped } from './files.ts';

/**
 * predict's arguments: files, folders (their images, recursively) and globs, in the order
 * given. A missing file is reported, not fatal.
 */
export async function expandInputs(inputs: string[]): Promise<{ paths: string[]; missing: Skipped[]; skipped: Skipped[] }> {
  const paths: string[] = [];
  const missing: Skipped[] = [];
  const skipped: Skipped[] = [];
  for (const input of inputs) {
    const info = await stat(input).catch(() => null);
    if (info?.isDirectory()) {
      const listing = await listImages(input);
      if (listing.images.length === 0) missing.push({ path: input, reason: 'folder holds no images' });
      paths.push(...listing.images);
      skipped.push(...listing.skipped);
    } else if (info?.isFile()) {
      paths.push(input);
    } else if (info) {
      // Reading a pipe or a device would block or never end.
      missing.push({ path: input, reason: 'not a regular file (a pipe, socket or device)' });
    } else if (fg.isDynamicPattern(input)) {
      const matches = (await fg(input, { onlyFiles: true, dot: false })).sort();
      if (matches.length === 0) missing.push({ path: input, reason: 'no file matches this pattern' });
      paths.push(...matches);
    } else {
      missing.push({ path: input, reason: 'file not found' });
    }
  }
  return { paths, missing, skipped };
}
