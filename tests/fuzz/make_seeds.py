#!/usr/bin/python3
"""Writes the seed corpus of each fuzz harness under corpus/<target>/ (small valid inputs, made here with
Python's zipfile, Pillow, numpy and scipy, plus a few committed fixtures). Rerun only to change the seeds;
crash inputs found later go to corpus/<target>/ by hand, named regression-<what>."""
import io
import struct
import shutil
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def put(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    # zip: a stored and a deflated member, and a torch.save-like layout
    for method, name in ((zipfile.ZIP_STORED, "stored.zip"), (zipfile.ZIP_DEFLATED, "deflated.zip")):
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w", method) as z:
            z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
            z.writestr("archive/data/0", bytes(range(64)))
        put("zip", name, b.getvalue())
    # images: tiny RGB JPEG and PNG, a grey PNG, a palette PNG
    rng = np.random.default_rng(0)
    px = rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)
    for fmt, mode, name in (("JPEG", "RGB", "rgb.jpg"), ("PNG", "RGB", "rgb.png"), ("PNG", "L", "grey.png"),
                            ("PNG", "P", "palette.png")):
        b = io.BytesIO()
        Image.fromarray(px).convert(mode).save(b, fmt)
        put("image", name, b.getvalue())
    # npy: int64 vector, float32 matrix, big-endian int32, Fortran order
    for arr, name in ((np.arange(7, dtype=np.int64), "int64.npy"), (rng.random((3, 4), dtype=np.float32), "f32.npy"),
                      (np.arange(5, dtype=">i4"), "be_i4.npy"), (np.asfortranarray(np.ones((2, 3))), "fortran.npy")):
        b = io.BytesIO()
        np.save(b, arr)
        put("npy", name, b.getvalue())
    # mat: the committed level-5 cases (compressed and big-endian included)
    (HERE / "corpus/mat").mkdir(parents=True, exist_ok=True)
    for f in ("mat_cases.mat", "mat_cases_z.mat", "mat_cases_be.mat"):
        shutil.copy(ROOT / "tests/fixtures/image_benchmarks" / f, HERE / "corpus/mat" / f)
    # bpe: mode 0 (vocab.json), 1 (merges.txt), 2 (text)
    put("bpe", "vocab.bin", b"\x00" + b'{"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"a":4}')
    put("bpe", "merges.bin", b"\x01#version: 0.2\n\xc4\xa0 t\n")
    put("bpe", "text.bin", b"\x02Hello world, it's 2026! \xc3\xa9t\xc3\xa9  \n\tdone")
    # wordpiece: mode 0 (vocab.txt), 2 (uncased text), 3 (cased text)
    put("wordpiece", "vocab.bin", b"\x00[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n##s\n")
    put("wordpiece", "text.bin", "\x02Héllo  WoŕlḊ¿ the things, republica 中文".encode())
    put("wordpiece", "cased.bin", "\x03The Things".encode())


def torch_seeds():
    """Seeds of the harnesses that produce tensors (fuzz_checkpoint, fuzz_config, fuzz_idx, fuzz_glue)."""
    import torch
    put("checkpoint", "small.safetensors", (ROOT / "tests/fixtures/io/small.safetensors").read_bytes())
    for name, obj in (("state_dict.pt", {"w": torch.arange(6, dtype=torch.float32).view(2, 3), "b": torch.ones(2)}),
                      ("nested.pt", {"state_dict": {"fc.weight": torch.zeros(2, 2, dtype=torch.float64)}, "epoch": 3})):
        b = io.BytesIO()
        torch.save(obj, b)
        put("checkpoint", name, b.getvalue())
    # Regression: a 251-byte-class torch.save zip whose pickle nests 100,000 tuples (issue #12: it overflowed
    # the stack when freed).
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02)" + b"\x85" * 100000 + b".")
    put("checkpoint", "regression-nested-tuples.pt", b.getvalue())
    b = io.BytesIO()
    np.savez(b, **{"Transformer/encoder_norm/scale": np.ones(4, np.float32), "head/bias": np.zeros(3, np.float32)})
    put("checkpoint", "vit.npz", b.getvalue())
    for model in ("bert-tiny", "roberta-tiny", "vit-tiny"):
        put("config", model + ".json", (ROOT / "tests/fixtures/hf" / model / "config.json").read_bytes())
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    put("idx", "labels.idx", struct.pack(">HBBI", 0, 8, 1, 5) + labels.tobytes())
    put("idx", "images.idx", struct.pack(">HBBIII", 0, 8, 3, 2, 3, 3) + bytes(range(18)))
    for task, byte in (("MRPC", b"\x00"), ("SST-2", b"\x01")):
        lines = (ROOT / "tests/fixtures/text/glue" / task / "train_head.tsv").read_bytes().splitlines(True)[:6]
        put("glue", task.lower() + ".bin", byte + b"".join(lines))


def hdf5_seeds():
    """fuzz_hdf5 reads a program, not a file (see fuzz_hdf5.cpp): byte 0 = root attributes, then ops."""
    valid_root = bytes([0x15, 1])  # format right, format_version 1, /tensors made
    f32_vector = bytes([0, 0, 0, 1, 3]) + struct.pack("<3f", 0.5, -1.0, 2.0)  # t0: float32 [3]
    put("hdf5", "valid.bin", valid_root + f32_vector + bytes([1, 0, 1]))  # + dtype "float64"
    put("hdf5", "state.bin", valid_root + f32_vector + bytes([5, 0, 0]) + bytes([0, 1, 2, 2, 2, 1]) + bytes(32))
    put("hdf5", "metadata.bin", valid_root + f32_vector + bytes([4, 1, 3, 4, 2, 1]))
    put("hdf5", "huge.bin", valid_root + bytes([0, 0, 0, 2, 0xA0, 0xA0]))  # 2^32 x 2^32 float32, unwritten
    put("hdf5", "links.bin", valid_root + f32_vector + bytes([3, 5, 0, 3, 6, 4, 7, 7, 2, 2]))


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["hdf5"]:  # only these seeds (the others embed zip timestamps: rewriting churns them)
        hdf5_seeds()
    else:
        main()
        torch_seeds()
        hdf5_seeds()
