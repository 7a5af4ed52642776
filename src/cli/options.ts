import { InvalidArgumentError, Option, type Command } from 'commander';

/**
 * Flags shared by several commands, declared once. Defaults shown in help come from the
 * library's TRAIN_DEFAULTS (passed in by each command file).
 */
export function int(name: string, min = -Infinity, max = Infinity) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n)) throw new InvalidArgumentError(`${name} needs a whole number, got "${value}"`);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be ${range(min, max)}, got ${value}`);
    return n;
  };
}

/** A whole number ≥ 1 (counts, sizes, threads). */
export const count = (name: string, max = Infinity) => int(name, 1, max);

function range(min: number, max: number): string {
  if (max === Infinity) return `a whole number of at least ${min}`;
  return `a whole number from ${min} to ${max}`;
}

export function float(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} needs a number, got "${value}"`);
    return n;
  };
}

/** A number above 0 (learning rates). */
export function positive(name: string) {
  return (value: string): number => {
    const n = float(name)(value);
    if (!(n > 0)) throw new InvalidArgumentError(`${name} must be above 0, got ${value}`);
    return n;
  };
}

/** A fraction in [0, 1) (validation split, dropout): 1 would leave nothing. */
export function share(name: string) {
  return (value: string): number => {
    const n = float(name)(value);
    if (!(n >= 0 && n < 1)) throw new InvalidArgumentError(`${name} must be at least 0 and below 1, got ${value}`);
    return n;
  };
}

/**
 * An accuracy-like threshold in [0, 1]; `95%` is 0.95. A bare 95 is refused rather than read
 * as a percent: nothing ambiguous is taken silently.
 */
export function fraction(name: string) {
  return (value: string): number => {
    const percent = value.trim().endsWith('%');
    const n = float(name)(percent ? value.trim().slice(0, -1) : value);
    const x = percent ? n / 100 : n;
    if (!(x >= 0 && x <= 1)) {
      const hint = !percent && n > 1 && n <= 100 ? ` (for ${n} percent write ${n / 100} or ${n}%)` : '';
      throw new InvalidArgumentError(`${name} must be between 0 and 1, got ${value}${hint}`);
    }
    return x;
  };
}

/** A loss-like threshold ≥ 0. */
export function threshold(name: string) {
  return (value: string): number => {
    const n = float(name)(value);
    if (!(n >= 0)) throw new InvalidArgumentError(`${name} must be 0 or more, got ${value}`);
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
    .option('--threads <n>', 'CPU threads for the backbone (default: all cores)', count('--threads'))
    .option('--extract-batch-size <n>', 'images per backbone forward pass', count('--extract-batch-size'), defaults.extractBatchSize);
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
