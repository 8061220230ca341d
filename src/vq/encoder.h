// LlamaGen VQ encoder (LlamaGen tokenizer/tokenizer_image/vq_model.py: Encoder). Registered names:
//   conv_in, conv_blocks.{i}.res.{j}, conv_blocks.{i}.attn.{j} (last level only),
//   conv_blocks.{i}.downsample.conv (all but the last level), mid.{0,1,2}, norm_out, conv_out.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>

#include <vector>

#include "vq/blocks.h"
#include "vq/vq_config.h"

namespace ctfgen::vq {

/// One resolution level: ResnetBlocks (each followed by an AttnBlock when `with_attn`) and an
/// optional resampling layer (Downsample in the encoder, Upsample in the decoder).
struct ConvLevelImpl : torch::nn::Module {
  ConvLevelImpl(int64_t in_channels, int64_t out_channels, int64_t num_res_blocks, bool with_attn,
                int resample /* -1 down, 0 none, +1 up */, const VQConfig& config);
  /// x: [B, in, H, W] -> [B, out, H', W'] with H' = H/2 (down), H (none) or 2H (up).
  at::Tensor forward(at::Tensor x);

  torch::nn::ModuleList res_list{nullptr}, attn_list{nullptr};
  std::vector<ResnetBlock> res;
  std::vector<AttnBlock> attn;
  Downsample downsample{nullptr};
  Upsample upsample{nullptr};
};
TORCH_MODULE(ConvLevel);

/// Mid block: ResnetBlock, AttnBlock, ResnetBlock registered as mid.{0,1,2}.
struct MidBlockImpl : torch::nn::Module {
  MidBlockImpl(int64_t channels, const VQConfig& config);
  at::Tensor forward(const at::Tensor& x);
  ResnetBlock res0{nullptr}, res2{nullptr};
  AttnBlock attn1{nullptr};
};
TORCH_MODULE(MidBlock);

/// x: [B, C, H, W] in [-1, 1] -> [B, z_channels, H/f, W/f] with f = config.downsample_factor().
struct EncoderImpl : torch::nn::Module {
  explicit EncoderImpl(const VQConfig& config);
  at::Tensor forward(const at::Tensor& x);

  VQConfig config;
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList conv_blocks{nullptr};
  std::vector<ConvLevel> levels;
  MidBlock mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(Encoder);

}  // namespace ctfgen::vq
