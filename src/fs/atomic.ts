import { randomBytes } from 'node:crypto';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Writes and fsyncs a file, so that what a later rename publishes is on disk. */
export async function writeDurably(file: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a rename inside `dir` durable. Best effort: some filesystems refuse fsync on a directory, and the rename is atomic anyway. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // best effort, as above
  }
}

/** A temporary name beside `file` that no other process or call can pick. */
export function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Replaces `file` by a temp file and a rename, so a reader sees the old content or the new one,
 * never half of either; `durable` also fsyncs the file and its folder (a kill or power cut after
 * the call returns keeps the new content). The temp file is removed when anything fails.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, opts: { durable?: boolean } = {}): Promise<void> {
  const tmp = tempNameFor(file);
  try {
    if (opts.durable) await writeDurably(tmp, data);
    else await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  if (opts.durable) await syncDir(path.dirname(file));
}
