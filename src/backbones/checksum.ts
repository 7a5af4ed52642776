import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../fs/atomic.ts';
import { finetuneHome } from '../paths.ts';

/**
 * sha256 of a weights file, remembered by (real path, size, modification time) in
 * $FINETUNE_HOME/checksums.json: VGG16's 553 MB with-top file takes ≈ 2 s to hash, on every
 * predict otherwise. A changed file changes its size or mtime and is hashed again.
 */
export async function weightsChecksum(file: string): Promise<string> {
  const info = await stat(file);
  const key = `${await realpath(file)}\t${info.size}\t${info.mtimeMs}`;
  const memo = path.join(finetuneHome(), 'checksums.json');
  const known = await readFile(memo, 'utf8').then((text) => JSON.parse(text) as Record<string, string>, () => ({}) as Record<string, string>);
  if (typeof known[key] === 'string' && /^[0-9a-f]{64}$/.test(known[key])) return known[key];
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  const digest = hash.digest('hex');
  // Only a speed-up: a read-only home or a race with another process must not fail the load.
  try {
    await mkdir(path.dirname(memo), { recursive: true });
    await writeFileAtomic(memo, JSON.stringify({ ...known, [key]: digest }));
  } catch {
    // ignored: the next load hashes again
  }
  return digest;
}
