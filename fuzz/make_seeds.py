"""Writes the seed inputs of the fuzz corpora (fuzz/corpus/<target>/seed_*). Run with /usr/bin/python3
(numpy and PIL). Seeds are small valid files plus a few near-misses."""
import gzip
import io
import json
import os
import struct
import sys

import numpy as np
from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def main():
    a = np.arange(6, dtype="<f4")
    put("safetensors", "one", safetensors({"w": ("F32", [2, 3], a.tobytes())}))
    put("safetensors", "many", safetensors({
        "a": ("F16", [2], np.ones(2, "<f2").tobytes()), "b": ("BF16", [1], b"\x80\x3f"),
        "c": ("I64", [], np.int64(7).tobytes()), "d": ("BOOL", [3], b"\x00\x01\x01"),
        "e": ("U8", [0, 4], b""), "f": ("I8", [2], b"\x01\xff")}, {"format": "ctfgen", "kind": "vq"}))
    put("safetensors", "empty", safetensors({}))

    for descr, shape in [("<f4", (2, 3)), ("<i8", (4,)), ("|u1", ()), ("|b1", (3,)), ("<f2", (0, 2))]:
        buf = io.BytesIO()
        arr = np.zeros(shape, dtype=np.dtype(descr)) if shape else np.array(1, dtype=np.dtype(descr))
        np.save(buf, arr)
        put("npy", descr.strip("<|") + "_%d" % len(shape), buf.getvalue())
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(4, dtype="<i2"), version=(2, 0))
    put("npy", "v2", buf.getvalue())

    def idx(arr):
        return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()
    imgs = (np.arange(2 * 4 * 4) % 256).astype(np.uint8).reshape(2, 4, 4)
    put("idx", "images_raw", idx(imgs))
    put("idx", "images_gz", gzip.compress(idx(imgs)))
    put("idx", "labels_gz", gzip.compress(idx(np.array([3, 1, 4], np.uint8))))

    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 3:, 3] = 255
    for mode, arr in [("RGBA", rgba), ("RGB", rgba[..., :3]), ("L", rgba[..., 0]), ("LA", rgba[..., [0, 3]])]:
        buf = io.BytesIO()
        Image.fromarray(arr, mode).save(buf, "PNG")
        put("image", "png_" + mode, buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3], "RGB").save(buf, "JPEG", quality=80)
    put("image", "jpeg_rgb", buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3], "RGB").save(buf, "JPEG", quality=80, progressive=True)
    put("image", "jpeg_progressive", buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(rgba[..., 0], "L").convert("P").save(buf, "PNG")
    put("image", "png_palette", buf.getvalue())

    put("config", "default", json.dumps({"name": "fashion-mnist", "split": "train"}).encode())
    put("config", "full", json.dumps({"name": "imagefolder", "path": "/x", "split": "test", "image_size": 64,
                                      "skip_bad": True, "limit": 10, "test_fraction": 0.2,
                                      "split_seed": 3}).encode())
    torch_seeds()
    put("config", "bad", json.dumps({"name": "emoji", "limit": -1, "image_size": 1.5}).encode())


def torch_seeds():
    """fuzz_torch_import: first byte 0 = a .pt archive follows, 1 = a bare pickle follows."""
    import argparse
    import pickle
    import torch
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "h": torch.ones(2, dtype=torch.float16),
          "b": torch.ones(3, dtype=torch.bfloat16), "i": torch.tensor([1, 2], dtype=torch.int64)}
    sd["view"] = sd["w"].t()  # a non-contiguous view sharing storage with "w"
    # LlamaGen's training-script layout: the args Namespace's BUILD state is read as data.
    args = argparse.Namespace(image_size=384, gpt_model="GPT-B", betas=(0.9, 0.95), ema=False,
                              vq_ckpt=None, grid=[[1]])
    for name, obj in [("state_dict", sd), ("nested", {"model": {"x": torch.zeros(1, 2)}, "steps": 5}),
                      ("args", {"model": {"x": torch.zeros(1, 2)}, "args": args, "steps": 5})]:
        buf = io.BytesIO()
        torch.save(obj, buf)
        put("torch_import", "pt_" + name, b"\x00" + buf.getvalue())
    for proto in (2, 4):
        put("torch_import", "pkl_p%d" % proto,
            b"\x01" + pickle.dumps({"a": [1, 2.5, "s", None, True], "b": (b"x", {3: 4})}, protocol=proto))
    put("torch_import", "pkl_namespace", b"\x01" + pickle.dumps(args, protocol=2))


if __name__ == "__main__":
    sys.exit(main())
