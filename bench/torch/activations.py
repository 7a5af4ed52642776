"""A torchvision network exported with torch.onnx.export, and PyTorch's own activations of
one of its modules on given pixels: the reference finetune's ONNX-backbone features are
checked against (test/onnx-torch.test.ts, bench/torch-activations.ts).

  python3 activations.py --model resnet18 --size 64 --images x.bin --count 2 \
      --module layer3 --onnx out.onnx --out acts.bin

x.bin: float32 NHWC, already preprocessed (the same floats finetune feeds). acts.bin:
float32, the module's output in PyTorch's NCHW order. Prints one JSON line.
"""
import argparse
import json

import numpy as np
import torch
import torchvision

p = argparse.ArgumentParser()
p.add_argument('--model', default='resnet18')
p.add_argument('--size', type=int, default=224)
p.add_argument('--images', required=True)
p.add_argument('--count', type=int, required=True)
p.add_argument('--module', required=True)
p.add_argument('--onnx', required=True)
p.add_argument('--out', required=True)
p.add_argument('--seed', type=int, default=0)
a = p.parse_args()

torch.manual_seed(a.seed)
model = getattr(torchvision.models, a.model)()
# Random BatchNorm statistics and affine parameters, so that every BN really changes values.
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
model.eval()

x = np.fromfile(a.images, dtype=np.float32).reshape(a.count, a.size, a.size, 3)
x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
captured = {}
module = dict(model.named_modules())[a.module]
module.register_forward_hook(lambda _m, _i, out: captured.__setitem__('out', out.detach()))
with torch.no_grad():
    model(x)
acts = captured['out'].numpy().astype(np.float32)
acts.tofile(a.out)
torch.onnx.export(model, torch.zeros(1, 3, a.size, a.size), a.onnx, input_names=['input'], output_names=['logits'],
                  dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}}, opset_version=13)
print(json.dumps({'model': a.model, 'module': a.module, 'shape': list(acts.shape), 'torch': torch.__version__, 'torchvision': torchvision.__version__}))
