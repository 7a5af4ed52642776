import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { download, hashFile, OfflineError } from '../net/download.ts';
import { extractZip } from './unzip.ts';
import { ModelFileError, UsageError } from '../errors.ts';
import { reasonOf } from '../fs/reasons.ts';
import { finetuneHome } from '../paths.ts';
import type { OnProgress } from '../progress.ts';
import { offlineByEnv, sourceUrl } from '../backbones/pull-targets.ts';

/** Public data sets `finetune data pull` knows. */
export const DATASETS = Object.freeze({
  dogscats: {
    file: 'dogscats.zip',
    url: 'http://files.fast.ai/data/dogscats.zip',
    bytes: 857_214_334,
    /** fast.ai publishes no checksum of this file: a placed copy is checked by its size. */
    md5: undefined as string | undefined,
    layout: 'DIR/dogscats/{train,valid}/{cats,dogs}/*.jpg, test1/*.jpg, sample/…',
  },
});

export interface PullDatasetResult {
  name: string;
  path: string;
  files: number;
  bytes: number;
}

export interface PullDatasetOptions {
  dir?: string;
  /** A zip of the data set from anywhere, used instead of downloading (checked, with warnings). */
  from?: string;
  /** What the zip must be; default the published size (and md5, where one is published). */
  expect?: { bytes?: number; md5?: string };
  onProgress?: OnProgress;
  signal?: AbortSignal;
  offline?: boolean;
}

/** How `zip` differs from the published file, or undefined when it matches; says what was checked. */
async function compareWithPublished(zip: string, file: string, expect: { bytes?: number; md5?: string }): Promise<{ problem?: string; checked: string }> {
  const size = (await stat(zip)).size;
  if (expect.bytes !== undefined && size !== expect.bytes) return { problem: `${zip} is ${size} bytes, but the published ${file} is ${expect.bytes} bytes`, checked: 'size' };
  if (!expect.md5) return { checked: 'size' };
  const { md5 } = await hashFile(zip);
  if (md5 !== expect.md5.toLowerCase()) return { problem: `${zip}: its md5 ${md5} is not the published ${expect.md5}`, checked: 'size and md5' };
  return { checked: `size and md5 ${md5}` };
}

/**
 * Unpacks a data set to DIR/<name> atomically, from the first of: `from`, the zip already at
 * $FINETUNE_HOME/downloads/<file> (checked against the published size and md5; a mismatch
 * there is an error, since it is most likely a broken copy), or a download (resuming).
 */
export async function pullDataset(name: string, opts: PullDatasetOptions = {}): Promise<PullDatasetResult> {
  const entry = DATASETS[name as keyof typeof DATASETS];
  if (!entry) throw new UsageError(`unknown data set "${name}": use one of ${Object.keys(DATASETS).join(', ')}`);
  const expect = opts.expect ?? { bytes: entry.bytes, md5: entry.md5 };
  const dest = path.join(opts.dir ?? 'data', name);
  if (await stat(dest).catch(() => null)) throw new UsageError(`${dest} already exists: remove it or choose another --dir`);
  const placed = path.join(finetuneHome(), 'downloads', entry.file);
  const warn = (message: string) => opts.onProgress?.({ status: 'warn', task: 'data', message });
  let zip: string;
  if (opts.from) {
    const info = await stat(opts.from).catch((err: unknown) => {
      throw new UsageError(`--from ${opts.from}: ${reasonOf(err)}`);
    });
    if (!info.isFile()) throw new UsageError(`--from ${opts.from}: not a file; give the path of ${entry.file}`);
    zip = opts.from;
    // The user chose this file: a re-packed copy may differ from the published bytes and still be right.
    const { problem, checked } = await compareWithPublished(zip, entry.file, expect);
    if (problem) warn(`${problem.replace(/, but the published .* is (\d+) bytes$/, ', not the published $1')}; unpacking it anyway, as --from asks`);
    else opts.onProgress?.({ status: 'done', task: 'data', message: `${zip}: ${checked} as published` });
    if (!problem && !expect.md5) warn(`no md5 is published for ${entry.file}: ${zip} was checked by its size only`);
  } else if (await stat(placed).catch(() => null)) {
    zip = placed;
    const { problem, checked } = await compareWithPublished(zip, entry.file, expect);
    if (problem) throw new ModelFileError(`${problem}: an incomplete or different file; delete it to download again, or use it anyway with --from ${zip}`);
    opts.onProgress?.({ status: 'done', task: 'data', message: `${zip}: ${checked} as published; not downloading` });
    if (!expect.md5) warn(`no md5 is published for ${entry.file}: ${zip} was checked by its size only`);
  } else {
    zip = placed;
    await mkdir(path.dirname(zip), { recursive: true });
    try {
      await download(sourceUrl(entry), zip, { md5: expect.md5, onProgress: opts.onProgress, signal: opts.signal, offline: opts.offline ?? offlineByEnv() });
    } catch (err) {
      if (!(err instanceof OfflineError)) throw err;
      throw new OfflineError(`${err.message}, or pass --from FILE; or lay the images out by hand as ${entry.layout.replace('DIR', opts.dir ?? 'data')}`);
    }
  }
  // The fast.ai archive holds one top folder (dogscats/); its contents become DIR/<name>.
  const { files, bytes } = await extractZip(zip, dest, { onProgress: opts.onProgress, signal: opts.signal, stripComponents: 1 });
  return { name, path: dest, files, bytes };
}
