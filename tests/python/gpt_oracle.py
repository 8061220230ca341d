#!/usr/bin/python3
"""Independent PyTorch oracle for the ctfgen GPT / aux model, written from the architecture
description of LlamaGen's gpt.py (not from the C++ code).

Usage: gpt_oracle.py IN.safetensors OUT.safetensors
IN holds the model tensors under their LlamaGen names, "input.tokens" [B, T] int64,
"input.labels" [B] int64 and __metadata__ "config" (GPTConfig or AuxConfig JSON). If the config
has "coarse_vocab" the auxiliary model is evaluated (bidirectional, input [cls, tok_0..tok_{T-1}],
logits at positions 1..T); otherwise the GPT training forward (causal, input
[cls, tok_0..tok_{T-2}], logits at positions 0..T-1). OUT gets "logits" [B, T, V] float32.
Only numpy/struct/json read and write the files.
"""
import json
import math
import struct
import sys

import numpy as np
import torch

DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[base + b:base + e], dtype=DT[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().numpy().astype(np.float32))
        raw = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rope_2d(grid, head_dim, base):
    # (1 + grid^2, head_dim/2) complex rotations; class row is 0 (cos = sin = 0).
    quarter = head_dim // 4
    theta = [base ** (-(2.0 * k) / (head_dim // 2)) for k in range(quarter)]
    rows = [torch.zeros(head_dim // 2, dtype=torch.complex128)]
    for r in range(grid):
        for c in range(grid):
            ang = torch.tensor([r * t for t in theta] + [c * t for t in theta], dtype=torch.float64)
            rows.append(torch.polar(torch.ones_like(ang), ang))
    return torch.stack(rows)


def rotate(x, rot):  # x [B, S, H, hd] float64, rot [S, hd/2] complex
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    y = xc * rot[None, :, None, :]
    return torch.view_as_real(y).reshape(x.shape)


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps) * w


def main():
    W, meta = read_safetensors(sys.argv[1])
    cfg = json.loads(meta["config"])
    W = {k: (v.double() if v.is_floating_point() else v) for k, v in W.items()}
    aux = "coarse_vocab" in cfg
    D, H, L, eps = cfg["dim"], cfg["n_head"], cfg["n_layer"], cfg["norm_eps"]
    hd = D // H
    grid = int(round(math.sqrt(cfg["block_size"])))
    rot = rope_2d(grid, hd, cfg["rope_base"])
    tokens, labels = W["input.tokens"].long(), W["input.labels"].long()
    B, T = tokens.shape
    inp = tokens if aux else tokens[:, :T - 1]
    x = torch.cat([W["cls_embedding.embedding_table.weight"][labels][:, None, :],
                   W["tok_embeddings.weight"][inp]], dim=1)
    S = x.shape[1]
    r = rot[:S]
    for i in range(L):
        p = "layers.%d." % i
        h = rmsnorm(x, W[p + "attention_norm.weight"], eps)
        qkv = h @ W[p + "attention.wqkv.weight"].T
        q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
        q = rotate(q.reshape(B, S, H, hd), r).permute(0, 2, 1, 3)
        k = rotate(k.reshape(B, S, H, hd), r).permute(0, 2, 1, 3)
        v = v.reshape(B, S, H, hd).permute(0, 2, 1, 3)
        s = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if not aux:
            s = s + torch.triu(torch.full((S, S), float("-inf"), dtype=s.dtype), diagonal=1)
        a = torch.softmax(s, dim=-1) @ v
        x = x + a.permute(0, 2, 1, 3).reshape(B, S, D) @ W[p + "attention.wo.weight"].T
        h = rmsnorm(x, W[p + "ffn_norm.weight"], eps)
        g = torch.nn.functional.silu(h @ W[p + "feed_forward.w1.weight"].T)
        u = h @ W[p + "feed_forward.w3.weight"].T
        x = x + (g * u) @ W[p + "feed_forward.w2.weight"].T
    x = rmsnorm(x, W["norm.weight"], eps)
    logits = x @ W["output.weight"].T
    if aux:
        logits = logits[:, 1:]
    write_safetensors(sys.argv[2], {"logits": logits.float()})


if __name__ == "__main__":
    main()
