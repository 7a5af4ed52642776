import { InvalidArgumentError, Option, type Command } from 'commander';

/**
 * Flags shared by several commands, declared once. Defaults shown in help come from the
 * library's TRAIN_DEFAULTS (passed in by each command file).
 */
export function int(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} needs a whole number, got "${value}"`);
    return n;
  };
}

export function float(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} needs a number, got "${value}"`);
    return n;
  };
}

export const ENGINE_CHOICES = ['auto', 'onnx', 'tfjs'];
export const BACKEND_CHOICES = ['auto', 'node-gpu', 'node', 'wasm', 'cpu'];

export function addEngineOptions(cmd: Command, defaults: { engine: string; backend: string; extractBatchSize: number }): Command {
  return cmd
    .addOption(new Option('--engine <engine>', 'engine for the frozen backbone and the head (auto: onnx; the backbone on tfjs-node-gpu where it runs on a GPU)').choices(ENGINE_CHOICES).default(defaults.engine))
    .addOption(new Option('--backend <backend>', 'tfjs backend (the backbone and the head on the tfjs engine)').choices(BACKEND_CHOICES).default(defaults.backend))
    .addOption(new Option('--device <device>', 'run the onnx engine on cpu or gpu (CUDA)').choices(['cpu', 'gpu']).default('cpu'))
    .option('--threads <n>', 'CPU threads for the backbone (default: all cores)', int('--threads'))
    .option('--extract-batch-size <n>', 'images per backbone forward pass', int('--extract-batch-size'), defaults.extractBatchSize);
}

export function addCacheOptions(cmd: Command): Command {
  return cmd
    .option('--cache-dir <dir>', 'feature cache folder (default: $FINETUNE_CACHE or ~/.cache/finetune/features)')
    .option('--no-cache', 'do not read or write the feature cache')
    .option('--no-download', 'never download missing backbone weights (FINETUNE_OFFLINE=1 does the same)');
}

export interface EngineFlags {
  engine: 'auto' | 'onnx' | 'tfjs';
  backend: 'auto' | 'node-gpu' | 'node' | 'wasm' | 'cpu';
  device: 'cpu' | 'gpu';
  threads?: number;
  extractBatchSize: number;
  cache: boolean;
  cacheDir?: string;
  download: boolean;
}

/** Flags → the library's engine and cache options (one place, for every command). */
export function engineOptions(flags: EngineFlags) {
  return {
    engine: flags.engine,
    backend: flags.backend,
    device: flags.device,
    threads: flags.threads,
    extractBatchSize: flags.extractBatchSize,
    cacheDir: flags.cache === false ? (false as const) : flags.cacheDir,
    download: flags.download,
  };
}
