// Stage-1 / baseline autoregressive sampling with a static KV cache (LlamaGen generate.py:
// generate). With guidance (cfg_scale > 1) the conditional and unconditional sequences run as ONE
// batch of 2B rows, conditional half first, unconditional half = the null class; the same sampled
// token is fed to both halves. Runs under c10::InferenceMode with the model in eval mode
// (restored after).
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

#include "models/gpt.h"
#include "sampling/sampling_config.h"

namespace ctfgen::sampling {

/// Called after each sampled token position: (tokens done, tokens total).
using StepCallback = std::function<void(int64_t done, int64_t total)>;

/// Samples block_size tokens per label, deterministic for a given generator state.
/// labels: [B] int64 in [0, num_classes] (any device) -> tokens [B, T] int64 in
/// [0, vocab_size), raster order, on the model's device. `gen` is a CPU generator (core/rng.h).
at::Tensor sample_ar(models::GPT& model, const at::Tensor& labels, const SamplingConfig& config,
                     at::Generator& gen, const StepCallback& progress = nullptr);

}  // namespace ctfgen::sampling
