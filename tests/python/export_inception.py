"""Oracle for tests/unit/test_inception.cpp. Builds torchvision's Inception3 with random weights
(weights=None, aux_logits=False, init_weights=True), gives every BatchNorm meaningful random
running statistics and affine parameters, and writes for each variant:
  weights_<variant>.safetensors   the state dict under torchvision's names (plain safetensors)
  io_<variant>.safetensors        "input" [2, 3, 40, 48] in [-1, 1], "pool" [2, 2048], "logits"
  fid_state_dict.pth              the fid weights as a torch.save'd dict (converter input)
Variants: "torchvision" (plain blocks, 1000 classes) and "fid" (this file's own re-statement of
the FID blocks patched in: average pools that exclude padding in Mixed_5b-5d, 6b-6e and 7b, a
3x3 stride-1 max pool in Mixed_7c; 1008 classes). The fid weights omit the BatchNorm
num_batches_tracked counters, like older state dicts. Input is resized to 299x299 bilinearly
(align_corners=False) before the network, as ctfgen does.
Usage: /usr/bin/python3 export_inception.py OUT_DIR"""
import os
import sys

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import inception as tvi

sys.path.insert(0, os.path.dirname(__file__))
import st_numpy  # noqa: E402


def _avg_no_pad(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class BlockA(tvi.InceptionA):
    def forward(self, x):
        outs = tvi.InceptionA._forward(self, x)
        outs[3] = self.branch_pool(_avg_no_pad(x))
        return torch.cat(outs, 1)


class BlockC(tvi.InceptionC):
    def forward(self, x):
        outs = tvi.InceptionC._forward(self, x)
        outs[3] = self.branch_pool(_avg_no_pad(x))
        return torch.cat(outs, 1)


class BlockE(tvi.InceptionE):
    def __init__(self, in_channels, use_max):
        super().__init__(in_channels)
        self.use_max = use_max

    def forward(self, x):
        outs = tvi.InceptionE._forward(self, x)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.use_max else _avg_no_pad(x)
        outs[3] = self.branch_pool(pooled)
        return torch.cat(outs, 1)


def build(variant, init_weights):
    classes = 1008 if variant == "fid" else 1000
    m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=init_weights,
                                        num_classes=classes)
    if variant == "fid":
        m.Mixed_5b = BlockA(192, pool_features=32)
        m.Mixed_5c = BlockA(256, pool_features=64)
        m.Mixed_5d = BlockA(288, pool_features=64)
        m.Mixed_6b = BlockC(768, channels_7x7=128)
        m.Mixed_6c = BlockC(768, channels_7x7=160)
        m.Mixed_6d = BlockC(768, channels_7x7=160)
        m.Mixed_6e = BlockC(768, channels_7x7=192)
        m.Mixed_7b = BlockE(1280, use_max=False)
        m.Mixed_7c = BlockE(2048, use_max=True)
    return m


def randomise_batchnorm(m, x):
    # Calibrate running statistics on the input (cumulative average), then perturb them and the
    # affine parameters, so eval-mode BatchNorm is far from the identity but activations stay
    # well scaled through all 94 layers.
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
    m.train()
    with torch.no_grad():
        m(x)
        for b in bns:
            c = b.num_features
            b.running_mean += 0.2 * torch.randn(c) * b.running_var.sqrt()
            b.running_var *= torch.empty(c).uniform_(0.5, 2.0)
            b.weight.uniform_(0.5, 1.5)
            b.bias.normal_(0.0, 0.2)
    m.eval()


def main():
    out = sys.argv[1]
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    x = torch.rand(2, 3, 40, 48) * 2 - 1
    xr = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    base = None
    for variant in ("torchvision", "fid"):
        # torchvision's truncated-normal init takes ~2 s; the fid model reuses its conv weights
        # (the blocks have identical parameters) and keeps its own random fc.
        m = build(variant, init_weights=base is None)
        if base is not None:
            sd = {k: v for k, v in base.items() if not k.startswith("fc.")}
            missing, unexpected = m.load_state_dict(sd, strict=False)
            assert not unexpected and set(missing) == {"fc.weight", "fc.bias"}, (missing, unexpected)
        randomise_batchnorm(m, xr)
        if base is None:
            base = {k: v.clone() for k, v in m.state_dict().items()}
        captured = {}
        m.avgpool.register_forward_hook(lambda mod, i, o: captured.__setitem__("pool", o))
        with torch.no_grad():
            logits = m(xr)
        pool = torch.flatten(captured["pool"], 1)
        sd = {k: v.numpy() for k, v in m.state_dict().items()
              if not (variant == "fid" and k.endswith("num_batches_tracked"))}
        st_numpy.save(os.path.join(out, f"weights_{variant}.safetensors"), sd)
        if variant == "fid":  # a .pth like pytorch-fid's, for the convert_inception.py test
            torch.save({k: torch.from_numpy(v) for k, v in sd.items()},
                       os.path.join(out, "fid_state_dict.pth"))
        st_numpy.save(os.path.join(out, f"io_{variant}.safetensors"),
                      {"input": x.numpy(), "pool": pool.numpy(), "logits": logits.numpy()})
        print(variant, float(pool.abs().mean()), float(logits.std()))


if __name__ == "__main__":
    main()
