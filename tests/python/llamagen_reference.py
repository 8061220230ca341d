#!/usr/bin/python3
"""Reference forward passes of LlamaGen's VQ decoder and c2i GPT, written from the architecture
description of LlamaGen's vq_model.py and gpt.py, in float64,
straight from a checkpoint's state dict. It is the oracle for ctfgen's imported models.

  llamagen_reference.py vq-decode CKPT --grid G --batch B --out OUT.f32
      decodes the fixed tokens idx[b, i] = (131 b + 7 i + 3) mod V (raster order, G x G grid);
      writes float32 [B, 3, 2^(levels-1) G, same] little-endian.
  llamagen_reference.py gpt-logits CKPT --block-size T --n-head H --seq S --batch B --out OUT.f32
      runs [class, z_0 .. z_{S-1}] with label[b] = 3 b mod classes and
      z[b, t] = (97 b + 13 t + 5) mod V; writes float32 logits [B, S + 1, V].

CKPT is a torch.save file (our own test files: trusted) holding the state dict directly or
under "model" / "module" / "state_dict".
"""
import argparse
import math
import sys

import torch
import torch.nn.functional as F

DT = torch.float64


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu")
    for key in ("model", "module", "state_dict"):
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
            break
    return {k: v.to(DT) for k, v in obj.items() if torch.is_tensor(v) and v.is_floating_point()}


# ---------------------------------------------------------------------------------------------
# VQ decoder (LlamaGen vq_model.py: Decoder)

def group_norm(sd, p, x):
    return F.group_norm(x, 32, sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)


def conv(sd, p, x, pad):
    return F.conv2d(x, sd[p + ".weight"], sd[p + ".bias"], padding=pad)


def swish(x):
    return x * torch.sigmoid(x)


def resblock(sd, p, x):
    h = conv(sd, p + ".conv1", swish(group_norm(sd, p + ".norm1", x)), 1)
    h = conv(sd, p + ".conv2", swish(group_norm(sd, p + ".norm2", h)), 1)
    if p + ".nin_shortcut.weight" in sd:
        x = conv(sd, p + ".nin_shortcut", x, 0)
    return x + h


def attnblock(sd, p, x):
    b, c, hh, ww = x.shape
    h = group_norm(sd, p + ".norm", x)
    q = conv(sd, p + ".q", h, 0).reshape(b, c, hh * ww)
    k = conv(sd, p + ".k", h, 0).reshape(b, c, hh * ww)
    v = conv(sd, p + ".v", h, 0).reshape(b, c, hh * ww)
    logits = torch.einsum("bci,bcj->bij", q, k) * c ** -0.5  # [query i, key j]
    w = torch.softmax(logits, dim=2)
    out = torch.einsum("bij,bcj->bci", w, v).reshape(b, c, hh, ww)
    return x + conv(sd, p + ".proj_out", out, 0)


def count(sd, prefix):
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in sd):
        n += 1
    return n


def vq_decode(sd, idx):
    """idx: [B, G, G] int64 -> image [B, 3, H, W]."""
    codebook = F.normalize(sd["quantize.embedding.weight"], dim=-1)
    z = codebook[idx].permute(0, 3, 1, 2)  # [B, D, G, G]
    x = conv(sd, "post_quant_conv", z, 0)
    x = conv(sd, "decoder.conv_in", x, 1)
    x = resblock(sd, "decoder.mid.0", x)
    x = attnblock(sd, "decoder.mid.1", x)
    x = resblock(sd, "decoder.mid.2", x)
    levels = count(sd, "decoder.conv_blocks.")
    for i in range(levels):
        p = f"decoder.conv_blocks.{i}"
        n_res = count(sd, p + ".res.")
        n_attn = count(sd, p + ".attn.")
        for r in range(n_res):
            x = resblock(sd, f"{p}.res.{r}", x)
            if r < n_attn:
                x = attnblock(sd, f"{p}.attn.{r}", x)
        if p + ".upsample.conv.weight" in sd:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = conv(sd, p + ".upsample.conv", x, 1)
    x = swish(group_norm(sd, "decoder.norm_out", x))
    return conv(sd, "decoder.conv_out", x, 1)


# ---------------------------------------------------------------------------------------------
# c2i GPT (LlamaGen gpt.py: Transformer)

