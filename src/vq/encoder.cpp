#include "vq/encoder.h"

#include <torch/torch.h>

#include "core/shape.h"

namespace ctfgen::vq {

ConvLevelImpl::ConvLevelImpl(int64_t in_channels, int64_t out_channels, int64_t num_res_blocks,
                             bool with_attn, int resample, const VQConfig& config) {
  res_list = register_module("res", torch::nn::ModuleList());
  attn_list = register_module("attn", torch::nn::ModuleList());
  int64_t c = in_channels;
  for (int64_t j = 0; j < num_res_blocks; ++j) {
    res.emplace_back(c, out_channels, config.dropout, config.norm_groups, config.norm_eps);
    res_list->push_back(res.back());
    c = out_channels;
    if (with_attn) {
      attn.emplace_back(c, config.norm_groups, config.norm_eps);
      attn_list->push_back(attn.back());
    }
  }
  if (resample < 0) downsample = register_module("downsample", Downsample(c));
  if (resample > 0) upsample = register_module("upsample", Upsample(c));
}

at::Tensor ConvLevelImpl::forward(at::Tensor x) {
  // Execution order inside a level: res0, attn0, res1, attn1, ... then resampling.
  for (size_t j = 0; j < res.size(); ++j) {
    x = res[j](x);
    if (!attn.empty()) x = attn[j](x);
  }
  if (downsample) x = downsample(x);
  if (upsample) x = upsample(x);
  return x;
}

MidBlockImpl::MidBlockImpl(int64_t c, const VQConfig& config) {
  res0 = register_module("0", ResnetBlock(c, c, config.dropout, config.norm_groups, config.norm_eps));
  attn1 = register_module("1", AttnBlock(c, config.norm_groups, config.norm_eps));
  res2 = register_module("2", ResnetBlock(c, c, config.dropout, config.norm_groups, config.norm_eps));
}

at::Tensor MidBlockImpl::forward(const at::Tensor& x) { return res2(attn1(res0(x))); }

EncoderImpl::EncoderImpl(const VQConfig& cfg) : config(cfg) {
  const int64_t ch = config.base_channels;
  const auto& mult = config.encoder_ch_mult;
  const int64_t n = static_cast<int64_t>(mult.size());
  conv_in = register_module(
      "conv_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.in_channels, ch, 3).padding(1)));
  conv_blocks = register_module("conv_blocks", torch::nn::ModuleList());
  int64_t block_in = ch;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block_out = ch * mult[i];
    const bool last = i == n - 1;
    levels.emplace_back(block_in, block_out, config.encoder_num_res_blocks, /*with_attn=*/last,
                        last ? 0 : -1, config);
    conv_blocks->push_back(levels.back());
    block_in = block_out;
  }
  mid = register_module("mid", MidBlock(block_in, config));
  norm_out = register_module("norm_out", make_group_norm(block_in, config.norm_groups, config.norm_eps));
  conv_out = register_module(
      "conv_out",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(block_in, config.z_channels, 3).padding(1)));
}

at::Tensor EncoderImpl::forward(const at::Tensor& x) {
  CTFGEN_CHECK_SHAPE(x, {-1, config.in_channels, -1, -1}, "VQ encoder input");
  config.grid_size(x.size(2), x.size(3));  // throws on sizes the decoder could not restore
  auto h = conv_in(x);
  for (auto& level : levels) h = level(h);
  h = mid(h);
  return conv_out(swish(norm_out(h)));
}

}  // namespace ctfgen::vq
