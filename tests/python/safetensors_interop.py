"""Standard-library + numpy side of the safetensors interop test (no torch, no safetensors).
Usage: safetensors_interop.py write FILE  -- writes the reference file
       safetensors_interop.py check FILE  -- parses a file written by ctfgen and checks it
Values: for n elements v = arange(n) % 7 - 3 in the dtype (U8: arange(n) % 251, BOOL: arange(n) % 3 == 0,
BF16: the top 16 bits of the float32 value)."""
import json
import struct
import sys

import numpy as np

CASES = [  # name, dtype, shape -- must match kCases in tests/unit/test_safetensors.cpp
    ("f64", "F64", [5]), ("f32", "F32", [2, 3]), ("f16", "F16", [3, 2]), ("bf16", "BF16", [4]),
    ("i64", "I64", [3]), ("i32", "I32", [2, 2]), ("i16", "I16", [3]), ("i8", "I8", [6]),
    ("u8", "U8", [2, 3]), ("bool", "BOOL", [7]), ("scalar", "F32", []), ("empty", "F32", [0, 3]),
]
NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
      "I8": "i1", "U8": "u1", "BOOL": "?"}
METADATA = {"format": "ctfgen", "note": "h\u00e9llo \"quoted\""}


def value_bytes(dtype, shape):
    n = int(np.prod(shape)) if shape else 1
    a = np.arange(n)
    if dtype == "U8":
        v = (a % 251).astype(np.uint8)
    elif dtype == "BOOL":
        v = a % 3 == 0
    elif dtype == "BF16":
        v = ((a % 7 - 3).astype("<f4").view("<u4") >> 16).astype("<u2")
    else:
        v = (a % 7 - 3).astype(NP[dtype])
    return v.tobytes()


def write(path):
    header, blobs, offset = {"__metadata__": METADATA}, [], 0
    for name, dtype, shape in CASES:
        b = value_bytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def check(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    assert header.pop("__metadata__") == METADATA, "metadata differs"
    assert sorted(header) == sorted(c[0] for c in CASES), sorted(header)
    spans = sorted(tuple(e["data_offsets"]) for e in header.values())
    expect = 0
    for b, e in spans:
        assert b == expect, ("gap or overlap", spans)
        expect = e
    assert expect == len(body), ("length", expect, len(body))
    for name, dtype, shape in CASES:
        e = header[name]
        assert e["dtype"] == dtype and e["shape"] == shape, (name, e)
        b, end = e["data_offsets"]
        assert body[b:end] == value_bytes(dtype, shape), name
    print("OK", len(CASES))


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
