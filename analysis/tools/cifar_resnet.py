"""The CIFAR option-A ResNet (akamaster/pytorch_resnet_cifar10 names) in python3-torch, and the image
pipeline hessgap uses for CIFAR JPEGs: the oracle side of the ResNet-20 fixture and of the benchmark.
Written for hessgap (not copied); the parameter names match the embedded resnet20.safetensors.
"""
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from . import safetensors_np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.subsample = stride != 1 or cin != cout
        self.pad = cout // 4

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = x
        if self.subsample:  # option A: drop every other pixel, zero-pad the new channels
            s = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(y + s)


class CifarResNet(nn.Module):
    def __init__(self, depth, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths, cin = (16, 32, 64), 16
        for stage, w in enumerate(widths):
            blocks = []
            for b in range(n):
                blocks.append(Block(cin, w, 2 if (b == 0 and stage > 0) else 1))
                cin = w
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.avg_pool2d(x, x.size(3))
        return self.linear(x.flatten(1))


def hessian_layers(model):
    """SPEC §3.4: conv weights whose module name contains "conv" (no downsample), then the head."""
    names = [f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, nn.Conv2d) and "conv" in m]
    return names + ["linear.weight"]


def load_resnet(path, depth=20, dtype=torch.float32):
    """A CifarResNet with the weights of a safetensors file (strict), in eval mode."""
    model = CifarResNet(depth)
    tensors, _ = safetensors_np.read(path)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise KeyError(f"{path}: missing {missing}, unexpected {unexpected}")
    return model.to(dtype).eval()


def image_tensor(path, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Pillow decode → RGB → ToTensor → Normalize, float32 [3,H,W] (hessgap's eval pipeline, no resize)."""
    img = Image.open(path).convert("RGB")
    t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).to(torch.float32).div(255)
    return (t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def image_folder(root, per_class=None):
    """(path, label) pairs in torchvision ImageFolder order: classes sorted, files sorted."""
    out = []
    for label, cls in enumerate(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))):
        files = sorted(os.listdir(os.path.join(root, cls)))
        out += [(os.path.join(root, cls, f), label) for f in (files[:per_class] if per_class else files)]
    return out
