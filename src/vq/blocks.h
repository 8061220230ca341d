// Building blocks of LlamaGen's VQ encoder and decoder (LlamaGen vq_model.py: ResnetBlock,
// AttnBlock, Downsample, Upsample), with LlamaGen's registered names so that state dicts match
// key for key.
#pragma once
#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

namespace ctfgen::vq {

/// GroupNorm(groups, channels, eps, affine) as LlamaGen's Normalize.
torch::nn::GroupNorm make_group_norm(int64_t channels, int64_t groups, double eps);

/// x * sigmoid(x).
at::Tensor swish(const at::Tensor& x);

/// Re-initialises every Conv2d / Linear weight and bias in `module` (recursively) from `gen` with
/// PyTorch's default distribution U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and sets norm layers to
/// weight 1, bias 0. Makes model initialisation depend only on the explicit generator.
void init_conv_default(torch::nn::Module& module, at::Generator& gen);

/// norm1 -> swish -> conv1 -> norm2 -> swish -> dropout -> conv2, plus shortcut (identity or a
/// 1x1 `nin_shortcut` when in != out). x: [B, in, H, W] -> [B, out, H, W].
struct ResnetBlockImpl : torch::nn::Module {
  ResnetBlockImpl(int64_t in_channels, int64_t out_channels, double dropout, int64_t groups,
                  double eps);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
  torch::nn::Dropout drop{nullptr};
  int64_t in_channels, out_channels;
};
TORCH_MODULE(ResnetBlock);

/// Single-head spatial self-attention with residual: GroupNorm, 1x1 q/k/v, softmax(q k^T / sqrt(C))
/// over keys, 1x1 proj_out. x: [B, C, H, W] -> [B, C, H, W].
struct AttnBlockImpl : torch::nn::Module {
  AttnBlockImpl(int64_t channels, int64_t groups, double eps);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
  int64_t channels;
};
TORCH_MODULE(AttnBlock);

/// Zero-pad right and bottom by one, then 3x3 conv with stride 2. x: [B, C, H, W] ->
/// [B, C, H/2, W/2] (floor).
struct DownsampleImpl : torch::nn::Module {
  explicit DownsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample);

/// Nearest-neighbour x2 then 3x3 conv (padding 1). x: [B, C, H, W] -> [B, C, 2H, 2W].
struct UpsampleImpl : torch::nn::Module {
  explicit UpsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

}  // namespace ctfgen::vq
