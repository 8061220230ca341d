#!/usr/bin/python3
"""Writes synthetic LlamaGen checkpoints (random weights, LlamaGen's exact tensor names, shapes,
registration order and file layout) for ctfgen's import tests.

The key layout follows LlamaGen's released files (tests/data/llamagen_*_keys.tsv); it is written
from that description, not from LlamaGen's code. "full" sizes reproduce VQ-16 (344 tensors) and
GPT-B (88 tensors); "tiny" sizes keep the same naming with fewer channels / layers.

Usage:
  make_llamagen_checkpoint.py --kind vq|gpt --out FILE [--size tiny|full] [--dtype fp32|fp16|bf16]
      [--layout wrapped|bare|module|state_dict] [--extras] [--legacy] [--protocol N] [--seed N]
      [--no-args] [--args-image-size N] [--args-gpt-model NAME] [--args-vocab-size N]
      [--summary FILE.json] [--print-keys]
  make_llamagen_checkpoint.py --all-tiny DIR   (the set the C++ tests use)
"wrapped" = torch.save({"model": OrderedDict, "args": argparse.Namespace(...), "steps": 5}),
as LlamaGen's training scripts save; "bare" = torch.save(OrderedDict) (the XXL / 3B files).
--extras adds keys an importer must ignore: freqs_cis and layers.*.attention.kv_cache.*.

The args Namespace restates the weights consistently unless told otherwise: GPT gpt_model
"GPT-B" for --size full and no gpt_model for "tiny" (whose dim 128 / 2 layers match no LlamaGen
preset, so any preset name would contradict the shapes), vocab_size, num_classes,
cls_token_num 1, image_size 256, downsample_size 16; VQ vq_model "VQ-16" / "VQ-8" by level
count, codebook_size, codebook_embed_dim, image_size 256. --args-image-size,
--args-gpt-model (NAME, or "none" to omit it) and --args-vocab-size (GPT) set those fields (to write
a disagreeing file on purpose); --no-args leaves the "args" entry out of the non-bare layouts.
"""
import argparse
import collections
import json
import os
import sys

import torch

VQ_SIZES = {
    # ch, ch_mult, z_channels, codebook_size, codebook_dim, enc_res, dec_res
    "full": dict(ch=128, ch_mult=[1, 1, 2, 2, 4], z=256, V=16384, D=8, enc_res=2, dec_res=3),
    "tiny": dict(ch=32, ch_mult=[1, 1, 2, 2, 4], z=16, V=64, D=8, enc_res=2, dec_res=3),
    "tiny8": dict(ch=32, ch_mult=[1, 2, 2, 4], z=16, V=64, D=8, enc_res=2, dec_res=3),
}
GPT_SIZES = {
    # dim, n_layer, vocab, num_classes
    "full": dict(dim=768, n_layer=12, vocab=16384, classes=1000),
    "tiny": dict(dim=128, n_layer=2, vocab=64, classes=10),
}


def ffn_hidden(dim):
    h = int(2 * (4 * dim) / 3)
    return (h + 255) // 256 * 256


