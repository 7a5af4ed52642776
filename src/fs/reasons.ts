import { open, realpath, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

/** What a file-system error code means, in words a user reads in one line. The one place for it. */
const REASONS: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for this file system',
  ENOENT: 'no such file or folder',
  ENOTDIR: 'a file is in the way where a folder is needed',
  EISDIR: 'is a folder, not a file',
  EEXIST: 'already exists',
  EIO: 'input/output error (a failing disk or a network drive that went away)',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'name too long',
  ELOOP: 'too many symbolic links (a loop)',
  EBUSY: 'busy (in use by another program)',
};

/** `err`'s reason in words, e.g. "read-only file system"; the code itself when it has no words here. */
export function reasonOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && REASONS[code]) return REASONS[code];
  return code ?? (err instanceof Error ? err.message : String(err));
}

/** The error code of a file-system error, if it has one. */
export function codeOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** The folder itself when it exists, else its nearest existing ancestor: where creating it would write. */
export async function nearestExisting(dir: string): Promise<string> {
  let at = path.resolve(dir);
  for (;;) {
    const info = await stat(at).catch(() => undefined);
    if (info) return at;
    const up = path.dirname(at);
    if (up === at) return at;
    at = up;
  }
}

/**
 * Whether files can be created in `dir` (or, when it does not exist yet, in the folder that
 * would hold it), found by creating and removing a small probe file: permission bits, a
 * read-only mount and a full disk all show, and root's bypass of permission bits is honest.
 * The probe writes one page, so a disk with no room at all fails here and not after the work.
 * Nothing is left behind; `dir` itself is not created.
 */
export async function probeWritable(dir: string): Promise<{ ok: true } | { ok: false; at: string; reason: string; code?: string }> {
  const at = await nearestExisting(dir);
  const info = await stat(at);
  if (!info.isDirectory()) return { ok: false, at, reason: 'is a file, not a folder', code: 'ENOTDIR' };
  const probe = path.join(at, `.finetune-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  let handle;
  try {
    handle = await open(probe, 'wx');
    await handle.write(Buffer.alloc(4096));
    await handle.sync();
    return { ok: true };
  } catch (err) {
    return { ok: false, at, reason: reasonOf(err), code: codeOf(err) };
  } finally {
    await handle?.close().catch(() => undefined);
    await rm(probe, { force: true }).catch(() => undefined);
  }
}

/** The real path of `p`, also when it does not exist yet (its nearest existing ancestor resolved, the rest appended). */
export async function realPathOf(p: string): Promise<string> {
  const abs = path.resolve(p);
  const existing = await nearestExisting(abs);
  const real = await realpath(existing).catch(() => existing);
  return path.join(real, path.relative(existing, abs));
}

/** True when `inner` is `outer` or lies below it (both absolute). */
export function isWithin(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

