// LlamaGen's VectorQuantizer (LlamaGen vq_model.py: VectorQuantizer) plus an optional dead-code
// restart.
// Registered tensors: `codebook_used` (persistent float32 buffer [65536], a rolling window of the
// most recent training indices) and `embedding.weight` [V, D].
#pragma once
#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>

#include "vq/vq_config.h"

namespace ctfgen::vq {

struct QuantizerOutput {
  at::Tensor z_q;            // [B, D, h, w] straight-through output z + sg(z_q - z)
  at::Tensor indices;        // [B, h, w] int64, raster order within each image
  at::Tensor codebook_loss;  // scalar: mean((z_q - sg z)^2)
  at::Tensor commit_loss;    // scalar: commit_beta * mean((sg z_q - z)^2)
  at::Tensor entropy_loss;   // scalar: entropy_loss_ratio * (sample entropy - mean entropy)
  at::Tensor z_flat;         // [B*h*w, D] the (normalised) encoder vectors, detached
};

struct VectorQuantizerImpl : torch::nn::Module {
  explicit VectorQuantizerImpl(const VQConfig& config);

  /// z: [B, D, h, w] -> QuantizerOutput. In training mode the indices are appended to
  /// codebook_used. The losses are computed in both modes.
  QuantizerOutput forward(const at::Tensor& z);

  /// The lookup table used for encoding and decoding: rows L2-normalised with F.normalize
  /// semantics (divide by max(||e||, 1e-12)) when codebook_l2_norm, else the raw rows. [V, D].
  at::Tensor normalized_codebook() const;

  /// Nearest code (squared Euclidean distance on the lookup table) for each row of z_flat,
  /// which must already be normalised if codebook_l2_norm. [N, D] -> [N] int64. Ties: lowest index.
  at::Tensor nearest_codes(const at::Tensor& z_flat) const;

  /// indices: [B, h, w] integer in [0, V) -> [B, D, h, w] rows of normalized_codebook().
  at::Tensor lookup(const at::Tensor& indices) const;

  /// Fraction of the codebook present in the codebook_used window.
  double window_usage() const;

  /// Dead-code restart: every code absent from the `recent` most recent entries of the
  /// codebook_used window (capped at the window size; pass the number of tokens seen since the
  /// previous restart) is re-seeded with a random row of `z_flat` ([N, D], recent encoder
  /// outputs, normalised like forward() does) plus N(0, dead_code_noise^2) noise. Rows are drawn
  /// without replacement while N allows. Returns the number of codes re-seeded. Deterministic
  /// given `gen`; all state it reads is in the state dict, so resumed runs repeat it exactly.
  int64_t restart_dead_codes(const at::Tensor& z_flat, at::Generator& gen,
                             int64_t recent = kCodebookUsedWindow);

  /// Re-initialises the codebook as LlamaGen does: U(-1/V, 1/V), then rows L2-normalised when
  /// codebook_l2_norm. Clears codebook_used.
  void reset_codebook(at::Generator& gen);

  VQConfig config;
  torch::nn::Embedding embedding{nullptr};
  at::Tensor codebook_used;
};
TORCH_MODULE(VectorQuantizer);

}  // namespace ctfgen::vq
