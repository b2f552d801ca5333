#!/usr/bin/python3
"""torchvision 0.14 oracle for the training transform (src/data/train_transform.h). Never on hessgap's run path.

torchvision's own RandomResizedCrop.get_params and RandomHorizontalFlip run unchanged, with the `torch`
name of torchvision.transforms.transforms replaced by a shim that hands out given uniforms u[0..22]
instead of torch's generator (attempt k: u[2k] area scale, u[2k+1] log ratio; u[20] top, u[21] left,
u[22] flip), computed in float64 as hessgap does. Everything else (PIL crop, resize, flip, ToTensor,
Normalize) is torchvision's real code.

  train_transform_oracle.py params CASES.json
      CASES: [{width, height, u: [23 floats], scale?, ratio?, p?}] -> prints [{top,left,height,width,flip}]
  train_transform_oracle.py transform CASES.json OUT_DIR
      CASES: [{path, size, u}] -> the float32 [3,size,size] tensor of each, raw little-endian, to
      OUT_DIR/<k>.f32; prints [{top,left,height,width,flip,file}]
  train_transform_oracle.py make-goldens ASSETS DIR
      writes DIR/train_transform.json (+ .u8.gz / .f32.gz), the draws taken from a Python port of
      src/util/rng (make_key(seed, kAugment, epoch, id), uniform)

Exit code 3 means a module is missing (the C++ test then skips).
"""
import gzip
import json
import os
import sys

try:
    import numpy as np
    import torch
    import torchvision
    import torchvision.transforms as T
    import torchvision.transforms.transforms as TT
    from PIL import Image
except ImportError as e:  # pragma: no cover
    print(f"missing module: {e}", file=sys.stderr)
    sys.exit(3)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DRAW_TOP, DRAW_LEFT, DRAW_FLIP = 20, 21, 22


class _Draw:
    def __init__(self, shim):
        self.shim = shim

    def uniform_(self, lo, hi):
        u = self.shim.take_uniform()
        lo, hi = float(lo), float(hi)
        return torch.tensor([lo + u * (hi - lo)], dtype=torch.float64)


class TorchShim:
    """Stands in for `torch` inside torchvision.transforms.transforms; unknown names go to torch."""

    def __init__(self, u):
        self.u = list(u)
        self.n_uniform = 0
        self.n_randint = 0

    def __getattr__(self, name):
        return getattr(torch, name)

    def take_uniform(self):
        assert self.n_uniform < 2 * 10, "more than 10 attempts"
        v = self.u[self.n_uniform]
        self.n_uniform += 1
        return v

    def empty(self, *size, **kw):
        return _Draw(self)

    def tensor(self, data, **kw):  # torch.tensor(ratio): keep the bounds in float64
        return torch.tensor(data, dtype=torch.float64)

    def randint(self, low, high, size=None, **kw):
        assert low == 0 and self.n_randint < 2
        n = int(high)
        v = min(int(self.u[DRAW_TOP + self.n_randint] * n), n - 1)
        self.n_randint += 1
        return torch.tensor([v])

    def rand(self, *size, **kw):
        return torch.tensor([self.u[DRAW_FLIP]], dtype=torch.float64)


def with_draws(u, fn):
    shim = TorchShim(u)
    saved = TT.torch
    TT.torch = shim
    try:
        return fn()
    finally:
        TT.torch = saved


def params_of(width, height, u, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), p=0.5):
    img = Image.new("RGB", (width, height))
    i, j, h, w = with_draws(u, lambda: T.RandomResizedCrop.get_params(img, list(scale), list(ratio)))
    # The flip decision as RandomHorizontalFlip.forward takes it (through the shim's rand), read off a probe.
    probe = Image.new("RGB", (2, 1))
    probe.putpixel((0, 0), (255, 0, 0))
    flipped = with_draws(u, lambda: T.RandomHorizontalFlip(p)(probe)).getpixel((0, 0)) != (255, 0, 0)
    return {"top": i, "left": j, "height": h, "width": w, "flip": flipped}


def pipeline(size):
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def geometry(size):
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()])


