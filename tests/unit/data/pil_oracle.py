#!/usr/bin/python3
"""Python reference (Pillow / torchvision) for the hg_data unit tests. Never on hessgap's run path.

  pil_oracle.py decode OUT_DIR IMAGE...           Image.open(p).convert("RGB") of each IMAGE, raw HWC
                                                 bytes to OUT_DIR/<k>.u8; prints JSON [{width,height,file}]
  pil_oracle.py resize OUT_DIR IMAGE W H [W H...] Image.open(p).convert("RGB").resize((W,H), BILINEAR)
                                                 for each size, same output format
  pil_oracle.py idx FILE N                       first N labels (labels file) or the pixel sums of the
                                                 first N images (images file), read with gzip + numpy
  pil_oracle.py make-fixtures DIR                writes the small PNG/JPEG fixtures committed in fixtures/
  pil_oracle.py make-goldens ASSETS DIR          writes the torchvision transform goldens in goldens/

Exit code 3 means a module is missing (the C++ test then skips).
"""
import gzip
import json
import os
import struct
import sys
import zlib

try:
    import numpy as np
    from PIL import Image
except ImportError as e:  # pragma: no cover
    print(f"missing module: {e}", file=sys.stderr)
    sys.exit(3)


def load_rgb(path):
    return Image.open(path).convert("RGB")


def dump(out_dir, k, im):
    name = f"{k}.u8"
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(np.asarray(im, dtype=np.uint8).tobytes())
    return {"width": im.size[0], "height": im.size[1], "file": name}


def cmd_decode(out_dir, paths):
    print(json.dumps([dump(out_dir, k, load_rgb(p)) for k, p in enumerate(paths)]))


def cmd_resize(out_dir, path, sizes):
    im = load_rgb(path)
    pairs = [(int(sizes[i]), int(sizes[i + 1])) for i in range(0, len(sizes), 2)]
    print(json.dumps([dump(out_dir, k, im.resize(wh, Image.BILINEAR)) for k, wh in enumerate(pairs)]))


def cmd_idx(path, n):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    if ndim == 1:
        print(json.dumps({"dims": dims, "values": data[:n].tolist()}))
    else:
        print(json.dumps({"dims": dims, "values": data[:n].reshape(n, -1).sum(axis=1).tolist()}))


# ---- fixtures ----------------------------------------------------------------------------------

def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path, width, height, bit_depth, color_type, rows, interlace=0):
    """A minimal PNG writer for layouts Pillow cannot save (16-bit RGB, 2-bit grey, interlaced).
    rows: list of bytes, each an already packed scanline (or a function (x0, dx, y) for interlace)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    raw = b"".join(b"\x00" + r for r in rows)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def adam7_rows(pixels):
    """Scanlines of the 7 Adam7 passes of an 8-bit RGB array [H,W,3], concatenated."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = []
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.size:
            rows += [sub[y].tobytes() for y in range(sub.shape[0])]
    return rows


