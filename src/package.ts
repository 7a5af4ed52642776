import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

let root: string | undefined;

/** The folder of finetune's package.json, from src/ or from the compiled dist/ alike. */
export function packageRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) || !isFinetune(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('finetune: cannot find its own package.json');
    dir = parent;
  }
  root = dir;
  return dir;
}

function isFinetune(file: string): boolean {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === 'finetune';
  } catch {
    return false;
  }
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}


function versionOf(pkg: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return undefined;
  }
}

/** Versions recorded in every bundle, so a result can be traced to what made it. */
export function packageVersions(): Record<string, string> {
  const out: Record<string, string> = { node: process.versions.node };
  for (const [key, pkg] of [
    ['finetune', '../package.json'],
    ['tfjs', '@tensorflow/tfjs'],
    ['onnxruntime', 'onnxruntime-node'],
    ['sharp', 'sharp'],
  ] as const) {
    const v = pkg.startsWith('.') ? packageVersion() : versionOf(pkg);
    if (v) out[key] = v;
  }
  return out;
}
