#!/usr/bin/python3
"""Python reference for hessgap-bench-data: the reference scripts' image pipelines (SPEC §3.2) with
torchvision 0.14 on PIL, loaded by a DataLoader with num_workers=0 (decoding and transforms in the main
process), one torch thread. Prints one JSON object: seconds per epoch for each pipeline and a checksum.

  reference_data.py --images DIR [--batch 32] [--reps 3] [--limit N]
"""
import argparse
import json
import time

import torch
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader, Subset

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def epoch_seconds(dataset, batch, shuffle):
    loader = DataLoader(dataset, batch_size=batch, shuffle=shuffle, num_workers=0)
    t0 = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    return time.perf_counter() - t0, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    pipelines = {
        "eval": T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)]),
        "train": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)]),
    }
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__, "batch": a.batch}
    for name, tf in pipelines.items():
        ds = torchvision.datasets.ImageFolder(a.images, transform=tf)
        if a.limit:
            ds = Subset(ds, range(min(a.limit, len(ds))))
        secs = []
        for _ in range(a.reps):
            s, n = epoch_seconds(ds, a.batch, name == "train")
            secs.append(s)
        out[name] = {"seconds": secs, "images": n}
        if name == "eval":
            first = next(iter(DataLoader(ds, batch_size=a.batch, shuffle=False)))[0]
            out["eval_first_batch_sum"] = float(first.double().sum())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
