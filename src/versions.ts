import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { packageVersion } from './package-root.ts';

const require = createRequire(import.meta.url);

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
