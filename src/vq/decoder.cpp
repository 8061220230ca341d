#include "vq/decoder.h"

#include <torch/torch.h>

#include "core/shape.h"

namespace ctfgen::vq {

DecoderImpl::DecoderImpl(const VQConfig& cfg) : config(cfg) {
  const int64_t ch = config.base_channels;
  const auto& mult = config.decoder_ch_mult;
  const int64_t n = static_cast<int64_t>(mult.size());
  int64_t block_in = ch * mult.back();
  conv_in = register_module(
      "conv_in",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(config.z_channels, block_in, 3).padding(1)));
  mid = register_module("mid", MidBlock(block_in, config));
  conv_blocks = register_module("conv_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < n; ++i) {
    // Level i of the decoder is level n-1-i of the resolution pyramid (0 = lowest resolution).
    const int64_t block_out = ch * mult[n - 1 - i];
    const bool first = i == 0, last = i == n - 1;
    levels.emplace_back(block_in, block_out, config.decoder_num_res_blocks, /*with_attn=*/first,
                        last ? 0 : +1, config);
    conv_blocks->push_back(levels.back());
    block_in = block_out;
  }
  norm_out = register_module("norm_out", make_group_norm(block_in, config.norm_groups, config.norm_eps));
  conv_out = register_module(
      "conv_out",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(block_in, config.in_channels, 3).padding(1)));
}

at::Tensor DecoderImpl::forward(const at::Tensor& z) {
  CTFGEN_CHECK_SHAPE(z, {-1, config.z_channels, -1, -1}, "VQ decoder input");
  auto h = mid(conv_in(z));
  for (auto& level : levels) h = level(h);
  return conv_out(swish(norm_out(h)));
}

}  // namespace ctfgen::vq
