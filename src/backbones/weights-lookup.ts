import { existsSync, statSync } from 'node:fs';
import { formatBytes } from '../fs/sizes.ts';
import path from 'node:path';
import { ModelFileError, UsageError } from '../errors.ts';
import { kerasModelsDir, modelsDir } from '../paths.ts';
import type { RegistryEntry, WeightsFile } from './types.ts';

/**
 * Where a registry backbone's weights are looked for, in order: --weights PATH, the finetune
 * cache ($FINETUNE_HOME/models), Keras's cache (~/.keras/models). A with-top file also serves
 * a no-top network (extra layers are ignored).
 */
export function weightsCandidates(file: WeightsFile): string[] {
  return [path.join(modelsDir(), file.file), path.join(kerasModelsDir(), file.file)];
}

export function findWeights(entry: RegistryEntry, needTop: boolean, explicit?: string): string {
  if (explicit) {
    const info = existsSync(explicit) ? statSync(explicit) : undefined;
    if (!info) throw new UsageError(`--weights ${explicit} does not exist`);
    if (!info.isFile()) throw new UsageError(`--weights ${explicit} is a folder; give the .h5 weights file`);
    return explicit;
  }
  const files = needTop ? [entry.weights.full!] : [entry.weights.notop, ...(entry.weights.full ? [entry.weights.full] : [])];
  for (const file of files) {
    for (const candidate of weightsCandidates(file)) if (existsSync(candidate)) return candidate;
  }
  const want = files[0];
  throw new ModelFileError(missingWeightsMessage(entry, want));
}

export function missingWeightsMessage(entry: RegistryEntry, want: WeightsFile): string {
  const [home, keras] = weightsCandidates(want);
  const pull = want === entry.weights.full ? `${entry.name}-full` : entry.name;
  return (
    `${entry.name} weights not found: put ${want.file} (${formatBytes(want.bytes)}, md5 ${want.md5 ?? 'unpublished'}) at ${home} or ${keras}, ` +
    `or pass --weights PATH; it is published at ${want.url} (finetune models pull ${pull})`
  );
}