def vq_shapes(ch, ch_mult, z, V, D, enc_res, dec_res, in_ch=3):
    """(name, shape) in registration order."""
    out = []

    def conv(p, co, ci, k):
        out.append((p + ".weight", [co, ci, k, k]))
        out.append((p + ".bias", [co]))

    def norm(p, c):
        out.append((p + ".weight", [c]))
        out.append((p + ".bias", [c]))

    def res(p, ci, co):
        norm(p + ".norm1", ci)
        conv(p + ".conv1", co, ci, 3)
        norm(p + ".norm2", co)
        conv(p + ".conv2", co, co, 3)
        if ci != co:
            conv(p + ".nin_shortcut", co, ci, 1)

    def attn(p, c):
        norm(p + ".norm", c)
        for n in ("q", "k", "v", "proj_out"):
            conv(p + "." + n, c, c, 1)

    L = len(ch_mult)
    # encoder
    conv("encoder.conv_in", ch, in_ch, 3)
    c = ch
    for i, m in enumerate(ch_mult):
        co = ch * m
        for r in range(enc_res):
            res(f"encoder.conv_blocks.{i}.res.{r}", c, co)
            c = co
        if i == L - 1:
            for r in range(enc_res):
                attn(f"encoder.conv_blocks.{i}.attn.{r}", c)
        else:
            conv(f"encoder.conv_blocks.{i}.downsample.conv", c, c, 3)
    res("encoder.mid.0", c, c)
    attn("encoder.mid.1", c)
    res("encoder.mid.2", c, c)
    norm("encoder.norm_out", c)
    conv("encoder.conv_out", z, c, 3)
    # decoder: conv_blocks.0 is the lowest resolution
    c = ch * ch_mult[-1]
    conv("decoder.conv_in", c, z, 3)
    res("decoder.mid.0", c, c)
    attn("decoder.mid.1", c)
    res("decoder.mid.2", c, c)
    for i, m in enumerate(reversed(ch_mult)):
        co = ch * m
        for r in range(dec_res):
            res(f"decoder.conv_blocks.{i}.res.{r}", c, co)
            c = co
        if i == 0:
            for r in range(dec_res):
                attn(f"decoder.conv_blocks.{i}.attn.{r}", c)
        if i != L - 1:
            conv(f"decoder.conv_blocks.{i}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c)
    conv("decoder.conv_out", in_ch, c, 3)
    out.append(("quantize.codebook_used", [65536]))
    out.append(("quantize.embedding.weight", [V, D]))
    conv("quant_conv", D, z, 1)
    conv("post_quant_conv", z, D, 1)
    return out


def gpt_shapes(dim, n_layer, vocab, classes):
    h = ffn_hidden(dim)
    out = [("cls_embedding.embedding_table.weight", [classes + 1, dim]),
           ("tok_embeddings.weight", [vocab, dim])]
    for i in range(n_layer):
        p = f"layers.{i}."
        out += [(p + "attention.wqkv.weight", [3 * dim, dim]),
                (p + "attention.wo.weight", [dim, dim]),
                (p + "feed_forward.w1.weight", [h, dim]),
                (p + "feed_forward.w3.weight", [h, dim]),
                (p + "feed_forward.w2.weight", [dim, h]),
                (p + "attention_norm.weight", [dim]),
                (p + "ffn_norm.weight", [dim])]
    out += [("norm.weight", [dim]), ("output.weight", [vocab, dim])]
    return out


def make_state_dict(shapes, gen, dtype, vocab_for_usage=None):
    sd = collections.OrderedDict()
    for name, shape in shapes:
        if name == "quantize.codebook_used":
            # a rolling window of recent code indices, stored as floats (always fp32)
            sd[name] = torch.randint(0, vocab_for_usage, shape, generator=gen).float()
            continue
        if "norm" in name and name.endswith(".weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith(".bias"):
            t = 0.05 * torch.randn(shape, generator=gen)
        elif name == "quantize.embedding.weight":
            t = torch.randn(shape, generator=gen)  # rows deliberately not unit-norm
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            t = torch.randn(shape, generator=gen) / max(fan_in, 1) ** 0.5
        sd[name] = t.to(dtype)
    return sd


def summarize(sd):
    """Per tensor: dtype, shape, fp64 sum and the fp32 values at 3 flat indices (exact check)."""
    out = {}
    for name, t in sd.items():
        f = t.detach().float().reshape(-1)
        n = f.numel()
        idx = sorted({0, n // 3, n - 1}) if n else []
        out[name] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                     "sum": float(f.double().sum()), "idx": idx, "val": [float(f[i]) for i in idx]}
    return out


def write(kind, out, size="tiny", dtype="fp32", layout="wrapped", extras=False, legacy=False,
          protocol=2, seed=0, summary=None, args=True, args_image_size=None, args_gpt_model=None,
          args_vocab_size=None):
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    gen = torch.Generator().manual_seed(seed)
    image_size = 256 if args_image_size is None else args_image_size
    if kind == "vq":
        cfg = VQ_SIZES[size]
        sd = make_state_dict(vq_shapes(**cfg), gen, dt, vocab_for_usage=cfg["V"])
        vq_model = "VQ-16" if len(cfg["ch_mult"]) == 5 else "VQ-8"
        fields = dict(vq_model=vq_model, codebook_size=cfg["V"], codebook_embed_dim=cfg["D"],
                      image_size=image_size, lr=1e-4, ema=False, results_dir="results")
    else:
        cfg = GPT_SIZES[size]
        sd = make_state_dict(gpt_shapes(**cfg), gen, dt)
        if extras:
            hd = 64
            sd["freqs_cis"] = torch.randn(257, hd // 2, 2, generator=gen)
            for i in range(cfg["n_layer"]):
                for n in ("k_cache", "v_cache"):
                    sd[f"layers.{i}.attention.kv_cache.{n}"] = torch.zeros(2, cfg["dim"] // hd, 264, hd, dtype=dt)
        fields = dict(gpt_type="c2i", image_size=image_size, downsample_size=16,
                      vocab_size=cfg["vocab"] if args_vocab_size is None else args_vocab_size,
                      num_classes=cfg["classes"], cls_token_num=1, dropout_p=0.1,
                      results_dir="results")
        gpt_model = args_gpt_model if args_gpt_model is not None else ("GPT-B" if size == "full" else "none")
        if gpt_model != "none":
            fields["gpt_model"] = gpt_model
    if out is None:
        return sd
    if layout == "bare":
        obj = sd
    else:
        key = {"wrapped": "model", "module": "module", "state_dict": "state_dict"}[layout]
        obj = {key: sd}
        if args:
            obj["args"] = argparse.Namespace(**fields)
        obj["steps"] = 5
        if kind == "gpt" and layout == "wrapped":
            obj["optimizer"] = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95)}]}
    kw = {"pickle_protocol": protocol}
    if legacy:
        kw["_use_new_zipfile_serialization"] = False
    torch.save(obj, out, **kw)
    if summary:
        with open(summary, "w") as f:
            json.dump(summarize(sd), f)
    return sd


# The standard set of small files the C++ tests read (one Python start-up for all of them).
TINY_SET = [
    ("vq_tiny.pt", dict(kind="vq")),
    ("vq_tiny_fp16.pt", dict(kind="vq", dtype="fp16")),
    ("vq_tiny_bf16.pt", dict(kind="vq", dtype="bf16")),
    ("vq8_tiny.pt", dict(kind="vq", size="tiny8", layout="state_dict")),
    ("c2i_tiny_384.pt", dict(kind="gpt", extras=True, args_image_size=384)),
    ("gpt_tiny_bare.pt", dict(kind="gpt", layout="bare")),
    ("gpt_tiny_module.pt", dict(kind="gpt", layout="module", dtype="bf16")),
    ("gpt_tiny_fp16.pt", dict(kind="gpt", dtype="fp16")),
    ("gpt_tiny_proto4.pt", dict(kind="gpt", protocol=4)),
    ("gpt_tiny_legacy.pt", dict(kind="gpt", legacy=True)),
    # args vs file name (block size precedence): size from args under a neutral name; no args,
    # so the name decides; the name says 384 but args.image_size 256; args' vocab is wrong.
    ("gpt_tiny_argsize.pt", dict(kind="gpt", args_image_size=384)),
    ("c2i_tiny_noargs_384.pt", dict(kind="gpt", args=False)),
    ("c2i_tiny_clash_384.pt", dict(kind="gpt", args_image_size=256)),
    ("gpt_tiny_badvocab.pt", dict(kind="gpt", args_vocab_size=100)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["vq", "gpt"])
    ap.add_argument("--out")
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    ap.add_argument("--layout", choices=["wrapped", "bare", "module", "state_dict"], default="wrapped")
    ap.add_argument("--extras", action="store_true")
    ap.add_argument("--legacy", action="store_true", help="pre-1.6 non-zip format")
    ap.add_argument("--protocol", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-args", action="store_true", help="leave out the args Namespace")
    ap.add_argument("--args-image-size", type=int, help="args.image_size (default 256)")
    ap.add_argument("--args-gpt-model", help='args.gpt_model ("none" = omit; default GPT-B for full, none for tiny)')
    ap.add_argument("--args-vocab-size", type=int, help="args.vocab_size (default: the real vocab)")
    ap.add_argument("--summary", help="also write a JSON summary of the saved tensors")
    ap.add_argument("--print-keys", action="store_true")
    ap.add_argument("--all-tiny", metavar="DIR", help="write the standard tiny set (+ .json summaries) into DIR")
    a = ap.parse_args()
    if a.all_tiny:
        for name, kw in TINY_SET:
            path = os.path.join(a.all_tiny, name)
            write(out=path, summary=path[:-3] + ".json", **kw)
        return 0
    if not a.kind:
        ap.error("--kind is required")
    if a.print_keys:
        for name, t in write(a.kind, None, size=a.size, extras=a.extras).items():
            print(f"{name}\t{list(t.shape)}")
        return 0
    if not a.out:
        ap.error("--out is required")
    write(a.kind, a.out, size=a.size, dtype=a.dtype, layout=a.layout, extras=a.extras,
          legacy=a.legacy, protocol=a.protocol, seed=a.seed, summary=a.summary, args=not a.no_args,
          args_image_size=a.args_image_size, args_gpt_model=a.args_gpt_model,
          args_vocab_size=a.args_vocab_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
