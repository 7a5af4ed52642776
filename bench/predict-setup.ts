import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { VGG16_WEIGHTS, vgg16 } from '../src/backbones/vgg16.ts';
import { initBackend } from '../src/engines/backend.ts';
import { writeKerasH5 } from '../test/fixtures/keras-h5-writer.ts';
import { log } from './timing.ts';

/**
 * Random VGG16 weights in Keras layout where the registry looks for them
 * ($FINETUNE_HOME/models), and — without ../shared — a small tfjs backbone folder standing in
 * for darknet-tiny.
 */
export async function run(opts: { home: string; tinyFolder?: string }): Promise<{ vggWeights: string; tinyFolder?: string }> {
  await initBackend('cpu');
  const dir = path.join(opts.home, 'models');
  await mkdir(dir, { recursive: true });
  const vggWeights = path.join(dir, VGG16_WEIGHTS.notop.file);
  const model = vgg16({ randomSeed: 1 });
  await writeKerasH5(model, vggWeights, { style: 'slash' });
  model.dispose();
  log(`wrote random VGG16 weights to ${vggWeights}`);
  if (opts.tinyFolder) {
    const { saveTfjsFolder } = await import('../test/fixtures/tiny-backbone.ts');
    const { smallNet } = await import('./small-net.ts');
    const tiny = smallNet();
    await saveTfjsFolder(tiny, opts.tinyFolder);
    tiny.dispose();
  }
  return { vggWeights, tinyFolder: opts.tinyFolder };
}
