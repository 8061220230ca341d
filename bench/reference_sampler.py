#!/usr/bin/python3
"""PyTorch eager reference for `ctfgen bench`: the LlamaGen class-conditional GPT and its
KV-cache sampler, written from LlamaGen's architecture (gpt.py, generate.py), not
from LlamaGen's code or from ctfgen's C++.

It loads a ctfgen GPT component file (safetensors, parsed here with the standard library: 8-byte
little-endian header length, JSON header, raw little-endian data; __metadata__["config"] is the
GPTConfig JSON) and runs one of:

  info                              torch version, threads, BLAS library in this process
  logits  --input IN --out OUT      teacher-forced forward of IN's "input.tokens" [B, T] and
                                    "input.labels" [B] -> OUT "logits" [B, T, V] float32
  greedy  --labels 1,2 --cfg S --out OUT
                                    argmax sampling with guidance -> OUT "tokens" [B, T] int64
  sample  --batch B --cfg S --temperature t --top-k k --seed n
                                    times sampling of B images (CFG batch of 2B rows)
  train   --batch B --iters n --seed n
                                    times training steps: forward, cross-entropy, backward,
                                    gradient clipping 1.0, torch.optim.AdamW

Every mode prints one JSON object on stdout. Run with /usr/bin/python3 (Debian python3-torch);
needs only the standard library, numpy and torch. `--threads N` calls torch.set_num_threads(N);
`--device cuda` runs on a GPU (timers wait for it); `--dtype bf16` converts the sampled model
(the logits and greedy checks and training stay fp32).

Model: position 0 is the class token (row num_classes = null class), position k + 1 is image
token k. Pre-norm blocks: RMSNorm (fp32, cast back, times weight), fused wqkv split q | k | v,
2D RoPE with interleaved pairs (first half of the pairs from the grid row, second half from the
column, class row cos = sin = 0), softmax attention with scale 1/sqrt(head_dim), wo, SwiGLU FFN
w2(silu(w1 x) * w3 x), final RMSNorm, untied head, fp32 logits.

KV cache: preallocated per layer like LlamaGen's ([rows, H, S_max, hd], S_max = 1 + T rounded up
to a multiple of 8) and written in place. Each decode step attends to the filled prefix (LlamaGen
attends to all S_max positions with a boolean mask because torch.compile wants static shapes; in
eager mode the prefix is the natural choice, and it is what ctfgen does).
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# safetensors (stdlib + numpy)

_NP = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """-> ({name: torch.Tensor}, {metadata key: str})"""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError("%s: header length %d exceeds the file" % (path, n))
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        dt = info["dtype"]
        raw = data[base + b:base + e]
        if dt == "BF16":  # numpy has no bfloat16: widen the 16 bits to float32, then cast
            u16 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            t = torch.from_numpy(u16.view(np.float32).reshape(info["shape"]).copy())
            out[name] = t.to(torch.bfloat16)
            continue
        arr = np.frombuffer(raw, dtype=_NP[dt]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[a.dtype]
        raw = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header).encode("utf-8")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# model

def rope_table(grid, head_dim, base, cls_rows=1):
    """(cls_rows + grid^2, head_dim/2, 2) float32 (cos, sin); class rows all zero."""
    half = head_dim // 2
    quarter = head_dim // 4
    theta = 1.0 / (base ** (torch.arange(0, half, 2)[:quarter].float() / half))
    t = torch.arange(grid, dtype=torch.float32)
    ang = torch.outer(t, theta)                                  # [grid, quarter]
    cell = torch.cat([ang[:, None, :].expand(grid, grid, quarter),   # row part
                      ang[None, :, :].expand(grid, grid, quarter)],  # column part
                     dim=-1).reshape(grid * grid, half)
    table = torch.stack([torch.cos(cell), torch.sin(cell)], dim=-1)
    return torch.cat([torch.zeros(cls_rows, half, 2), table], dim=0)


def rotate(x, rows):
    """x [B, S, H, hd], rows [S, hd/2, 2] -> rotated x (pairs (2j, 2j+1)), computed in fp32."""
    B, S, H, hd = x.shape
    xp = x.float().reshape(B, S, H, hd // 2, 2)
    cos = rows[:, :, 0].view(1, S, 1, hd // 2)
    sin = rows[:, :, 1].view(1, S, 1, hd // 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1)
    return out.flatten(3).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


class FeedForward(nn.Module):
    def __init__(self, dim, hidden, p):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.ffn_dropout = nn.Dropout(p)

    def forward(self, x):
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class Attention(nn.Module):
    def __init__(self, dim, n_head, p):
        super().__init__()
        self.dim, self.n_head, self.head_dim = dim, n_head, dim // n_head
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.resid_dropout = nn.Dropout(p)
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.k_cache = None
        self.v_cache = None

    def forward(self, x, rows, mask=None, start=None):
        B, S, _ = x.shape
        H, hd = self.n_head, self.head_dim
        q, k, v = self.wqkv(x).split(self.dim, dim=-1)
        q = rotate(q.view(B, S, H, hd), rows).transpose(1, 2)
        k = rotate(k.view(B, S, H, hd), rows).transpose(1, 2)
        v = v.view(B, S, H, hd).transpose(1, 2)
        if start is not None:  # cached inference: write in place, attend to the filled prefix
            end = start + S
            self.k_cache[:B, :, start:end].copy_(k)
            self.v_cache[:B, :, start:end].copy_(v)
            k = self.k_cache[:B, :, :end]
            v = self.v_cache[:B, :, :end]
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        y = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.resid_dropout(self.wo(y.transpose(1, 2).reshape(B, S, self.dim)))


class Block(nn.Module):
    def __init__(self, dim, n_head, hidden, eps, resid_p, ffn_p):
        super().__init__()
        self.attention = Attention(dim, n_head, resid_p)
        self.feed_forward = FeedForward(dim, hidden, ffn_p)
        self.attention_norm = RMSNorm(dim, eps)
        self.ffn_norm = RMSNorm(dim, eps)

    def forward(self, x, rows, mask=None, start=None):
        h = x + self.attention(self.attention_norm(x), rows, mask, start)
        return h + self.feed_forward(self.ffn_norm(h))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, dim, p):
        super().__init__()
        self.num_classes, self.p = num_classes, p
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels):
        if self.training and self.p > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.p
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels).unsqueeze(1)


class GPT(nn.Module):
    def __init__(self, cfg, hidden):
        super().__init__()
        D = cfg["dim"]
        self.cfg = cfg
        self.num_classes = cfg["num_classes"]
        self.vocab = cfg["vocab_size"]
        self.block_size = cfg["block_size"]
        self.cls_embedding = LabelEmbedder(cfg["num_classes"], D, cfg["class_dropout_prob"])
        self.tok_embeddings = nn.Embedding(cfg["vocab_size"], D)
        self.tok_dropout = nn.Dropout(cfg["token_dropout_p"])
        self.layers = nn.ModuleList(
            Block(D, cfg["n_head"], hidden, cfg["norm_eps"], cfg["resid_dropout_p"],
                  cfg["ffn_dropout_p"]) for _ in range(cfg["n_layer"]))
        self.norm = RMSNorm(D, cfg["norm_eps"])
        self.output = nn.Linear(D, cfg["vocab_size"], bias=False)
        grid = int(round(math.sqrt(self.block_size)))
        self.rope = rope_table(grid, D // cfg["n_head"], cfg["rope_base"])  # not a buffer
        self.max_seq = (1 + self.block_size + 7) // 8 * 8

    def head(self, h):
        return self.output(self.norm(h)).float()

    def forward_train(self, tokens, labels):
        """tokens [B, T], labels [B] -> logits [B, T, V]; input [class, tok_0 .. tok_{T-2}]."""
        x = torch.cat([self.cls_embedding(labels), self.tok_embeddings(tokens[:, :-1])], dim=1)
        x = self.tok_dropout(x)
        S = x.shape[1]
        mask = torch.ones(S, S, dtype=torch.bool, device=x.device).tril()
        rows = self.rope_on(x.device)[:S]
        for layer in self.layers:
            x = layer(x, rows, mask)
        return self.head(x)

    def rope_on(self, device):
        if self.rope.device != device:
            self.rope = self.rope.to(device)
        return self.rope

    def setup_cache(self, rows):
        w = self.tok_embeddings.weight
        for layer in self.layers:
            a = layer.attention
            shape = (rows, a.n_head, self.max_seq, a.head_dim)
            a.k_cache = torch.zeros(shape, dtype=w.dtype, device=w.device)
            a.v_cache = torch.zeros(shape, dtype=w.dtype, device=w.device)

    def prefill(self, labels):
        """labels [R] -> logits [R, V] for image token 0."""
        x = self.cls_embedding(labels)
        rows = self.rope_on(x.device)[0:1]
        for layer in self.layers:
            x = layer(x, rows, None, 0)
        return self.head(x)[:, 0]

    def decode(self, tokens, pos):
        """tokens [R] (image token pos-1) at sequence position pos -> logits [R, V]."""
        x = self.tok_embeddings(tokens).unsqueeze(1)
        rows = self.rope_on(x.device)[pos:pos + 1]
        for layer in self.layers:
            x = layer(x, rows, None, pos)
        return self.head(x)[:, 0]


def load_gpt(path):
    W, meta = read_safetensors(path)
    cfg = json.loads(meta["config"])
    if meta.get("kind", "gpt") != "gpt":
        raise ValueError("%s: kind %s, expected gpt" % (path, meta.get("kind")))
    hidden = W["layers.0.feed_forward.w1.weight"].shape[0]
    model = GPT(cfg, hidden)
    state = {k: v for k, v in W.items() if k in dict(model.named_parameters())}
    missing = set(dict(model.named_parameters())) - set(state)
    if missing:
        raise ValueError("%s: missing tensors %s" % (path, sorted(missing)[:5]))
    model.load_state_dict(state, strict=True)
    return model, cfg


# ---------------------------------------------------------------------------------------------
# sampling (LlamaGen generate.py)

def choose(logits, B, cfg_scale, temperature, top_k, argmax, gen):
    """logits [R, V] (R = 2B with guidance: conditional rows first) -> tokens [B]."""
    if cfg_scale > 1.0:
        cond, uncond = logits[:B], logits[B:]
        logits = uncond + (cond - uncond) * cfg_scale
    logits = logits / max(temperature, 1e-5)
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if argmax:
        return logits.argmax(-1)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(1)


def sample(model, labels, cfg_scale, temperature, top_k, argmax, gen, steps=None):
    """labels [B] -> tokens [B, T]. `steps` < T stops early (warm-up)."""
    B = labels.shape[0]
    T = model.block_size if steps is None else steps
    lab = labels
    if cfg_scale > 1.0:
        lab = torch.cat([labels, torch.full((B,), model.num_classes, dtype=torch.long,
                                            device=labels.device)])
    model.setup_cache(lab.shape[0])
    out = torch.empty(B, T, dtype=torch.long, device=labels.device)
    tok = choose(model.prefill(lab), B, cfg_scale, temperature, top_k, argmax, gen)
    out[:, 0] = tok
    for t in range(1, T):
        inp = torch.cat([tok, tok]) if cfg_scale > 1.0 else tok
        tok = choose(model.decode(inp, t), B, cfg_scale, temperature, top_k, argmax, gen)
        out[:, t] = tok
    return out


# ---------------------------------------------------------------------------------------------
# modes

def blas_library():
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1] if line.strip() else ""
                if "blas" in os.path.basename(p) or "blis" in os.path.basename(p):
                    return os.path.realpath(p)
    except OSError:
        pass
    return ""


def facts():
    return {"torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "blas_library": blas_library(),
            "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE", ""),
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_labels(B, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_classes, (B,), generator=g)


def sync(device):
    """Waits for the device's queued work before a timer is read (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mode_logits(args):
    model, _ = load_gpt(args.model)
    model.eval().to(args.device)  # the checks run in fp32 whatever --dtype says
    W, _ = read_safetensors(args.input)
    with torch.inference_mode():
        logits = model.forward_train(W["input.tokens"].long().to(args.device),
                                     W["input.labels"].long().to(args.device))
    write_safetensors(args.out, {"logits": logits.cpu()})
    return {"mode": "logits", "shape": list(logits.shape)}


