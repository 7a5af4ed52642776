import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { download, OfflineError } from './backbones/download.ts';
import { extractZip } from './data/unzip.ts';
import { UsageError } from './errors.ts';
import { finetuneHome } from './paths.ts';
import type { OnProgress } from './progress.ts';
import { offlineByEnv, sourceUrl } from './weights-store.ts';

/** Public data sets `finetune data pull` knows. */
export const DATASETS = Object.freeze({
  dogscats: {
    file: 'dogscats.zip',
    url: 'http://files.fast.ai/data/dogscats.zip',
    bytes: 857_214_334,
    layout: 'DIR/dogscats/{train,valid}/{cats,dogs}/*.jpg, test1/*.jpg, sample/…',
  },
});

export interface PullDatasetResult {
  name: string;
  path: string;
  files: number;
  bytes: number;
}

/** Downloads (resuming) into $FINETUNE_HOME/downloads, then unpacks to DIR/<name> atomically. */
export async function pullDataset(name: string, opts: { dir?: string; onProgress?: OnProgress; signal?: AbortSignal; offline?: boolean } = {}): Promise<PullDatasetResult> {
  const entry = DATASETS[name as keyof typeof DATASETS];
  if (!entry) throw new UsageError(`unknown data set "${name}": use one of ${Object.keys(DATASETS).join(', ')}`);
  const dest = path.join(opts.dir ?? 'data', name);
  if (await stat(dest).catch(() => null)) throw new UsageError(`${dest} already exists: remove it or choose another --dir`);
  const zip = path.join(finetuneHome(), 'downloads', entry.file);
  await mkdir(path.dirname(zip), { recursive: true });
  try {
    await download(sourceUrl(entry), zip, { onProgress: opts.onProgress, signal: opts.signal, offline: opts.offline ?? offlineByEnv() });
  } catch (err) {
    if (!(err instanceof OfflineError)) throw err;
    throw new OfflineError(`${err.message}; or lay the images out by hand as ${entry.layout.replace('DIR', opts.dir ?? 'data')}`);
  }
  // The fast.ai archive holds one top folder (dogscats/); its contents become DIR/<name>.
  const { files, bytes } = await extractZip(zip, dest, { onProgress: opts.onProgress, signal: opts.signal, stripComponents: 1 });
  return { name, path: dest, files, bytes };
}
