// Stage-2 sampling: one bidirectional pass of the auxiliary model predicts every fine token.
// Per position: optional guidance (2B rows in one batch: conditional first, null class second,
// the same coarse map) on the raw logits, optional restriction to the members of the position's
// coarse cluster (others set to -inf), then temperature, top-k, top-p and an independent draw
// (or argmax). Runs under c10::InferenceMode with the model in eval mode (restored after).
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "models/aux_model.h"
#include "sampling/sampling_config.h"

namespace ctfgen::sampling {

/// coarse: [B, T] int64 in [0, K), labels: [B] int64 in [0, num_classes],
/// member_mask: [K, V] bool (true = fine code v belongs to cluster k) or nullptr
/// (any device) -> fine tokens [B, T] int64 in [0, V) on the model's device. Deterministic for a
/// given state of the CPU generator `gen`.
/// cfg_interval does not apply (one pass). Images are processed in chunks of `chunk` to bound
/// the [rows, T, V] logits memory; 0 = automatic: on the CPU as many images as keep the chunk's
/// logits near 2^23 floats (32 MiB; 2 images at T 256 and V 16384), at least 1 (large chunks
/// were slower, not faster: the logits, softmax and running sums stream through memory several
/// times); on a GPU near 2^28 floats (1 GiB), where large batches pay.
at::Tensor sample_fine(models::Aux& model, const at::Tensor& coarse, const at::Tensor& labels,
                       const SamplingConfig& config, at::Generator& gen,
                       const at::Tensor* member_mask = nullptr, int64_t chunk = 0);

/// The [K, V] bool membership mask from a coarse map coarse_of [V] (int, values in [0, K)).
at::Tensor member_mask_from_coarse_of(const at::Tensor& coarse_of, int64_t K);

}  // namespace ctfgen::sampling
