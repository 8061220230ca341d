#!/usr/bin/env python3
"""Hostile-input table for the ctfgen command line (issue #8, "Hostile inputs").

Usage:
    bad_inputs.py CTFGEN [-j JOBS] [-k SUBSTRING] [-v]   run every case, one line each
    bad_inputs.py CTFGEN --markdown                       print the table for docs/robustness.md

CASES below is the single table: each case has an id, a one-line description of the bad input,
the argv given to ctfgen (after the global `--threads 1`), an optional setup function that writes
the bad input, the expected exit code (1 = error, 2 = usage error) and a substring the error
output must contain (or a tuple of accepted alternatives).

Every case runs in a fresh temporary directory (its working directory) holding copies of small
valid fixtures, made once per run with ctfgen itself (a few seconds):

    imgs/                 ImageFolder dataset: classes a, b; 6 RGB 8x8 PNGs each
    vq.safetensors        tiny VQ tokenizer (16 codes of dimension 4, 8x8 images -> 4x4 tokens)
    tok/                  token directory of imgs (train split) under vq.safetensors
    clusters.safetensors  4 k-means clusters of the codebook
    gpt.safetensors       tiny baseline GPT (preset tiny, 1 step) on tok/
    notes.txt             a plain text file

After each run the script checks: the exit code; that stderr contains the expected text; that
there is no crash (signal, "terminate called", Python traceback, sanitizer or c10 backtrace);
that every file present before is byte-identical afterwards (SHA-256); and, for a failing
command, that no new file (partial output, *.tmp.*) was left behind.

A case with `xfail` set documents behaviour ctfgen SHOULD have but does not yet; its failure is
reported as XFAIL and does not fail the run. An xfail case that passes is reported as XPASS and
fails the run, so the mark gets removed once the fix lands.

Only the Python standard library is used. ctfgen is started with CTFGEN_BLAS_PREPARED=1, which
skips its start-up re-execution for the OpenBLAS kernel choice (irrelevant for error paths; it
halves the start-up time of each of the ~60 runs).
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib

# --------------------------------------------------------------------------------------------
# File helpers (formats: docs/architecture.md)


def png_bytes(w, h, seed):
    """A valid RGB PNG of w x h pixels with deterministic content."""
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 13 + seed * 31) % 256 for x in range(w * 3))
                    for y in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def read_npy(path):
    data = open(path, "rb").read()
    assert data[:6] == b"\x93NUMPY", path
    if data[6] == 1:
        n, off = struct.unpack("<H", data[8:10])[0], 10
    else:
        n, off = struct.unpack("<I", data[8:12])[0], 12
    header = data[off:off + n].decode("latin1")
    shape = tuple(int(s) for s in re.search(r"'shape': \(([^)]*)\)", header).group(1).split(",")
                  if s.strip())
    descr = re.search(r"'descr': '([^']*)'", header).group(1)
    return descr, shape, data[off + n:]


def write_npy(path, descr, shape, payload):
    shape_txt = "(%s)" % (", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_txt)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") +
                payload)


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_st(path, header, payload):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + payload)


def edit_component(src, dst, config=None, meta=None, metadata=None, tensor=None):
    """Copies component file src to dst, applying config(dict)/meta(dict)/metadata(dict) edits in
    place and tensor=(name, first 4 bytes) to the data section."""
    header, payload = read_st(src)
    md = header["__metadata__"]
    if config:
        c = json.loads(md["config"])
        config(c)
        md["config"] = json.dumps(c)
    if meta:
        m = json.loads(md["meta"])
        meta(m)
        md["meta"] = json.dumps(m)
    if metadata:
        metadata(md)
    if tensor:
        name, raw = tensor
        begin = header[name]["data_offsets"][0]
        payload = payload[:begin] + raw + payload[begin + len(raw):]
    write_st(dst, header, payload)


def truncate(src, dst, drop):
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[:len(data) - drop])


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


# --------------------------------------------------------------------------------------------
# Setup functions: called with the case directory as the working directory.

TINY_VQ = {"codebook_size": 16, "codebook_dim": 4, "in_channels": 3, "base_channels": 4,
           "encoder_ch_mult": [1, 1], "decoder_ch_mult": [1, 1], "encoder_num_res_blocks": 1,
           "decoder_num_res_blocks": 1, "z_channels": 4, "norm_groups": 2, "image_size": 8}


def bad_image_folder(name, data, ext="png", file="a/0"):
    """imgs/ copied to `name`/ with <file>.png replaced by `data` (named <file>.<ext>); a/0 and
    b/2 are in the train split."""
    shutil.copytree("imgs", name)
    os.remove(os.path.join(name, file + ".png"))
    write(os.path.join(name, file + "." + ext), data)


def png_with_corrupt_idat():
    b = bytearray(png_bytes(8, 8, 0))
    i = b.find(b"IDAT")
    n = struct.unpack(">I", b[i - 4:i])[0]
    for k in range(i + 6, i + 4 + n):
        b[k] ^= 0x55
    b[i + 4 + n:i + 8 + n] = struct.pack(">I", zlib.crc32(bytes(b[i:i + 4 + n])) & 0xFFFFFFFF)
    return bytes(b)


def png_with_huge_size():
    b = bytearray(png_bytes(8, 8, 0))
    b[16:24] = struct.pack(">II", 100000, 100000)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    return bytes(b)


def codes_npy(path, mutate=None, descr="<i4", pack="<%di", as_float=False):
    """tok/codes.npy re-written to `path` after mutate(list of ints); optionally as float32."""
    _, shape, payload = read_npy("tok/codes.npy")
    values = list(struct.unpack("<%di" % (len(payload) // 4), payload))
    if mutate:
        mutate(values)
    if as_float:
        write_npy(path, "<f4", shape, struct.pack("<%df" % len(values), *[v + 0.7 for v in values]))
    else:
        write_npy(path, descr, shape, struct.pack(pack % len(values), *values))


def set_first(value):
    def f(values):
        values[0] = value
    return f


def copy_tok(name, meta=None):
    shutil.copytree("tok", name)
    if meta:
        m = json.load(open(os.path.join(name, "meta.json")))
        meta(m)
        json.dump(m, open(os.path.join(name, "meta.json"), "w"))


def pickle_zip(path, pickle_bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", b"3\n")


def llamagen_gpt_zip(path, args):
    """A tiny LlamaGen c2i GPT .pt laid out as torch.save writes it (pickle protocol 2):
    {"model": state dict, "args": argparse.Namespace(**args)}; dim 64, 1 layer, vocab 4, 1 class,
    every tensor a zero-stride view of one stored float. Hand-written opcodes (no torch needed);
    the tensor names and shapes follow docs/llamagen_import.md ("How detection works")."""
    def s(text):
        b = text.encode()
        return b"X" + struct.pack("<I", len(b)) + b

    def i(v):
        return b"J" + struct.pack("<i", v)

    def ints(vals):
        return b"(" + b"".join(i(v) for v in vals) + b"t"

    def tensor(shape):  # _rebuild_tensor_v2(storage, 0, shape, zero strides, False, OrderedDict())
        pid = b"(" + s("storage") + b"ctorch\nFloatStorage\n" + s("0") + s("cpu") + i(1) + b"tQ"
        return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + i(0) + ints(shape) +
                ints([0] * len(shape)) + b"\x89" + b"ccollections\nOrderedDict\n)R" + b"tR")

    D, V, H = 64, 4, 256  # H: LlamaGen's FFN width for dim 64
    shapes = [("cls_embedding.embedding_table.weight", [2, D]), ("tok_embeddings.weight", [V, D]),
              ("layers.0.attention.wqkv.weight", [3 * D, D]), ("layers.0.attention.wo.weight", [D, D]),
              ("layers.0.feed_forward.w1.weight", [H, D]), ("layers.0.feed_forward.w3.weight", [H, D]),
              ("layers.0.feed_forward.w2.weight", [D, H]), ("layers.0.attention_norm.weight", [D]),
              ("layers.0.ffn_norm.weight", [D]), ("norm.weight", [D]), ("output.weight", [V, D])]
    state = b"}(" + b"".join(s(n) + tensor(shape) for n, shape in shapes) + b"u"
    fields = b"".join(s(k) + (i(v) if isinstance(v, int) else s(v)) for k, v in args.items())
    namespace = b"cargparse\nNamespace\n)\x81}(" + fields + b"ub"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}(" + s("model") + state + s("args") + namespace + b"u.")
        z.writestr("archive/data/0", struct.pack("<f", 0.0))
        z.writestr("archive/version", b"3\n")


# --------------------------------------------------------------------------------------------
# The table


class Case:
    def __init__(self, id, desc, argv, rc, expect, setup=None, xfail=None):
        self.id, self.desc, self.argv, self.rc, self.expect = id, desc, argv, rc, expect
        self.setup, self.xfail = setup, xfail


SAMPLE = ["sample", "--tokenizer", "vq.safetensors", "--model", "gpt.safetensors", "--n", "1"]
ENCODE = ["encode", "--vq", "vq.safetensors", "--dataset", "imagefolder"]
TRAIN_VQ = ["train-vq", "--dataset", "imagefolder", "--data-path", "imgs", "--steps", "1",
            "--batch", "4"]
TRAIN_AR = ["train-ar", "--preset", "tiny", "--steps", "1", "--batch", "2"]  # + --tokens
DECODE = ["decode", "--vq", "vq.safetensors"]
CLUSTER = ["cluster", "--vq", "vq.safetensors", "--k", "4", "--restarts", "1"]

CASES = [
    # ---- command line: values, names, flags
    Case("steps-negative", "negative step count", TRAIN_VQ[:-4] + ["--steps", "-1", "--out", "run"],
         2, "--steps: Value -1 not in range"),
    Case("n-zero", "zero images per class", SAMPLE[:-1] + ["0", "--out", "s"],
         2, "--n: Value 0 not in range"),
    Case("cfg-negative", "negative guidance scale", SAMPLE + ["--cfg", "-1", "--out", "s"],
         2, "--cfg: Value -1 not in range"),
    Case("cfg-nan", "guidance scale NaN", SAMPLE + ["--cfg", "nan", "--out", "s"],
         2, "cfg_scale must be finite"),
    Case("class-out-of-range", "class label >= number of classes",
         SAMPLE + ["--class", "7", "--out", "s"], 2, "--class 7 is out of range [0, 2)"),
    Case("vq-preset-unknown", "unknown VQ preset name",
         ["train-vq", "--preset", "VQ-99", "--out", "run"], 2, "unknown VQ preset 'VQ-99'"),
    Case("model-preset-unknown", "unknown transformer preset name",
         ["train-ar", "--tokens", "tok", "--preset", "GPT-Z", "--out", "run"],
         2, "unknown model preset 'GPT-Z'"),
    Case("flag-unknown", "unknown flag", ["train-vq", "--no-such-flag", "--out", "run"],
         2, "--no-such-flag"),
    Case("subcommand-unknown", "unknown subcommand", ["trian-vq", "--out", "run"],
         2, "trian-vq"),
    Case("k-above-codebook", "more clusters than codes (16)",
         ["cluster", "--vq", "vq.safetensors", "--k", "17", "--out", "c.safetensors"],
         2, "cannot form k = 17 non-empty clusters"),
    Case("out-empty-cluster", "empty --out path", CLUSTER + ["--out", ""],
         2, "--out"),
    Case("out-empty-sample", "empty --out path (with a bad --class so that it cannot write)",
         SAMPLE + ["--class", "9", "--out", ""], 2, "--out"),
    # ---- configuration files
    Case("config-bad-json", "--config file that is not valid JSON",
         TRAIN_VQ + ["--config", "bad.json", "--out", "run"], 1, "bad.json",
         setup=lambda: write("bad.json", '{"codebook_size": 16,\n')),
    Case("config-unknown-field", "--config with a misspelt field",
         TRAIN_VQ + ["--config", "typo.json", "--out", "run"], 2, "unknown field 'codebook_sise'",
         setup=lambda: write("typo.json", json.dumps(dict(TINY_VQ, codebook_sise=16)))),
    Case("config-out-of-range", "--config field out of range",
         TRAIN_VQ + ["--config", "neg.json", "--out", "run"], 2,
         "codebook_size must be in [1, 2^24], got -3",
         setup=lambda: write("neg.json", json.dumps(dict(TINY_VQ, codebook_size=-3)))),
    # ---- component files (checkpoints)
    Case("st-truncated", "safetensors file cut short (last 100 bytes missing)",
         DECODE[:-1] + ["vq_cut.safetensors", "--tokens", "tok", "--out", "d"], 1,
         "vq_cut.safetensors: file length does not match the header",
         setup=lambda: truncate("vq.safetensors", "vq_cut.safetensors", 100)),
    Case("st-empty", "empty (0-byte) safetensors file",
         DECODE[:-1] + ["empty.safetensors", "--tokens", "tok", "--out", "d"], 1,
         "empty.safetensors: not a safetensors file (0 bytes",
         setup=lambda: write("empty.safetensors", b"")),
    Case("st-garbage", "100 bytes of 0xff as a safetensors file",
         DECODE[:-1] + ["garbage.safetensors", "--tokens", "tok", "--out", "d"], 1,
         "exceeds the limit of 100000000 bytes",
         setup=lambda: write("garbage.safetensors", b"\xff" * 100)),
    Case("kind-vq-as-gpt", "VQ tokenizer given as the GPT (--model)",
         SAMPLE[:4] + ["vq.safetensors", "--out", "s"], 1,
         "vq.safetensors: is a 'vq' file, expected a 'gpt' file"),
    Case("kind-gpt-as-vq", "GPT given as the tokenizer (--vq)",
         DECODE[:-1] + ["gpt.safetensors", "--tokens", "tok", "--out", "d"], 1,
         "gpt.safetensors: is a 'gpt' file, expected a 'vq' file"),
    Case("not-a-component", "safetensors file without ctfgen metadata",
         SAMPLE[:4] + ["plain.safetensors", "--out", "s"], 1,
         "plain.safetensors: not a ctfgen component file",
         setup=lambda: edit_component("gpt.safetensors", "plain.safetensors",
                                      metadata=lambda md: md.clear())),
    Case("gpt-shape-mismatch", "GPT whose config (vocab_size 32) does not match its tensors",
         SAMPLE[:4] + ["gpt_v32.safetensors", "--out", "s"], 1,
         "gpt_v32.safetensors: tensors do not match the model; wrong shape 2",
         setup=lambda: edit_component("gpt.safetensors", "gpt_v32.safetensors",
                                      config=lambda c: c.update(vocab_size=32))),
    Case("gpt-config-invalid", "GPT whose stored config is invalid (n_head 3, dim 32)",
         SAMPLE[:4] + ["gpt_h3.safetensors", "--out", "s"], 1, "gpt_h3.safetensors",
         setup=lambda: edit_component("gpt.safetensors", "gpt_h3.safetensors",
                                      config=lambda c: c.update(n_head=3))),
    Case("vq-nan-weight", "VQ tokenizer with a NaN in its codebook",
         ["encode", "--vq", "vq_nan.safetensors", "--dataset", "imagefolder", "--data-path", "imgs",
          "--out", "t"], 1,
         ("NaN", "non-finite", "not finite"),
         setup=lambda: edit_component("vq.safetensors", "vq_nan.safetensors",
                                      tensor=("quantize.embedding.weight", b"\x00\x00\xc0\x7f"))),
    Case("resume-config-mismatch", "run directory whose checkpoint has another VQ config",
         TRAIN_VQ + ["--config", "vq32.json", "--out", "run"], 1,
         "run/checkpoint.safetensors: the checkpoint was made with other settings: model.",
         setup=lambda: (shutil.copytree(os.path.join(FIXTURES, "vqrun"), "run"),
                        write("vq32.json", json.dumps(dict(TINY_VQ, codebook_size=32))))),
    Case("resume-truncated", "run directory whose checkpoint is cut short",
         TRAIN_AR + ["--tokens", "tok", "--out", "run"], 1,
         "run/checkpoint.safetensors: file length does not match the header",
         setup=lambda: (shutil.copytree(os.path.join(FIXTURES, "gptrun"), "run"),
                        truncate("run/checkpoint.safetensors", "run/checkpoint.safetensors", 100))),
    # ---- token files and directories
    Case("tokens-out-of-vocab", "codes .npy with index 16 >= codebook size 16",
         DECODE + ["--tokens", "codes_16.npy", "--out", "d"], 1, "codes_16.npy",
         setup=lambda: codes_npy("codes_16.npy", set_first(16))),
    Case("tokens-float", "codes .npy of float32 (3.7, ...)",
         DECODE + ["--tokens", "codes_f.npy", "--out", "d"], 1, "integer",
         setup=lambda: codes_npy("codes_f.npy", as_float=True)),
    Case("tokens-big-endian", "codes .npy of big-endian int32",
         DECODE + ["--tokens", "codes_be.npy", "--out", "d"], 1,
         "codes_be.npy: unsupported .npy dtype '>i4'",
         setup=lambda: codes_npy("codes_be.npy", descr=">i4", pack=">%di")),
    Case("npy-huge-shape", ".npy header claiming 10^15 elements, 64 data bytes",
         DECODE + ["--tokens", "huge.npy", "--out", "d"], 1,
         "huge.npy: file length mismatch",
         setup=lambda: write_npy("huge.npy", "<i4", (1000000, 1000000, 1000), bytes(64))),
    Case("tokdir-out-of-vocab", "token directory with index 16 >= codebook size 16",
         TRAIN_AR + ["--tokens", "tok_bad", "--out", "run"], 1,
         "tok_bad/codes.npy: codes must be in [0, 16), got range [0, 16]",
         setup=lambda: (copy_tok("tok_bad"), codes_npy("tok_bad/codes.npy", set_first(16)))),
    Case("tokdir-bad-meta", "token directory whose meta.json is not JSON",
         TRAIN_AR + ["--tokens", "tok_bad", "--out", "run"], 1, "tok_bad/meta.json: not valid JSON",
         setup=lambda: (copy_tok("tok_bad"), write("tok_bad/meta.json", '{"codebook_size": 16'))),
    # ---- files of another tokenizer
    Case("tokens-other-tokenizer", "token directory made by another tokenizer (decode)",
         DECODE[:-1] + ["vq_other.safetensors", "--tokens", "tok", "--out", "d"], 1,
         "tok: tokens were made by tokenizer",
         setup=lambda: edit_component("vq.safetensors", "vq_other.safetensors",
                                      tensor=("quantize.embedding.weight", b"\x00\x00\x80\x3f"))),
    Case("gpt-other-tokenizer", "GPT trained on tokens of another tokenizer",
         SAMPLE[:2] + ["vq_other.safetensors"] + SAMPLE[3:] + ["--out", "s"], 1,
         "gpt.safetensors: was trained on tokens of another tokenizer",
         setup=lambda: edit_component("vq.safetensors", "vq_other.safetensors",
                                      tensor=("quantize.embedding.weight", b"\x00\x00\x80\x3f"))),
    Case("clusters-other-tokenizer", "cluster file of another tokenizer (train-ar)",
         TRAIN_AR + ["--tokens", "tok", "--clusters", "cl_other.safetensors", "--out", "run"], 1,
         "clusters file 'cl_other.safetensors' was made for tokenizer",
         setup=lambda: edit_component("clusters.safetensors", "cl_other.safetensors",
                                      meta=lambda m: m.update(tokenizer_hash="ab" * 32))),
    Case("clusters-inconsistent", "cluster file whose coarse_of disagrees with its member lists",
         TRAIN_AR + ["--tokens", "tok", "--clusters", "cl_bad.safetensors", "--out", "run"], 1,
         "cl_bad.safetensors: code 0 is a member of cluster 0 but coarse_of says 99",
         setup=lambda: edit_component("clusters.safetensors", "cl_bad.safetensors",
                                      tensor=("coarse_of", struct.pack("<i", 99)))),
    Case("val-tokens-other-tokenizer", "validation tokens of another tokenizer",
         TRAIN_AR + ["--tokens", "tok", "--val-tokens", "tok_other", "--out", "run"], 1, "tok_other",
         setup=lambda: copy_tok("tok_other", meta=lambda m: m.update(tokenizer_hash="ab" * 32))),
    # ---- datasets
    Case("image-truncated", "ImageFolder PNG cut short; --out is an existing token directory",
         ENCODE + ["--data-path", "bad", "--out", "tok"], 1,
         "bad/a/0.png: cannot decode PNG image: corrupt or truncated data",
         setup=lambda: bad_image_folder("bad", png_bytes(8, 8, 0)[:-20])),
    Case("image-not-image", "ImageFolder .png holding text",
         ENCODE + ["--data-path", "bad", "--out", "t"], 1,
         "bad/a/0.png: not a PNG or JPEG file (unrecognised signature)",
         setup=lambda: bad_image_folder("bad", b"not an image\n")),
    Case("image-corrupt-zlib", "ImageFolder PNG with corrupt compressed data (valid CRC)",
         ENCODE + ["--data-path", "bad", "--out", "t"], 1,
         "bad/a/0.png: cannot decode PNG image: corrupt or truncated data",
         setup=lambda: bad_image_folder("bad", png_with_corrupt_idat())),
    Case("image-huge", "ImageFolder PNG header claiming 100000 x 100000 pixels",
         ENCODE + ["--data-path", "bad", "--out", "t"], 1, ("exceeds the limit", "too large"),
         setup=lambda: bad_image_folder("bad", png_with_huge_size())),
    Case("image-size-differs", "ImageFolder with one 12x12 image among 8x8 ones",
         ENCODE + ["--data-path", "bad", "--out", "t"], 1,
         "bad/b/2.png: image size [12, 12, 3] differs from [8, 8, 3]",
         setup=lambda: bad_image_folder("bad", png_bytes(12, 12, 0), file="b/2")),
    Case("image-skip-bad", "ImageFolder with a corrupt image and the skip-bad-files option",
         ENCODE + ["--data-path", "bad", "--skip-bad", "--out", "t"], 0,
         "skipping unreadable image",
         setup=lambda: bad_image_folder("bad", b"not an image\n")),
    Case("dataset-missing", "ImageFolder path that does not exist",
         ENCODE + ["--data-path", "nonexistent", "--out", "t"], 1,
         "nonexistent: imagefolder path is not a directory"),
    Case("dataset-no-images", "ImageFolder whose class folder holds no images",
         ENCODE + ["--data-path", "empty", "--out", "t"], 1,
         "dataset imagefolder (empty, split train): no images",
         setup=lambda: os.makedirs("empty/a")),
    Case("batch-above-dataset", "--batch larger than the 10 training images",
         TRAIN_VQ[:-2] + ["--config", "vq.json", "--batch", "32", "--out", "run"], 1,
         "batch size 32 must be between 1 and the dataset size 10",
         setup=lambda: write("vq.json", json.dumps(TINY_VQ))),
    # ---- LlamaGen import
    Case("import-not-pt", "text file given to import-llamagen",
         ["import-llamagen", "notes.txt", "--out", "imp.safetensors"], 1,
         "notes.txt: not a PyTorch zip checkpoint (no ZIP signature)"),
    Case("import-safetensors", "safetensors file given to import-llamagen",
         ["import-llamagen", "vq.safetensors", "--out", "imp.safetensors"], 1,
         "vq.safetensors: this is a safetensors file, not a PyTorch .pt checkpoint"),
    Case("import-truncated-zip", ".pt (ZIP) file cut short",
         ["import-llamagen", "cut.pt", "--out", "imp.safetensors"], 1,
         "cut.pt: not a ZIP archive or truncated",
         setup=lambda: (pickle_zip("full.pt", b"\x80\x02}q\x00."),
                        truncate("full.pt", "cut.pt", 60), os.remove("full.pt"))),
    Case("import-pickle-global", ".pt whose pickle calls posix.system('touch pwned')",
         ["import-llamagen", "evil.pt", "--out", "imp.safetensors"], 1, "posix.system",
         setup=lambda: pickle_zip("evil.pt", b"\x80\x02cposix\nsystem\nq\x00X\x0b\x00\x00\x00"
                                             b"touch pwnedq\x01\x85q\x02Rq\x03.")),
    Case("import-name-args-clash", "GPT .pt named _384 whose saved args say image_size 256",
         ["import-llamagen", "c2i_tiny_384.pt", "--out", "imp.safetensors"], 1,
         "c2i_tiny_384.pt: the file name 'c2i_tiny_384.pt' says 384px images but args.image_size "
         "is 256; give --image-size to choose",
         setup=lambda: llamagen_gpt_zip("c2i_tiny_384.pt", {"gpt_type": "c2i", "image_size": 256})),
    # ---- outputs
    Case("out-under-file", "--out below a regular file",
         DECODE + ["--tokens", "tok", "--out", "notes.txt/sub"], 1,
         "notes.txt/sub: cannot create directory (Not a directory)"),
    Case("out-in-proc", "--out file in /proc (not writable)",
         CLUSTER + ["--out", "/proc/ctfgen-test.safetensors"], 1,
         "/proc/ctfgen-test.safetensors: cannot create temporary file"),
    Case("out-is-directory", "--out file that is an existing directory",
         CLUSTER + ["--out", "imgs"], 1, "imgs: cannot rename temporary file into place"),
    Case("out-same-as-input", "cluster --out naming its own --vq input",
         CLUSTER + ["--out", "vq.safetensors"], 2, "--out"),
    Case("existing-samples-kept", "sample into a directory holding an earlier grid.png fails",
         SAMPLE[:4] + ["gpt_v32.safetensors", "--out", "old"], 1,
         "gpt_v32.safetensors: tensors do not match the model",
         setup=lambda: (edit_component("gpt.safetensors", "gpt_v32.safetensors",
                                       config=lambda c: c.update(vocab_size=32)),
                        write("old/grid.png", png_bytes(8, 8, 5)))),
]

# --------------------------------------------------------------------------------------------
# Running

FIXTURES = None  # set in main()
CRASH_MARKERS = ["terminate called", "Traceback (most recent call last)", "Sanitizer",
                 "runtime error:", "Segmentation fault", "core dumped", "Exception raised from",
                 "Assertion", "what():"]


def env():
    e = dict(os.environ)
    e["CTFGEN_BLAS_PREPARED"] = "1"
    e.pop("CTFGEN_TEST_CRASH_AFTER_BYTES", None)
    return e


def ctfgen_argv(binary, argv):
    return [binary] + ([] if argv and argv[0].startswith("-") else ["--threads", "1"]) + argv


def run_ok(binary, argv, cwd):
    r = subprocess.run(ctfgen_argv(binary, ["-v", "0"] + argv), cwd=cwd, env=env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if r.returncode != 0:
        sys.exit("fixture step failed: ctfgen %s\n%s" % (shlex.join(argv), r.stderr))


def make_fixtures(binary, root):
    d = os.path.join(root, "fixtures")
    os.makedirs(d)
    for c in ("a", "b"):
        for i in range(6):
            write(os.path.join(d, "imgs", c, "%d.png" % i), png_bytes(8, 8, i + 10 * (c == "b")))
    write(os.path.join(d, "vq.json"), json.dumps(TINY_VQ))
    run_ok(binary, ["train-vq", "--dataset", "imagefolder", "--data-path", "imgs", "--config",
                    "vq.json", "--steps", "2", "--batch", "4", "--eval-limit", "2", "--out",
                    "vqrun"], d)
    run_ok(binary, ["encode", "--vq", "vqrun/vq.safetensors", "--dataset", "imagefolder",
                    "--data-path", "imgs", "--out", "tok"], d)
    # Deterministic codes (covering 0..15), so that messages do not depend on the training.
    _, shape, payload = read_npy(os.path.join(d, "tok", "codes.npy"))
    n = len(payload) // 4
    write_npy(os.path.join(d, "tok", "codes.npy"), "<i4", shape,
              struct.pack("<%di" % n, *[(i * 5) % 16 for i in range(n)]))
    run_ok(binary, ["cluster", "--vq", "vqrun/vq.safetensors", "--k", "4", "--restarts", "1",
                    "--out", "clusters.safetensors"], d)
    run_ok(binary, ["train-ar", "--tokens", "tok", "--out", "gptrun", "--preset", "tiny",
                    "--steps", "1", "--batch", "2", "--val-batches", "0"], d)
    shutil.copy(os.path.join(d, "vqrun", "vq.safetensors"), os.path.join(d, "vq.safetensors"))
    shutil.copy(os.path.join(d, "gptrun", "model.safetensors"), os.path.join(d, "gpt.safetensors"))
    write(os.path.join(d, "notes.txt"), "a plain text file\n")
    os.remove(os.path.join(d, "vq.json"))
    return d


BASE = ["imgs", "tok", "vq.safetensors", "gpt.safetensors", "clusters.safetensors", "notes.txt"]


def snapshot(root):
    files, dirs = {}, set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames:
            dirs.add(os.path.relpath(os.path.join(dirpath, n), root))
        for n in filenames:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return files, dirs


def first_line(stderr):
    """The first error line, else the first warning, else ''."""
    lines = stderr.splitlines()
    for l in lines:
        if l.startswith("error:") or l.startswith("interrupted:"):
            return l
    for l in lines:
        if l.startswith("[ctfgen warning]"):
            return l
    return ""


HASH_RE = re.compile(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{12,64}\b")
TMP_RE = re.compile(r"\.tmp\.\d+\.\d+")


def normalise(text, case_dir):
    """Masks what differs between machines and runs: the case directory, tokenizer hashes
    (depend on the trained weights), temporary-file suffixes (pid, random)."""
    text = text.replace(case_dir + "/", "").replace(case_dir, ".")
    text = HASH_RE.sub("<hash>", text)
    return TMP_RE.sub(".tmp.<pid>.<n>", text)


def run_case(case, root):
    d = os.path.join(root, "cases", case.id)
    os.makedirs(d)
    for name in BASE:
        src = os.path.join(FIXTURES, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(d, name))
    if case.setup:
        cwd = os.getcwd()
        os.chdir(d)  # setups use relative paths; cases are set up one at a time (see main)
        try:
            case.setup()
        finally:
            os.chdir(cwd)
    return d


def execute(binary, case, d):
    before, dirs_before = snapshot(d)
    t0 = time.monotonic()
    try:
        r = subprocess.run(ctfgen_argv(binary, case.argv), cwd=d, env=env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        rc, out, err = r.returncode, r.stdout.decode("utf-8", "replace"), \
            r.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", "", (e.stderr or b"").decode("utf-8", "replace")
    seconds = time.monotonic() - t0
    after, dirs_after = snapshot(d)
    problems = []
    if rc != case.rc:
        problems.append("exit %s, expected %d" % (rc, case.rc))
    if isinstance(rc, int) and rc < 0:
        problems.append("killed by signal %d" % -rc)
    expect = case.expect if isinstance(case.expect, tuple) else (case.expect,)
    if not any(x in err for x in expect):
        problems.append("stderr lacks %s" % " or ".join(repr(x) for x in expect))
    for m in CRASH_MARKERS:
        if m in err or m in out:
            problems.append("output contains %r" % m)
    for path, digest in before.items():
        if path not in after:
            problems.append("removed %s" % path)
        elif after[path] != digest:
            problems.append("modified %s" % path)
    new = sorted(set(after) - set(before))
    for path in new:
        if case.rc != 0 or ".tmp" in path:
            problems.append("left behind %s" % path)
    line = normalise(first_line(err), d)
    return {"rc": rc, "problems": problems, "line": line, "seconds": seconds,
            "stderr": normalise(err, d), "new_dirs": sorted(dirs_after - dirs_before)}


def md_escape(text):
    return text.replace("|", "\\|")


def code(text):
    text = md_escape(text)
    tick = "``" if "`" in text else "`"
    pad = " " if tick == "``" else ""
    return "%s%s%s%s%s" % (tick, pad, text, pad, tick)


def markdown(results):
    out = ["| # | id | bad input | command | exit | first error line |",
           "|---|---|---|---|---|---|"]
    notes = []
    for i, (case, res) in enumerate(results, 1):
        cmd = "ctfgen " + shlex.join(case.argv)
        rc = str(res["rc"])
        if case.xfail:
            rc += " (should be %d), xfail" % case.rc if res["rc"] != case.rc else ", xfail"
            notes.append("- `%s`: %s. Expected: exit %d and %s in the message." % (
                case.id, case.xfail, case.rc, " or ".join(repr(x) for x in (
                    case.expect if isinstance(case.expect, tuple) else (case.expect,)))))
        line = res["line"]
        if len(line) > 300:
            line = line[:300] + " …"
        out.append("| %d | `%s` | %s | %s | %s | %s |" % (i, case.id, md_escape(case.desc), code(cmd),
                                                       rc, code(line) if line else "(no error message)"))
    text = "\n".join(out) + "\n"
    if notes:
        text += "\nKnown problems (rows marked xfail; the script expects the behaviour described " \
                "and reports these cases as expected failures until it is there):\n\n" + \
                "\n".join(notes) + "\n"
    return text


def main():
    global FIXTURES
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ctfgen", help="path of the ctfgen binary")
    ap.add_argument("--markdown", action="store_true", help="print the markdown table instead")
    ap.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1),
                    help="cases run in parallel (default: CPUs, at most 4)")
    ap.add_argument("-k", default="", help="run only cases whose id contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="print stderr of failures")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    binary = os.path.abspath(args.ctfgen)
    if not os.access(binary, os.X_OK):
        sys.exit("not an executable: %s" % args.ctfgen)
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    cases = [c for c in CASES if args.k in c.id]
    t0 = time.monotonic()
    root = tempfile.mkdtemp(prefix="ctfgen_bad_inputs_")
    try:
        FIXTURES = make_fixtures(binary, root)
        t_fix = time.monotonic() - t0
        dirs = [run_case(c, root) for c in cases]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda cd: execute(binary, *cd), zip(cases, dirs)))
    finally:
        if args.keep:
            print("kept %s" % root, file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    pairs = list(zip(cases, results))
    if args.markdown:
        sys.stdout.write(markdown(pairs))
        return 0
    failed = xfailed = 0
    for case, res in pairs:
        if case.xfail:
            status = "XFAIL" if res["problems"] else "XPASS"
        else:
            status = "FAIL" if res["problems"] else "PASS"
        failed += status in ("FAIL", "XPASS")
        xfailed += status == "XFAIL"
        detail = "; ".join(res["problems"]) if status == "FAIL" else \
            (case.xfail if status == "XFAIL" else
             "passes now: remove its xfail mark" if status == "XPASS" else "")
        print("%-5s %-36s exit %-3s %5.1f s  %s" % (status, case.id, res["rc"], res["seconds"], detail))
        if args.verbose and status == "XFAIL":
            print("        problems: " + "; ".join(res["problems"]))
        if args.verbose and res["new_dirs"] and case.rc != 0:
            print("        note: new (empty) directories left: " + ", ".join(res["new_dirs"]))
        if status in ("FAIL", "XPASS") or (args.verbose and status == "XFAIL"):
            for l in res["stderr"].splitlines()[-5:]:
                print("        | " + l)
    total = time.monotonic() - t0
    print("%d cases: %d passed, %d expected failures, %d failed (%.1f s, fixtures %.1f s)" % (
        len(pairs), len(pairs) - failed - xfailed, xfailed, failed, total, t_fix))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
