import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { ROOT, SHARED, TORCH_PEER, sharedHas } from './paths.ts';
import { spawnTimed } from './spawn-timed.ts';
import { log } from './timing.ts';

export interface TorchResult {
  python: string;
  version: string;
  threads: number;
  batch: number;
  imagesPerSecond: number;
  runs: number[];
}

/**
 * The first Python that imports torch and torchvision: $BENCH_PYTHON, then python3 on PATH
 * (often a pyenv shim without Debian's packages), then the system's /usr/bin/python3.
 */
export function findTorchPython(): string | undefined {
  const candidates = [process.env.BENCH_PYTHON, 'python3', '/usr/bin/python3', 'python'].filter((c): c is string => !!c);
  for (const python of new Set(candidates)) {
    const probe = spawnSync(python, ['-c', 'import torch, torchvision'], { stdio: 'ignore', timeout: 120_000 });
    if (probe.status === 0) return python;
  }
  return undefined;
}

/** ../shared/peers/torch_vgg16.py: VGG16 conv base in PyTorch, same machine, same run. Returns a reason string when skipped. */
export async function benchTorch(opts: { batch: number; runs: number }): Promise<TorchResult | string> {
  if (!sharedHas(TORCH_PEER)) return 'skipped: ../shared/peers/torch_vgg16.py absent';
  const python = findTorchPython();
  if (!python) return "skipped: no python here imports torch and torchvision (apt-get install python3-torch python3-torchvision; or set BENCH_PYTHON)";
  const threads = os.availableParallelism();
  const args = [TORCH_PEER, '--threads', String(threads), '--batch', String(opts.batch), '--runs', String(opts.runs)];
  const r = await spawnTimed(python, args, { cwd: ROOT, timeoutS: 900 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0) throw new Error(`${python} ${args.join(' ')} exited with ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
  const json = JSON.parse(line) as { version: string; threads: number; batch: number; images_per_s: number; runs: number[] };
  log(`PyTorch ${json.version} batch ${json.batch}: ${json.images_per_s.toFixed(3)} images/s (${python})`);
  return { python, version: json.version, threads: json.threads, batch: json.batch, imagesPerSecond: json.images_per_s, runs: json.runs };
}

export interface TorchFineTuneResult {
  imagesPerSecond: number;
  batch: number;
  threads: number;
  forwardGflopPerImage: number;
  steps: number[];
}

/** ../shared/peers/torch_finetune.py: one whole-network fine-tuning step in PyTorch, same machine, same run. */
export async function benchTorchFineTune(opts: { model: 'vgg16' | 'mobilenet_v2'; batch: number; steps: number }): Promise<TorchFineTuneResult | string> {
  const script = path.join(SHARED, 'peers', 'torch_finetune.py');
  if (!sharedHas(script)) return 'skipped: ../shared/peers/torch_finetune.py absent';
  const python = findTorchPython();
  if (!python) return 'skipped: no python here imports torch and torchvision (apt-get install python3-torch python3-torchvision; or set BENCH_PYTHON)';
  const args = [script, '--model', opts.model, '--threads', String(os.availableParallelism()), '--batch', String(opts.batch), '--steps', String(opts.steps)];
  const r = await spawnTimed(python, args, { cwd: ROOT, timeoutS: 900 });
  if (r.code !== 0) throw new Error(`${python} ${args.join(' ')} exited with ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
  const json = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { images_per_s: number; batch: number; threads: number; forward_gflop_per_image: number; steps: number[] };
  log(`PyTorch ${opts.model} fine-tuning step, batch ${json.batch}: ${json.images_per_s.toFixed(3)} images/s`);
  return { imagesPerSecond: json.images_per_s, batch: json.batch, threads: json.threads, forwardGflopPerImage: json.forward_gflop_per_image, steps: json.steps };
}