def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_table(block_size, head_dim, base=10000.0, cls_tokens=1):
    """[cls_tokens + grid^2, head_dim / 2, 2] (cos, sin); class rows are all zero."""
    grid = math.isqrt(block_size)
    assert grid * grid == block_size
    half = head_dim // 2
    k = torch.arange(half // 2, dtype=DT)
    theta = base ** (-2.0 * k / half)
    rows = []
    for r in range(grid):
        for c in range(grid):
            rows.append(torch.cat([r * theta, c * theta]))
    ang = torch.stack(rows)  # [grid^2, half]
    table = torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)
    return torch.cat([torch.zeros(cls_tokens, half, 2, dtype=DT), table])


def apply_rope(x, table):
    """x: [B, S, H, hd]; table: [S, hd/2, 2]; interleaved pairs (2j, 2j+1)."""
    b, s, h, hd = x.shape
    xp = x.reshape(b, s, h, hd // 2, 2)
    cos = table[:s, None, :, 0]
    sin = table[:s, None, :, 1]
    x0, x1 = xp[..., 0], xp[..., 1]
    return torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1).reshape(b, s, h, hd)


def gpt_logits(sd, labels, tokens, block_size, n_head):
    """labels [B], tokens [B, S] -> logits [B, S + 1, V]."""
    dim = sd["tok_embeddings.weight"].shape[1]
    hd = dim // n_head
    x = torch.cat([sd["cls_embedding.embedding_table.weight"][labels][:, None],
                   sd["tok_embeddings.weight"][tokens]], dim=1)
    b, s, _ = x.shape
    table = rope_table(block_size, hd)
    mask = torch.ones(s, s, dtype=torch.bool).tril()
    for i in range(count(sd, "layers.")):
        p = f"layers.{i}."
        h = rms_norm(x, sd[p + "attention_norm.weight"])
        q, k, v = (h @ sd[p + "attention.wqkv.weight"].T).split(dim, dim=-1)
        q = apply_rope(q.reshape(b, s, n_head, hd), table).transpose(1, 2)
        k = apply_rope(k.reshape(b, s, n_head, hd), table).transpose(1, 2)
        v = v.reshape(b, s, n_head, hd).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(b, s, dim)
        x = x + o @ sd[p + "attention.wo.weight"].T
        h = rms_norm(x, sd[p + "ffn_norm.weight"])
        ff = F.silu(h @ sd[p + "feed_forward.w1.weight"].T) * (h @ sd[p + "feed_forward.w3.weight"].T)
        x = x + ff @ sd[p + "feed_forward.w2.weight"].T
    return rms_norm(x, sd["norm.weight"]) @ sd["output.weight"].T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a1 = sub.add_parser("vq-decode")
    a1.add_argument("ckpt")
    a1.add_argument("--grid", type=int, default=2)
    a1.add_argument("--batch", type=int, default=2)
    a1.add_argument("--out", required=True)
    a2 = sub.add_parser("gpt-logits")
    a2.add_argument("ckpt")
    a2.add_argument("--block-size", type=int, default=256)
    a2.add_argument("--n-head", type=int, required=True)
    a2.add_argument("--seq", type=int, default=8)
    a2.add_argument("--batch", type=int, default=2)
    a2.add_argument("--out", required=True)
    a = ap.parse_args()
    sd = load_state_dict(a.ckpt)
    with torch.no_grad():
        if a.cmd == "vq-decode":
            V = sd["quantize.embedding.weight"].shape[0]
            i = torch.arange(a.grid * a.grid)
            idx = torch.stack([(131 * b + 7 * i + 3) % V for b in range(a.batch)])
            out = vq_decode(sd, idx.reshape(a.batch, a.grid, a.grid))
        else:
            V = sd["tok_embeddings.weight"].shape[0]
            classes = sd["cls_embedding.embedding_table.weight"].shape[0] - 1
            t = torch.arange(a.seq)
            tokens = torch.stack([(97 * b + 13 * t + 5) % V for b in range(a.batch)])
            labels = torch.tensor([(3 * b) % classes for b in range(a.batch)])
            out = gpt_logits(sd, labels, tokens, a.block_size, a.n_head)
    out.to(torch.float32).contiguous().numpy().tofile(a.out)
    print(list(out.shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
