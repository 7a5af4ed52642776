import { stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.ts';
import { isWithin, probeWritable, realPathOf } from './reasons.ts';
import { cacheFolderKind } from '../features/cache.ts';
import { featureCacheDir } from '../paths.ts';

export interface TrainOutputs {
  /** The data folder (never written); undefined where the layout lists its files (a labels CSV), so a model beside them is never read as data. */
  data?: string;
  /** The model folder train will write. */
  out: string;
  /** False when `out` is the default (models/<data folder name>), not a flag the user gave. */
  outGiven?: boolean;
  /** The HTML report file, when one is asked for. */
  report?: string;
  /** The feature cache folder; false when caching is off. Default: the standard cache. */
  cacheDir?: string | false;
}

/** `target` is the folder probed; `named` is what the user gave (a file in it, for --report). */
async function requireWritable(target: string, what: string, flag: string, named = target): Promise<void> {
  const probe = await probeWritable(target);
  if (probe.ok) return;
  const where = probe.at === path.resolve(named) || probe.at === path.dirname(path.resolve(named)) ? named : `${named} (in ${probe.at})`;
  throw new UsageError(`cannot write ${what} ${where}: ${probe.reason}; choose another ${flag}`);
}

/**
 * Files a command writes after its work (--report, --csv, --kaggle; undefined ones are not
 * asked for), checked before it: each must not be a folder, and its folder must take a file.
 */
export async function checkOutputFiles(outputs: { file?: string; flag: string }[]): Promise<void> {
  for (const { file, flag } of outputs) {
    if (file === undefined) continue;
    if ((await stat(file).catch(() => undefined))?.isDirectory()) throw new UsageError(`${flag} ${file} is a folder; give a file name`);
    await requireWritable(path.dirname(path.resolve(file)), flag, flag, file);
  }
}

/**
 * What `train` will write, checked before any work, so that a run never computes for minutes
 * to fail at its last step: the model folder and the report can be created, the model folder
 * does not overlap the data (a model inside the data would be read as a class next time; data
 * inside the model folder could be deleted with it), and the cache can be written, or at least
 * read when it already holds features.
 */
export async function checkTrainOutputs(o: TrainOutputs): Promise<void> {
  if (o.data !== undefined) {
    const [data, out] = await Promise.all([realPathOf(o.data), realPathOf(o.out)]);
    const named = o.outGiven === false ? `the default model folder ${o.out} (under the current folder)` : `--out ${o.out}`;
    if (isWithin(out, data)) throw new UsageError(`${named} is inside the data folder ${o.data}: the next run would read the model as images; choose an --out outside it`);
    if (isWithin(data, out)) throw new UsageError(`${named} contains the data folder ${o.data}: choose an --out that does not hold the data`);
  }
  const outInfo = await stat(o.out).catch(() => undefined);
  if (outInfo && !outInfo.isDirectory()) throw new UsageError(`--out ${o.out} is a file, not a folder; choose another --out`);
  await requireWritable(o.out, 'the model folder', '--out');
  await checkOutputFiles([{ file: o.report, flag: '--report' }]);
  if (o.cacheDir !== false) {
    const cache = o.cacheDir ?? featureCacheDir();
    const probe = await probeWritable(cache);
    // A cache that cannot be written but holds features is still worth reading (a shared or
    // read-only copy); an empty one would only make every run compute everything again.
    if (!probe.ok && (await cacheFolderKind(cache)) !== 'cache') {
      throw new UsageError(`cannot write the feature cache ${cache}: ${probe.reason}; choose a writable --cache-dir, or run with --no-cache`);
    }
  }
}
