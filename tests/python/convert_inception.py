"""Convert Inception-v3 weights to a ctfgen component file (kind "inception"), once, in Python.

FID weights (pytorch-fid's port of TensorFlow's inception-2015-12-05 graph, the standard for
FID/IS): download pt_inception-2015-12-05-6726825d.pth on a machine with internet access from
  https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
then
  /usr/bin/python3 tests/python/convert_inception.py pt_inception-2015-12-05-6726825d.pth \
      inception_fid.safetensors --variant fid
torchvision's ImageNet weights (inception_v3_google-0cc3c7bd.pth) convert with --variant torchvision.

Only trusted files: torch.load unpickles. Needs torch and numpy; writes safetensors with the
standard library + numpy (st_numpy.py). AuxLogits.* tensors are dropped (they never affect
features); BatchNorm num_batches_tracked counters are kept when present (ctfgen ignores them).
"""
import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_numpy  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="state dict .pth")
    ap.add_argument("dst", help="output .safetensors")
    ap.add_argument("--variant", choices=["fid", "torchvision"], default="fid")
    args = ap.parse_args()

    sd = torch.load(args.src, map_location="cpu")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    tensors = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if k.startswith("AuxLogits."):
            continue
        if not torch.is_tensor(v):
            raise SystemExit(f"{args.src}: entry {k} is not a tensor")
        tensors[k] = v.detach().cpu().contiguous().numpy()
    if "fc.weight" not in tensors:
        raise SystemExit(f"{args.src}: no fc.weight; is this an Inception-v3 state dict?")
    num_classes = int(tensors["fc.weight"].shape[0])
    h = hashlib.sha256()
    with open(args.src, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    config = {"variant": args.variant, "num_classes": num_classes, "resize_input": True}
    meta = {"source": os.path.basename(args.src), "source_sha256": h.hexdigest()}
    st_numpy.save(args.dst, tensors, {
        "format": "ctfgen", "format_version": "1", "kind": "inception",
        "config": json.dumps(config), "meta": json.dumps(meta)})
    print(f"wrote {args.dst}: {len(tensors)} tensors, {num_classes} classes, variant {args.variant}")


if __name__ == "__main__":
    main()