def cmd_make_fixtures(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(20240)
    base = (rng.rand(50, 75, 3) * 64).astype(np.uint8)
    yy, xx = np.mgrid[0:50, 0:75]
    base[..., 0] += (xx * 2.5).astype(np.uint8)
    base[..., 1] += (yy * 3).astype(np.uint8)
    base[..., 2] += ((xx + yy) * 1.5).astype(np.uint8)
    rgb = Image.fromarray(base, "RGB")
    rgb.save(os.path.join(out, "rect.jpg"), quality=90)                       # 75x50, 4:2:0
    rgb.save(os.path.join(out, "progressive.jpg"), quality=80, progressive=True, subsampling=0)
    rgb.convert("L").save(os.path.join(out, "grey.jpg"), quality=85)
    rgb.convert("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=85)
    small = rgb.resize((9, 7), Image.BILINEAR)
    small.convert("L").save(os.path.join(out, "grey.png"))
    pal = small.convert("P", palette=Image.ADAPTIVE, colors=12)
    pal.save(os.path.join(out, "palette_trns.png"), transparency=3)
    small.convert("P", palette=Image.ADAPTIVE, colors=16).save(os.path.join(out, "palette4.png"), bits=4)
    rgba = small.copy()
    rgba.putalpha(Image.fromarray((rng.rand(7, 9) * 255).astype(np.uint8), "L"))
    rgba.save(os.path.join(out, "rgba.png"))
    rgba.convert("LA").save(os.path.join(out, "la.png"))
    small.convert("1").save(os.path.join(out, "bilevel.png"))
    g16 = (np.arange(63, dtype=np.uint16).reshape(7, 9) * 9).astype(np.uint16)  # 0..558: some > 255
    Image.fromarray(g16).save(os.path.join(out, "grey16.png"))
    a16 = np.asarray(small, dtype=np.uint16) * 257 + rng.randint(0, 256, (7, 9, 3)).astype(np.uint16)
    write_png(os.path.join(out, "rgb16.png"), 9, 7, 16, 2, [a16[y].astype(">u2").tobytes() for y in range(7)])
    g2 = rng.randint(0, 4, (7, 8)).astype(np.uint8)
    write_png(os.path.join(out, "grey2.png"), 8, 7, 2, 0,
              [bytes(int("".join(f"{v:02b}" for v in g2[y, 4 * i:4 * i + 4]), 2) for i in range(2)) for y in range(7)])
    write_png(os.path.join(out, "interlaced.png"), 9, 7, 8, 2, adam7_rows(np.asarray(small)), interlace=1)


# ---- torchvision goldens -----------------------------------------------------------------------

GOLDEN_CASES = [
    # name, source (relative to the assets or fixtures folder), resize, crop, store float32 tensor
    ("cifar_r256_c224", "assets:cifar10-test-100/airplane/0000.jpg", 256, 224, False),
    ("cifar_r224", "assets:cifar10-test-100/cat/0003.jpg", 224, 0, False),
    ("cifar_r20", "assets:cifar10-test-100/ship/0001.jpg", 20, 0, True),
    ("cifar_r13_c11", "assets:cifar10-test-100/frog/0007.jpg", 13, 11, False),
    ("cifar_c37", "assets:cifar10-test-100/horse/0002.jpg", 0, 37, False),
    ("cifar_plain", "assets:cifar10-test-100/dog/0000.jpg", 0, 0, True),
    ("rect_r33_c30", "fixtures:rect.jpg", 33, 30, True),
    ("rect_r64_c56", "fixtures:rect.jpg", 64, 56, False),
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cmd_make_goldens(assets, out):
    import torch
    import torchvision
    import torchvision.transforms as T

    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    os.makedirs(out, exist_ok=True)
    manifest = {"generated_by": "tests/unit/data/pil_oracle.py make-goldens (do not edit)",
                "torch": torch.__version__, "torchvision": torchvision.__version__,
                "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "cases": []}
    for name, src, resize, crop, with_tensor in GOLDEN_CASES:
        root, rel = src.split(":", 1)
        im = load_rgb(os.path.join(assets if root == "assets" else fixtures, rel))
        steps = ([T.Resize(resize)] if resize else []) + ([T.CenterCrop(crop)] if crop else [])
        out_im = T.Compose(steps)(im) if steps else im
        case = {"name": name, "source": src, "resize": resize, "crop": crop,
                "width": out_im.size[0], "height": out_im.size[1], "u8": name + ".u8.gz"}
        with gzip.GzipFile(os.path.join(out, case["u8"]), "wb", mtime=0) as f:
            f.write(np.asarray(out_im, dtype=np.uint8).tobytes())
        if with_tensor:
            t = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(out_im)
            case["f32"] = name + ".f32.gz"
            with gzip.GzipFile(os.path.join(out, case["f32"]), "wb", mtime=0) as f:
                f.write(t.numpy().astype("<f4").tobytes())
        manifest["cases"].append(case)
    with open(os.path.join(out, "transforms.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def main(argv):
    cmd = argv[1]
    if cmd == "decode":
        cmd_decode(argv[2], argv[3:])
    elif cmd == "resize":
        cmd_resize(argv[2], argv[3], argv[4:])
    elif cmd == "idx":
        cmd_idx(argv[2], int(argv[3]))
    elif cmd == "make-fixtures":
        cmd_make_fixtures(argv[2])
    elif cmd == "make-goldens":
        cmd_make_goldens(argv[2], argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
