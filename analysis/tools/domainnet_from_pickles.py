#!/usr/bin/env python3
"""Convert the reference's DomainNet pickles into the image-folder layout hessgap reads.

The reference (VirtuosoResearch/Robust-Fine-Tuning, exps_on_image_datasets/data/domain_net) stores
    <src>/sample_{s}/{partition}_{domain}.pkl        dict: 'data' (N x H x W x 3 uint8), 'labels' (N class names)
    <src>/sample_{s}/{partition}_{domain}_mv_labels.npy   weak labels (int64, N)
    <src>/sample_classes_{s}.txt
This writes, under <dst> (which may equal <src>; the .npy and class lists are copied when it does not):
    <dst>/sample_{s}/{partition}_{domain}/{i:06d}.png    Image.fromarray(data[i]) (lossless PNG)
    <dst>/sample_{s}/{partition}_{domain}/labels.txt     labels[i] on line i
    <dst>/sample_{s}/train_{domain}/norm_stats.json      {"mean": [3], "std": [3]} = (data/255).mean/std over
                                                         axes (0, 1, 2), exactly as the reference computes them
See src/data/domainnet.h for how hessgap reads it.

Usage: python3 domainnet_from_pickles.py SRC DST [--samples 1 2] [--domains clipart ...]
Requires numpy and Pillow.
"""
import argparse
import json
import os
import pickle
import shutil
import sys

import numpy as np
from PIL import Image

DOMAINS = ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"]
PARTITIONS = ["train", "val", "test"]


def convert(src, dst, sample, domain, partition):
    pkl = os.path.join(src, f"sample_{sample}", f"{partition}_{domain}.pkl")
    if not os.path.exists(pkl):
        print(f"skip (missing): {pkl}", file=sys.stderr)
        return
    with open(pkl, "rb") as f:
        d = pickle.load(f)
    data = np.asarray(d["data"])
    labels = [str(x) for x in d["labels"]]
    if data.ndim != 4 or data.shape[3] != 3 or data.dtype != np.uint8:
        sys.exit(f"{pkl}: expected an N x H x W x 3 uint8 array, got {data.shape} {data.dtype}")
    if len(labels) != data.shape[0]:
        sys.exit(f"{pkl}: {data.shape[0]} images but {len(labels)} labels")
    out = os.path.join(dst, f"sample_{sample}", f"{partition}_{domain}")
    os.makedirs(out, exist_ok=True)
    for i in range(data.shape[0]):
        Image.fromarray(data[i]).save(os.path.join(out, f"{i:06d}.png"))
    with open(os.path.join(out, "labels.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in labels))
    if partition == "train":
        x = data / 255
        stats = {"mean": x.mean(axis=(0, 1, 2)).tolist(), "std": x.std(axis=(0, 1, 2)).tolist()}
        with open(os.path.join(out, "norm_stats.json"), "w") as f:
            json.dump(stats, f)
    mv = f"{partition}_{domain}_mv_labels.npy"
    if os.path.abspath(src) != os.path.abspath(dst) and os.path.exists(os.path.join(src, f"sample_{sample}", mv)):
        shutil.copy(os.path.join(src, f"sample_{sample}", mv), os.path.join(dst, f"sample_{sample}", mv))
    print(f"{out}: {data.shape[0]} images of {data.shape[1]}x{data.shape[2]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--domains", nargs="+", default=DOMAINS)
    a = ap.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    for s in a.samples:
        cls = os.path.join(a.src, f"sample_classes_{s}.txt")
        if os.path.abspath(a.src) != os.path.abspath(a.dst) and os.path.exists(cls):
            shutil.copy(cls, a.dst)
        for dom in a.domains:
            for part in PARTITIONS:
                convert(a.src, a.dst, s, dom, part)


if __name__ == "__main__":
    main()
