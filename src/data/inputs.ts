import { stat } from 'node:fs/promises';
import fg from 'fast-glob';
import { listImages, type Skipped } from './files.ts';

export interface InputEntry {
  path: string;
  /** Why this input gives no image (missing, not an image, empty folder); absent for an image. */
  reason?: string;
}

/**
 * predict's arguments: files, folders (their images, recursively) and globs, expanded in the
 * order given. A missing file is an entry with its reason, not an error.
 */
export async function expandInputs(inputs: string[]): Promise<{ paths: string[]; entries: InputEntry[] }> {
  const entries: InputEntry[] = [];
  const images = (paths: string[]) => entries.push(...paths.map((path) => ({ path })));
  for (const input of inputs) {
    const info = await stat(input).catch(() => null);
    if (info?.isDirectory()) {
      const listing = await listImages(input, { unreadableFolders: 'skip' });
      if (listing.images.length === 0) entries.push({ path: input, reason: 'folder holds no images' });
      images(listing.images);
      entries.push(...listing.skipped);
    } else if (info?.isFile()) {
      images([input]);
    } else if (info) {
      // Reading a pipe or a device would block or never end.
      entries.push({ path: input, reason: 'not a regular file (a pipe, socket or device)' });
    } else if (fg.isDynamicPattern(input)) {
      const matches = (await fg(input, { onlyFiles: true, dot: false })).sort();
      if (matches.length === 0) entries.push({ path: input, reason: 'no file matches this pattern' });
      images(matches);
    } else {
      entries.push({ path: input, reason: 'file not found' });
    }
  }
  return { paths: entries.filter((e) => e.reason === undefined).map((e) => e.path), entries };
}

/** Results of the images, with an error entry for every other input, in the order the inputs were given. */
export function inInputOrder<T>(entries: InputEntry[], imageResults: T[], error: (skipped: Skipped) => T): T[] {
  let next = 0;
  return entries.map((e) => (e.reason === undefined ? imageResults[next++] : error({ path: e.path, reason: e.reason })));
}
