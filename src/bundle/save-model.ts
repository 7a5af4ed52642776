import { saveBundle, rememberLastModel } from './save.ts';
import { FinetuneError } from '../errors.ts';
import { reasonOf } from '../fs/reasons.ts';
import { lastModelFile } from '../paths.ts';
import type { OnProgress } from '../progress.ts';
import type { TrainResult } from '../pipeline/train.ts';

/**
 * Writes a trained head as a bundle (atomically) and makes it predict's default model. The
 * model is what matters: when only the pointer cannot be written, `onProgress` is warned (and
 * without one, it is an error).
 */
export async function saveModel(dir: string, result: Pick<TrainResult, 'head' | 'manifest'> & { backboneOnnx?: Uint8Array }, opts: { remember?: boolean; onProgress?: OnProgress } = {}): Promise<string> {
  await saveBundle(dir, result.head, result.manifest, { backboneOnnx: result.backboneOnnx });
  if (!(opts.remember ?? true)) return dir;
  try {
    await rememberLastModel(lastModelFile(), dir);
  } catch (err) {
    const message = `cannot remember ${dir} as the last model trained (${lastModelFile()}: ${reasonOf(err)}); predict and evaluate need --model ${dir}`;
    if (!opts.onProgress) throw new FinetuneError(message, undefined, { cause: err });
    opts.onProgress({ status: 'warn', task: 'save', message, path: lastModelFile() });
  }
  return dir;
}
