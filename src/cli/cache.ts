import type { Command } from 'commander';
import { formatBytes, UsageError } from '../index.ts';
import { printJson, printResult } from './output.ts';
import { runCommand } from './run.ts';

interface CacheFlags {
  cacheDir?: string;
  json?: boolean;
}

const megabytes = formatBytes;

const CACHE_DIR_HELP = 'feature cache folder (default: $FINETUNE_CACHE or ~/.cache/finetune/features)';

/** Opens the cache of --cache-dir (or the default), runs `use`, and closes it. */
async function withCache<T>(flags: CacheFlags, access: 'read' | 'write', use: (cache: import('../index.ts').FeatureCache) => Promise<T>): Promise<T> {
  const { openFeatureCache, cacheFolderKind, featureCacheDir } = await import('../index.ts');
  const dir = flags.cacheDir ?? featureCacheDir();
  if (access === 'write') {
    // Clearing must never touch a folder of someone else's files, not even to tag it.
    const kind = await cacheFolderKind(dir);
    if (kind === 'other') throw new UsageError(`${dir} is not a finetune feature cache (no CACHEDIR.TAG of finetune, and files of its own): nothing was deleted; check --cache-dir`);
    if (kind !== 'cache') access = 'read';
  }
  const cache = await openFeatureCache(dir, { access });
  try {
    return await use(cache);
  } finally {
    await cache.close();
  }
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('the feature cache: features of images already seen, keyed by backbone, settings and file content');
  cache
    .command('info')
    .description('entries and size, per backbone and settings')
    .option('--cache-dir <dir>', CACHE_DIR_HELP)
    .option('--json', 'print one JSON object')
    .action((flags: CacheFlags) =>
      runCommand(flags, async () => {
        const info = await withCache(flags, 'read', (cache) => cache.info());
        if (flags.json) return printJson(info);
        printResult(`cache     ${info.dir}`);
        printResult(`entries   ${info.entries}, ${megabytes(info.bytes)}`);
        for (const s of info.specs) {
          const spec = s.spec;
          printResult(`  ${s.id}  ${String(s.entries).padStart(7)} entries ${megabytes(s.bytes).padStart(10)}  ${spec.backbone} ${spec.layer} ${spec.pooling} ${spec.inputSize.join('×')} ${spec.preprocess} ${spec.resize}${spec.augment !== 'none' ? ` ${spec.augment}` : ''}`);
        }
      }),
    );
  cache
    .command('clear')
    .description('delete every cached feature')
    .option('--cache-dir <dir>', CACHE_DIR_HELP)
    .option('--json', 'print one JSON object')
    .action((flags: CacheFlags) =>
      runCommand(flags, async () => {
        const before = await withCache(flags, 'write', async (cache) => {
          const info = await cache.info();
          if (cache.writable) await cache.clear();
          return info;
        });
        if (flags.json) return printJson({ cleared: before.entries, bytes: before.bytes, dir: before.dir });
        printResult(`cleared ${before.entries} entries (${megabytes(before.bytes)}) from ${before.dir}`);
      }),
    );
}