def cmd_params(cases_path):
    cases = json.load(open(cases_path))
    out = [params_of(c["width"], c["height"], c["u"], c.get("scale", (0.08, 1.0)),
                     c.get("ratio", (3.0 / 4.0, 4.0 / 3.0)), c.get("p", 0.5)) for c in cases]
    print(json.dumps(out))


def cmd_transform(cases_path, out_dir):
    cases = json.load(open(cases_path))
    out = []
    for k, c in enumerate(cases):
        im = Image.open(c["path"]).convert("RGB")
        t = with_draws(c["u"], lambda: pipeline(c["size"])(im))
        name = f"{k}.f32"
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(t.numpy().astype("<f4").tobytes())
        rec = params_of(im.size[0], im.size[1], c["u"])
        rec["file"] = name
        out.append(rec)
    print(json.dumps(out))


# ---- a port of src/util/rng (for the goldens only) --------------------------------------------

M64 = (1 << 64) - 1
STREAM_AUGMENT = 4


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def make_key(seed, stream, a=0, b=0, c=0):
    k = mix64(seed & M64)
    k = mix64(k ^ stream)
    k = mix64(k ^ (a & M64))
    k = mix64(k ^ ((b + 0x632BE59BD9B4E019) & M64))
    k = mix64(k ^ ((c + 0x8CB92BA72F3D8DD7) & M64))
    return k


def uniform(key, i):
    bits = mix64(key ^ mix64((i + 0x9E3779B97F4A7C15) & M64))
    return float(bits >> 11) * (1.0 / 9007199254740992.0)


def augment_draws(seed, epoch, sample_id):
    key = make_key(seed, STREAM_AUGMENT, epoch, sample_id)
    return [uniform(key, i) for i in range(23)]


# Goldens: (name, source, size, seed, epoch, sample id, store the float32 tensor). The CIFAR images are
# 32x32 (upsampled, the reference's CIFAR-10 path); rect.jpg is 75x50 (down- and upsampled crops).
GOLDEN_CASES = [
    ("cifar_s96_e1", "assets:cifar10-test-100/airplane/0000.jpg", 96, 0, 1, 0, False),
    ("cifar_s96_e2", "assets:cifar10-test-100/airplane/0000.jpg", 96, 0, 2, 0, False),
    ("cifar_s96_id7", "assets:cifar10-test-100/cat/0003.jpg", 96, 123, 1, 7, False),
    ("rect_s24", "fixtures:rect.jpg", 24, 5, 3, 42, True),
    ("rect_s40", "fixtures:rect.jpg", 40, 5, 4, 42, False),
    ("rect_s64", "fixtures:rect.jpg", 64, 9, 0, 1000, False),
]


def cmd_make_goldens(assets, out):
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    os.makedirs(out, exist_ok=True)
    manifest = {"generated_by": "tests/unit/data/train_transform_oracle.py make-goldens (do not edit)",
                "torch": torch.__version__, "torchvision": torchvision.__version__,
                "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "cases": []}
    for name, src, size, seed, epoch, sid, with_tensor in GOLDEN_CASES:
        root, rel = src.split(":", 1)
        im = Image.open(os.path.join(assets if root == "assets" else fixtures, rel)).convert("RGB")
        u = augment_draws(seed, epoch, sid)
        out_im = with_draws(u, lambda: geometry(size)(im))
        case = {"name": name, "source": src, "size": size, "seed": seed, "epoch": epoch, "id": sid, "u": u,
                "params": params_of(im.size[0], im.size[1], u), "u8": name + ".u8.gz"}
        with gzip.GzipFile(os.path.join(out, case["u8"]), "wb", mtime=0) as f:
            f.write(np.asarray(out_im, dtype=np.uint8).tobytes())
        if with_tensor:
            t = with_draws(u, lambda: pipeline(size)(im))
            case["f32"] = name + ".f32.gz"
            with gzip.GzipFile(os.path.join(out, case["f32"]), "wb", mtime=0) as f:
                f.write(t.numpy().astype("<f4").tobytes())
        manifest["cases"].append(case)
    with open(os.path.join(out, "train_transform.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def main(argv):
    cmd = argv[1]
    if cmd == "params":
        cmd_params(argv[2])
    elif cmd == "transform":
        cmd_transform(argv[2], argv[3])
    elif cmd == "make-goldens":
        cmd_make_goldens(argv[2], argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