def mode_greedy(args):
    model, _ = load_gpt(args.model)
    model.eval().to(args.device)
    labels = torch.tensor([int(x) for x in args.labels.split(",")], dtype=torch.long,
                          device=args.device)
    with torch.inference_mode():
        tokens = sample(model, labels, args.cfg, 1.0, 0, True, None)
    write_safetensors(args.out, {"tokens": tokens.cpu()})
    return {"mode": "greedy", "shape": list(tokens.shape)}


def mode_sample(args):
    model, cfg = load_gpt(args.model)
    model.eval().to(args.device, DTYPES[args.dtype])
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    labels = make_labels(args.batch, cfg["num_classes"], args.seed).to(args.device)
    times = []
    with torch.inference_mode():
        if args.warmup_steps > 0:  # same batch, a few decode steps: caches, threads, allocator
            sample(model, labels, args.cfg, args.temperature, args.top_k, False, gen,
                   steps=min(args.warmup_steps, model.block_size))
        for _ in range(args.iters):
            sync(args.device)
            t0 = time.perf_counter()
            tokens = sample(model, labels, args.cfg, args.temperature, args.top_k, False, gen)
            sync(args.device)
            times.append(time.perf_counter() - t0)
    return {"mode": "sample", "batch": args.batch, "seconds": times,
            "images_per_s": args.batch / min(times), "tokens_checksum": int(tokens.sum())}


