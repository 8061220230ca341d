"""NumPy side of the .npy interop test (numpy only).
Usage: npy_interop.py write DIR   -- writes the reference arrays with numpy
       npy_interop.py check DIR   -- loads arrays written by ctfgen and checks their values
Values: for n elements, v = arange(n) % 7 - 3 cast to the dtype (uint8: arange(n) % 251,
bool: arange(n) % 3 == 0), reshaped C-order to the shape."""
import os
import sys

import numpy as np

CASES = [
    ("f4", "<f4", (2, 3)), ("f8", "<f8", (5,)), ("f2", "<f2", (3, 2, 2)), ("i8", "<i8", (4,)),
    ("i4", "<i4", (2, 2)), ("i2", "<i2", (3,)), ("i1", "|i1", (6,)), ("u1", "|u1", (2, 3)),
    ("b1", "|b1", (7,)), ("scalar", "<f4", ()), ("empty", "<f4", (0, 3)),
]


def value(descr, shape):
    n = int(np.prod(shape)) if shape else 1
    a = np.arange(n)
    if descr == "|u1":
        v = (a % 251).astype(np.uint8)
    elif descr == "|b1":
        v = a % 3 == 0
    else:
        v = (a % 7 - 3).astype(np.dtype(descr))
    return v.reshape(shape)


def main():
    mode, d = sys.argv[1], sys.argv[2]
    if mode == "write":
        for name, descr, shape in CASES:
            np.save(os.path.join(d, name + ".npy"), value(descr, shape))
        for version in [(2, 0), (3, 0)]:
            with open(os.path.join(d, "f4_v%d.npy" % version[0]), "wb") as f:
                np.lib.format.write_array(f, value("<f4", (2, 3)), version=version)
        np.save(os.path.join(d, "fortran.npy"), np.asfortranarray(value("<f4", (2, 3))))
        np.save(os.path.join(d, "bigendian.npy"), value("<f4", (2, 3)).astype(">f4"))
    elif mode == "check":
        for name, descr, shape in CASES:
            path = os.path.join(d, name + ".npy")
            with open(path, "rb") as f:
                major, _ = np.lib.format.read_magic(f)
                hdr = np.lib.format._read_array_header(f, (major, 0))
                assert f.tell() % 64 == 0, (path, "data offset not aligned", f.tell())
            a = np.load(path)
            want = value(descr, shape)
            assert a.dtype == want.dtype, (path, a.dtype, want.dtype)
            assert a.shape == want.shape, (path, a.shape, want.shape)
            assert np.array_equal(a, want), (path, a, want)
            assert not hdr[1], path
        print("OK", len(CASES))
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
