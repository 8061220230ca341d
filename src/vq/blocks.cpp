#include "vq/blocks.h"

#include <torch/torch.h>

#include <cmath>

#include "core/shape.h"

namespace ctfgen::vq {

namespace F = torch::nn::functional;

torch::nn::GroupNorm make_group_norm(int64_t channels, int64_t groups, double eps) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(eps).affine(true));
}

at::Tensor swish(const at::Tensor& x) { return x * torch::sigmoid(x); }

namespace {
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(true));
}
}  // namespace

void init_conv_default(torch::nn::Module& module, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  for (auto& child : module.modules(/*include_self=*/false)) {
    if (auto* c = child->as<torch::nn::Conv2dImpl>()) {
      const double fan_in = static_cast<double>(c->weight.numel() / c->weight.size(0));
      const double bound = 1.0 / std::sqrt(fan_in);
      c->weight.uniform_(-bound, bound, gen);
      if (c->bias.defined()) c->bias.uniform_(-bound, bound, gen);
    } else if (auto* l = child->as<torch::nn::LinearImpl>()) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(l->weight.size(1)));
      l->weight.uniform_(-bound, bound, gen);
      if (l->bias.defined()) l->bias.uniform_(-bound, bound, gen);
    } else if (auto* g = child->as<torch::nn::GroupNormImpl>()) {
      g->weight.fill_(1.0);
      g->bias.fill_(0.0);
    }
  }
}

ResnetBlockImpl::ResnetBlockImpl(int64_t in, int64_t out, double dropout, int64_t groups,
                                 double eps)
    : in_channels(in), out_channels(out) {
  // Registration order equals LlamaGen's state-dict order: norm1, conv1, norm2, conv2, nin_shortcut.
  norm1 = register_module("norm1", make_group_norm(in, groups, eps));
  conv1 = register_module("conv1", conv(in, out, 3, 1, 1));
  norm2 = register_module("norm2", make_group_norm(out, groups, eps));
  drop = register_module("dropout", torch::nn::Dropout(dropout));
  conv2 = register_module("conv2", conv(out, out, 3, 1, 1));
  if (in != out) nin_shortcut = register_module("nin_shortcut", conv(in, out, 1, 1, 0));
}

at::Tensor ResnetBlockImpl::forward(const at::Tensor& x) {
  CTFGEN_CHECK_SHAPE(x, {-1, in_channels, -1, -1}, "ResnetBlock input");
  auto h = conv1(swish(norm1(x)));
  h = conv2(drop(swish(norm2(h))));
  return (nin_shortcut ? nin_shortcut(x) : x) + h;
}

AttnBlockImpl::AttnBlockImpl(int64_t c, int64_t groups, double eps) : channels(c) {
  norm = register_module("norm", make_group_norm(c, groups, eps));
  q = register_module("q", conv(c, c, 1, 1, 0));
  k = register_module("k", conv(c, c, 1, 1, 0));
  v = register_module("v", conv(c, c, 1, 1, 0));
  proj_out = register_module("proj_out", conv(c, c, 1, 1, 0));
}

at::Tensor AttnBlockImpl::forward(const at::Tensor& x) {
  CTFGEN_CHECK_SHAPE(x, {-1, channels, -1, -1}, "AttnBlock input");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h = norm(x);
  auto qs = q(h).reshape({B, C, H * W}).transpose(1, 2);  // [B, HW, C]
  auto ks = k(h).reshape({B, C, H * W});                  // [B, C, HW]
  auto vs = v(h).reshape({B, C, H * W});                  // [B, C, HW]
  auto w = torch::bmm(qs, ks) * (1.0 / std::sqrt(static_cast<double>(C)));  // [B, HW(q), HW(k)]
  w = torch::softmax(w, /*dim=*/2);
  auto out = torch::bmm(vs, w.transpose(1, 2)).reshape({B, C, H, W});  // sum over keys
  return x + proj_out(out);
}

DownsampleImpl::DownsampleImpl(int64_t c) { conv = register_module("conv", vq::conv(c, c, 3, 2, 0)); }

at::Tensor DownsampleImpl::forward(const at::Tensor& x) {
  return conv(F::pad(x, F::PadFuncOptions({0, 1, 0, 1}).mode(torch::kConstant).value(0)));
}

UpsampleImpl::UpsampleImpl(int64_t c) { conv = register_module("conv", vq::conv(c, c, 3, 1, 1)); }

at::Tensor UpsampleImpl::forward(const at::Tensor& x) {
  auto up = F::interpolate(x, F::InterpolateFuncOptions()
                                  .scale_factor(std::vector<double>{2.0, 2.0})
                                  .mode(torch::kNearest));
  return conv(up);
}

}  // namespace ctfgen::vq