def mode_train(args):
    model, cfg = load_gpt(args.model)
    model.train().to(args.device)  # training stays fp32
    torch.manual_seed(args.seed)  # dropout draws
    g = torch.Generator().manual_seed(args.seed)
    B, T = args.batch, cfg["block_size"]
    tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g).to(args.device)
    labels = torch.randint(0, cfg["num_classes"], (B,), generator=g).to(args.device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    params = decay + no_decay

    def step():
        opt.zero_grad(set_to_none=False)
        logits = model.forward_train(tokens, labels)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss)

    for _ in range(args.warmup):
        step()
    times, losses = [], []
    for _ in range(args.iters):
        sync(args.device)
        t0 = time.perf_counter()
        losses.append(step())  # float(loss) waits for the device too
        times.append(time.perf_counter() - t0)
    return {"mode": "train", "batch": B, "tokens_per_step": B * T, "seconds": times,
            "tokens_per_s": B * T / min(times), "loss": losses[-1]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["info", "logits", "greedy", "sample", "train"])
    ap.add_argument("--model", help="ctfgen GPT component file (safetensors)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input")
    ap.add_argument("--out")
    ap.add_argument("--labels", default="0,1")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1, help="train: untimed steps first")
    ap.add_argument("--warmup-steps", type=int, default=8,
                    help="sample: untimed decode steps at the same batch first")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="fp32", choices=sorted(DTYPES),
                    help="sample: weights and KV cache (logits checks and training stay fp32)")
    args = ap.parse_args(argv)
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device %s: this torch has no usable CUDA device" % args.device)
    torch.set_num_threads(max(1, args.threads))
    if args.mode != "info" and not args.model:
        ap.error("--model is required for mode " + args.mode)
    if args.iters < 1:
        ap.error("--iters must be >= 1")
    result = {"info": lambda a: {"mode": "info"}, "logits": mode_logits, "greedy": mode_greedy,
              "sample": mode_sample, "train": mode_train}[args.mode](args)
    result.update(facts())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
