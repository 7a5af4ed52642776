import { saveBundle, rememberLastModel } from './bundle/save.ts';
import { lastModelFile } from './paths.ts';
import type { TrainResult } from './train.ts';

/** Writes a trained head as a bundle (atomically) and makes it predict's default model. */
export async function saveModel(dir: string, result: Pick<TrainResult, 'head' | 'manifest'>, opts: { remember?: boolean } = {}): Promise<string> {
  await saveBundle(dir, result.head, result.manifest);
  if (opts.remember ?? true) await rememberLastModel(lastModelFile(), dir);
  return dir;
}
