import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.ts';
import { reasonOf } from '../fs/reasons.ts';

/** Extensions sharp decodes; anything else is skipped and counted. */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.jfif', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

/** Names that operating systems leave behind; skipped without a word. */
const SILENT = new Set(['thumbs.db', 'desktop.ini', '.ds_store']);

export interface Skipped {
  path: string;
  reason: string;
}

export interface Listing {
  images: string[];
  skipped: Skipped[];
}

export function isImagePath(file: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(file).toLowerCase());
}

function isSilent(name: string): boolean {
  return name.startsWith('.') || SILENT.has(name.toLowerCase());
}

export interface ListOptions {
  recursive?: boolean;
  /**
   * A folder that cannot be listed: 'error' (default; in a data set its images would silently
   * go missing, or a whole class) or 'skip' (listed in `skipped`, for loose inputs to predict).
   */
  unreadableFolders?: 'error' | 'skip';
}

/** A folder of the data that cannot be listed: one line naming it and why, exit 2. */
export function unreadableFolderError(dir: string, err: unknown): UsageError {
  return new UsageError(`cannot read the folder ${dir}: ${reasonOf(err)}; make it readable (chmod) or move it out of the data`, { cause: err });
}

/**
 * Image files below `dir`, sorted. Symbolic links are followed once: a link back to a folder
 * already visited (a loop) is skipped and reported.
 */
export async function listImages(dir: string, opts: ListOptions = {}): Promise<Listing> {
  const listing: Listing = { images: [], skipped: [] };
  const seen = new Set<string>();
  await walk(dir, { recursive: opts.recursive ?? true, unreadableFolders: opts.unreadableFolders ?? 'error' }, seen, listing);
  listing.images.sort();
  return listing;
}

async function walk(dir: string, opts: Required<ListOptions>, seen: Set<string>, out: Listing): Promise<void> {
  const real = await realpath(dir);
  if (seen.has(real)) {
    out.skipped.push({ path: dir, reason: 'symbolic link loop' });
    return;
  }
  seen.add(real);
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (opts.unreadableFolders === 'error') throw unreadableFolderError(dir, err);
    out.skipped.push({ path: dir, reason: `cannot read folder (${(err as NodeJS.ErrnoException).code ?? err})` });
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of entries) {
    if (isSilent(entry.name)) continue;
    const full = path.join(dir, entry.name);
    let isDir = entry.isDirectory();
    let isFile = entry.isFile();
    if (entry.isSymbolicLink()) {
      try {
        const target = await stat(full);
        isDir = target.isDirectory();
        isFile = target.isFile();
      } catch {
        out.skipped.push({ path: full, reason: 'broken or looping symbolic link' });
        continue;
      }
    }
    if (isDir) {
      if (opts.recursive) await walk(full, opts, seen, out);
      continue;
    }
    if (!isFile) {
      // Reading a pipe or a device would block or never end.
      out.skipped.push({ path: full, reason: 'not a regular file (a pipe, socket or device)' });
      continue;
    }
    if (isImagePath(entry.name)) out.images.push(full);
    else out.skipped.push({ path: full, reason: `not an image file (${path.extname(entry.name) || 'no extension'})` });
  }
}

/** Immediate sub-folders (following links), sorted, hidden ones left out. */
export async function listSubfolders(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'ENOENT' ? err : unreadableFolderError(dir, err);
  });
  const folders: string[] = [];
  for (const entry of entries) {
    if (isSilent(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory() || (entry.isSymbolicLink() && (await stat(full).catch(() => null))?.isDirectory())) {
      folders.push(entry.name);
    }
  }
  return folders.sort();
}
