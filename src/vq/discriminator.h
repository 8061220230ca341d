// PatchGAN discriminator (pix2pix / taming NLayerDiscriminator, as LlamaGen's tokenizer training
// uses it; LlamaGen discriminator_patchgan.py, vq_loss.py) and hinge losses.
// Keys: main.{0,2,3,5,6,8,9,11}.* for 3 layers: conv(k4 s2) LeakyReLU,
// [conv(k4 s2, no bias) BatchNorm LeakyReLU] x (n_layers - 1),
// conv(k4 s1, no bias) BatchNorm LeakyReLU, conv(k4 s1) -> one logit per patch.
#pragma once
#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

namespace ctfgen::vq {

struct NLayerDiscriminatorImpl : torch::nn::Module {
  /// in_channels: image channels; ndf: first-layer width (64); n_layers: 3. Weights are drawn
  /// from `gen`: conv N(0, 0.02), BatchNorm weight N(1, 0.02), bias 0.
  NLayerDiscriminatorImpl(int64_t in_channels, int64_t ndf, int64_t n_layers, at::Generator& gen);
  /// x: [B, C, H, W] -> patch logits [B, 1, h', w'].
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Sequential main{nullptr};
  int64_t in_channels;
};
TORCH_MODULE(NLayerDiscriminator);

/// Discriminator hinge loss 0.5 * (mean relu(1 - real) + mean relu(1 + fake)).
at::Tensor hinge_d_loss(const at::Tensor& logits_real, const at::Tensor& logits_fake);
/// Generator loss -mean(fake logits).
at::Tensor hinge_g_loss(const at::Tensor& logits_fake);

}  // namespace ctfgen::vq
