#include "vq/discriminator.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/error.h"
#include "core/shape.h"

namespace ctfgen::vq {

namespace nn = torch::nn;

NLayerDiscriminatorImpl::NLayerDiscriminatorImpl(int64_t in_ch, int64_t ndf, int64_t n_layers,
                                                 at::Generator& gen)
    : in_channels(in_ch) {
  CTFGEN_CHECK_USAGE(in_ch >= 1 && ndf >= 1 && n_layers >= 1,
                     "discriminator: in_channels, ndf and n_layers must be >= 1, got ", in_ch,
                     ", ", ndf, ", ", n_layers);
  auto conv = [](int64_t i, int64_t o, int64_t stride, bool bias) {
    return nn::Conv2d(nn::Conv2dOptions(i, o, 4).stride(stride).padding(1).bias(bias));
  };
  auto lrelu = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)); };
  nn::Sequential seq;
  seq->push_back(conv(in_ch, ndf, 2, true));
  seq->push_back(lrelu());
  int64_t mult = 1, mult_prev = 1;
  for (int64_t n = 1; n < n_layers; ++n) {
    mult_prev = mult;
    mult = std::min<int64_t>(int64_t{1} << n, 8);
    seq->push_back(conv(ndf * mult_prev, ndf * mult, 2, false));
    seq->push_back(nn::BatchNorm2d(ndf * mult));
    seq->push_back(lrelu());
  }
  mult_prev = mult;
  mult = std::min<int64_t>(int64_t{1} << n_layers, 8);
  seq->push_back(conv(ndf * mult_prev, ndf * mult, 1, false));
  seq->push_back(nn::BatchNorm2d(ndf * mult));
  seq->push_back(lrelu());
  seq->push_back(conv(ndf * mult, 1, 1, true));
  main = register_module("main", seq);

  torch::NoGradGuard no_grad;
  for (auto& m : modules(false)) {
    if (auto* c = m->as<nn::Conv2dImpl>()) {
      c->weight.normal_(0.0, 0.02, gen);
      if (c->bias.defined()) c->bias.zero_();
    } else if (auto* b = m->as<nn::BatchNorm2dImpl>()) {
      b->weight.normal_(1.0, 0.02, gen);
      b->bias.zero_();
    }
  }
}

at::Tensor NLayerDiscriminatorImpl::forward(const at::Tensor& x) {
  CTFGEN_CHECK_SHAPE(x, {-1, in_channels, -1, -1}, "discriminator input");
  return main->forward(x);
}

at::Tensor hinge_d_loss(const at::Tensor& logits_real, const at::Tensor& logits_fake) {
  return 0.5 * (torch::relu(1.0 - logits_real).mean() + torch::relu(1.0 + logits_fake).mean());
}

at::Tensor hinge_g_loss(const at::Tensor& logits_fake) { return -logits_fake.mean(); }

}  // namespace ctfgen::vq
