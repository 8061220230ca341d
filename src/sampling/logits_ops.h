// Pure operations on logits (LlamaGen generate.py: sample, top_k_top_p_filtering). All take
// logits [N, V] (any leading shape where noted) and return new tensors; -inf marks removed
// entries. Order used by the samplers: cfg_mix on raw logits -> mask_to_members -> temperature
// -> top-k -> top-p -> sample.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "sampling/sampling_config.h"

namespace ctfgen::sampling {

/// uncond + (cond - uncond) * scale. cond, uncond: same shape -> same shape
at::Tensor cfg_mix(const at::Tensor& cond, const at::Tensor& uncond, double scale);

/// logits / max(temperature, 1e-5). [..., V] -> [..., V]
at::Tensor apply_temperature(const at::Tensor& logits, double temperature);

/// Sets entries below the k-th largest of their row to -inf; ties with the k-th value survive.
/// k <= 0 or k >= V leaves the logits unchanged. [..., V] -> [..., V]
at::Tensor top_k_filter(const at::Tensor& logits, int64_t k);

/// Nucleus filter, Hugging Face style: sort descending, cumulative softmax, remove entries whose
/// cumulative probability exceeds p except the first such entry (so the first token over the
/// threshold is kept, and always at least one token). p >= 1 leaves the logits unchanged.
/// [N, V] -> [N, V]
at::Tensor top_p_filter(const at::Tensor& logits, double p);

/// Sets logits where `allowed` is false to -inf. logits [..., V], allowed bool broadcastable.
at::Tensor mask_to_members(const at::Tensor& logits, const at::Tensor& allowed);

/// One token per row drawn from softmax(logits) with one uniform number per row from `gen`
/// (inverse CDF), or the argmax.
/// logits: [N, V] -> [N] int64. Throws if a row has no finite logit.
at::Tensor sample(const at::Tensor& logits, at::Generator& gen, bool argmax = false);

/// sample() split for loops that must not wait on a device every step: the uniform numbers
/// come in (u: N float32 in [0, 1), any device, reshaped to [N, 1]; unused and may be undefined
/// for argmax) and the row check goes out unread (*finite_rows = [N] bool on the logits'
/// device, false where a row has no finite maximum); check_finite_rows() reads it.
/// sample(logits, gen, argmax) == this with u = rand({N, 1}, gen), then the check.
at::Tensor sample_from_uniforms(const at::Tensor& logits, const at::Tensor& u, bool argmax,
                                at::Tensor* finite_rows);
/// Throws sample()'s error unless every entry of finite_rows is true (one device read).
void check_finite_rows(const at::Tensor& finite_rows);

/// temperature -> top-k -> top-p per `config`. [N, V] -> [N, V]
at::Tensor filter_logits(const at::Tensor& logits, const SamplingConfig& config);

/// filter_logits then sample (or argmax) per `config`. [N, V] -> [N] int64
at::Tensor sample_tokens(const at::Tensor& logits, const SamplingConfig& config,
                         at::Generator& gen);
/// filter_logits then sample_from_uniforms per `config`. [N, V], u [N] -> [N] int64
at::Tensor sample_tokens_from_uniforms(const at::Tensor& logits, const SamplingConfig& config,
                                       const at::Tensor& u, at::Tensor* finite_rows);

}  // namespace ctfgen::sampling
