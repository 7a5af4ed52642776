import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { torchCheck, torchMissing } from './fixtures/torch-reference.ts';

const missing = torchMissing();

test('a torchvision ResNet18 from torch.onnx.export, cut at layer3: finetune gives PyTorch\'s own activations within 1e-4', { skip: missing && `skipped: ${missing}` }, async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'finetune-torch-'));
  try {
    const check = await torchCheck(dir, { model: 'resnet18', module: 'layer3', size: 64, count: 2 });
    assert.equal(check.value, '/layer3/layer3.1/relu_1/Relu_output_0');
    assert.deepEqual(check.shape, [2, 256, 4, 4]);
    assert.ok(check.maxAbsActivation > 0.1, `activations too small to tell anything: ${check.maxAbsActivation}`);
    assert.ok(check.maxAbsDifference <= 1e-4, `max |finetune − torch| ${check.maxAbsDifference} (largest activation ${check.maxAbsActivation})`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
