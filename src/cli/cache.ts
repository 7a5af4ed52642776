import type { Command } from 'commander';
import { printJson, printResult } from './output.ts';
import { runCommand } from './run.ts';

interface CacheFlags {
  cacheDir?: string;
  json?: boolean;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('the feature cache: features of images already seen, keyed by backbone, settings and file content');
  cache
    .command('info')
    .description('entries and size, per backbone and settings')
    .option('--cache-dir <dir>', 'feature cache folder (default: $FINETUNE_CACHE or ~/.cache/finetune/features)')
    .option('--json', 'print one JSON object')
    .action((flags: CacheFlags) =>
      runCommand(flags, async () => {
        const { FeatureCache } = await import('../features/cache.ts');
        const { featureCacheDir } = await import('../paths.ts');
        const store = await FeatureCache.open(flags.cacheDir ?? featureCacheDir());
        const info = await store.info();
        await store.close();
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
    .option('--cache-dir <dir>', 'feature cache folder (default: $FINETUNE_CACHE or ~/.cache/finetune/features)')
    .option('--json', 'print one JSON object')
    .action((flags: CacheFlags) =>
      runCommand(flags, async () => {
        const { FeatureCache } = await import('../features/cache.ts');
        const { featureCacheDir } = await import('../paths.ts');
        const store = await FeatureCache.open(flags.cacheDir ?? featureCacheDir());
        const before = await store.info();
        await store.clear();
        await store.close();
        if (flags.json) return printJson({ cleared: before.entries, bytes: before.bytes, dir: before.dir });
        printResult(`cleared ${before.entries} entries (${megabytes(before.bytes)}) from ${before.dir}`);
      }),
    );
}
