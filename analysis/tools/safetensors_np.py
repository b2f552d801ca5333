"""safetensors read and write with numpy only (the safetensors package is not packaged by Debian).

Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} with an
optional "__metadata__" object of strings, then the raw little-endian data. Used by the tests' oracles,
the benchmark and fixture generators; hessgap itself reads and writes the format in C++ (src/io).
"""
import json
import struct

import numpy as np

ST_TO_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
            "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
NP_TO_ST = {np.dtype(v): k for k, v in ST_TO_NP.items()}


def read(path):
    """Returns (tensors, metadata): tensors maps name -> numpy array in file (data offset) order."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        dtype = np.dtype(ST_TO_NP[info["dtype"]]).newbyteorder("<")
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"]).astype(dtype.newbyteorder("="))
    return tensors, metadata


def write(path, tensors, metadata=None):
    """tensors: a dict or a list of (name, array-like); arrays are written C-contiguous little-endian."""
    items = tensors.items() if isinstance(tensors, dict) else tensors
    header = {"__metadata__": dict(metadata)} if metadata else {}
    blobs, offset = [], 0
    for name, a in items:
        a = np.asarray(a, order="C")
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": NP_TO_ST[np.dtype(a.dtype.newbyteorder("="))], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # align the data section to 8 bytes, as the format advises
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
