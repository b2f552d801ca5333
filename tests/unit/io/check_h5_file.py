#!/usr/bin/python3
"""Oracle for test_h5.cpp (ioH5File.ReadableByH5py): checks with h5py that the file written by
hessgap's H5File holds what the C++ test wrote. Exit code 0 = all good, 1 = a check failed (printed),
77 = h5py or numpy cannot be imported (the test is skipped)."""
import sys

try:
    import h5py
    import numpy as np
except ImportError:
    sys.exit(77)


def main(path):
    with h5py.File(path, "r") as f:
        d = f["/results/curve"]
        assert d.dtype == np.float64 and d.shape == (2, 3), (d.dtype, d.shape)
        assert np.array_equal(d[()], np.arange(6).reshape(2, 3) * 0.25), d[()]
        assert d.attrs["description"] == "a curve", d.attrs["description"]
        assert d.attrs["units"] == "nats", d.attrs["units"]
        w = f["/results/weights"]
        assert w.dtype == np.float32 and w.shape == (4,), (w.dtype, w.shape)
        assert np.array_equal(w[()], np.array([1.5, -2, 0, 3], dtype=np.float32))
        i = f["/results/counts"]
        assert i.dtype == np.int64 and i.shape == (2, 2)
        assert np.array_equal(i[()], np.array([[1, -2], [3, 1 << 40]]))
        assert "units" not in i.attrs
        assert f["/scalars/lr"][()] == 0.125 and f["/scalars/lr"].shape == ()
        assert f["/scalars/steps"][()] == 7 and f["/scalars/steps"].dtype == np.int64
        s = f["/names"]
        assert s.asstr()[()].tolist() == ["alpha", "", "naïve µ"], s.asstr()[()]
        assert s.attrs["description"] == "some names"
        assert f.attrs["version"] == "0.1.0", f.attrs["version"]
        assert f.attrs["world_size"] == 4 and isinstance(f.attrs["world_size"], np.int64)
        assert f.attrs["tolerance"] == 1e-6
        assert f["/results"].attrs["kind"] == "group attr"
        assert sorted(f.keys()) == ["names", "results", "scalars"], list(f.keys())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except AssertionError as e:
        print("check_h5_file.py: assertion failed:", e)
        sys.exit(1)
