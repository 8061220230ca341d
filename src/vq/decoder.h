// LlamaGen VQ decoder (LlamaGen tokenizer/tokenizer_image/vq_model.py: Decoder). Levels are
// registered in reversed order: conv_blocks.0 is the lowest resolution (with attention), the last
// level has no upsample.
// Registered names: conv_in, mid.{0,1,2}, conv_blocks.{i}.res.{j}, conv_blocks.0.attn.{j},
// conv_blocks.{i}.upsample.conv, norm_out, conv_out.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>

#include <vector>

#include "vq/encoder.h"
#include "vq/vq_config.h"

namespace ctfgen::vq {

/// z: [B, z_channels, h, w] -> [B, C, h*f, w*f], raw values (nominally [-1, 1]; no activation).
struct DecoderImpl : torch::nn::Module {
  explicit DecoderImpl(const VQConfig& config);
  at::Tensor forward(const at::Tensor& z);

  VQConfig config;
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  MidBlock mid{nullptr};
  torch::nn::ModuleList conv_blocks{nullptr};
  std::vector<ConvLevel> levels;
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(Decoder);

}  // namespace ctfgen::vq
