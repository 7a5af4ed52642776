/**
 * torch-vs-finetune: torchvision networks exported with torch.onnx.export, cut at an
 * intermediate module; prints, per network, the largest |finetune − PyTorch| over the
 * module's whole activation map. Needs /usr/bin/python3 with python3-torch/torchvision.
 *
 *   node --import tsx bench/torch-activations.ts [--size 224] [--count 4]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { torchCheck, torchMissing } from '../test/fixtures/torch-reference.ts';

const { values } = parseArgs({ options: { size: { type: 'string', default: '224' }, count: { type: 'string', default: '4' } } });
const missing = torchMissing();
if (missing) {
  console.log(`torch-activations: skipped: ${missing}`);
} else {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-torch-bench-'));
  try {
    for (const [model, module] of [['resnet18', 'layer3'], ['mobilenet_v2', 'features.14'], ['vgg16', 'features.23']]) {
      const check = await torchCheck(dir, { model, module, size: Number(values.size), count: Number(values.count) });
      console.log(JSON.stringify(check));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
