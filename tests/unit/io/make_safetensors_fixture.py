#!/usr/bin/python3
"""Writes tests/fixtures/io/small.safetensors by hand (struct + json), independently of hessgap's
writer, as the oracle for test_safetensors.cpp. The safetensors pip package is not needed.

Every tensor t of n elements holds the values v_i = (i - 2) * 0.5 for floats, i - 3 for signed
integers, i for U8, and i % 3 == 0 for BOOL (i = 0..n-1, row-major); test_safetensors.cpp checks
exactly these. The data section is written in an order different from the (sorted) JSON keys, so
that "file order" is testable. Regenerate with:  /usr/bin/python3 tests/unit/io/make_safetensors_fixture.py
"""
import json
import os
import struct

import numpy as np

# name, safetensors dtype, numpy dtype (None: computed by hand), shape -- in data order.
TENSORS = [
    ("z.f32", "F32", np.float32, [2, 3]),
    ("a.f64", "F64", np.float64, [3]),
    ("m.f16", "F16", np.float16, [2, 2]),
    ("b.bf16", "BF16", None, [4]),
    ("y.i64", "I64", np.int64, [5]),
    ("c.i32", "I32", np.int32, [2, 1]),
    ("x.i16", "I16", np.int16, [3]),
    ("d.i8", "I8", np.int8, [4]),
    ("w.u8", "U8", np.uint8, [6]),
    ("e.bool", "BOOL", np.bool_, [5]),
    ("v.scalar", "F32", np.float32, []),
    ("f.empty", "F32", np.float32, [0, 3]),
]


def values(st_dtype, n):
    i = np.arange(n)
    if st_dtype in ("F64", "F32", "F16", "BF16"):
        return (i - 2) * 0.5
    if st_dtype == "U8":
        return i
    if st_dtype == "BOOL":
        return i % 3 == 0
    return i - 3


def encode(st_dtype, np_dtype, shape):
    n = int(np.prod(shape)) if shape else 1
    v = values(st_dtype, n)
    if st_dtype == "BF16":
        # bfloat16 = the upper 16 bits of float32; these values are exact in bfloat16.
        bits = np.asarray(v, dtype="<f4").view("<u4") >> 16
        return bits.astype("<u2").tobytes()
    return np.asarray(v, dtype=np.dtype(np_dtype).newbyteorder("<")).tobytes()


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    out = os.path.join(root, "tests", "fixtures", "io", "small.safetensors")
    header = {"__metadata__": {"format": "pt", "generated_by": "tests/unit/io/make_safetensors_fixture.py"}}
    data = b""
    for name, st, npd, shape in TENSORS:
        blob = encode(st, npd, shape)
        header[name] = {"dtype": st, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
