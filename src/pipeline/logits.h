// Teacher-forced logits of a stored model, for checking ctfgen against another implementation
// (`ctfgen logits`, docs/own_data.md "Checking ctfgen from PyTorch").
//   kind "gpt" (CTF stage 1, the baseline, or an imported LlamaGen c2i .pt): the training
//     forward, input [class, tok_0 .. tok_{T-2}], causal; row t predicts token t.
//   kind "aux" (CTF stage 2, paper section 3.3): input [class, coarse_0 .. coarse_{T-1}],
//     bidirectional; row t is the fine (codebook) distribution of position t.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace ctfgen::pipeline {

struct LogitsResult {
  std::string kind;     // "gpt" or "aux"
  nlohmann::json config;  // the model's config JSON
  at::Tensor logits;    // [B, T, V] float32, CPU
};

/// tokens: [B, T] or [B, h, w] integers (h * w = T) in the model's input vocabulary
/// (gpt: vocab_size; aux: coarse_vocab); labels: [B] integers in [0, num_classes], where
/// num_classes is the null (unconditional) class. The model runs on default_device() in eval
/// mode, `batch` sequences at a time. Throws Error naming `model_path` for a file of another
/// kind, and UsageError naming `tokens_name` / `labels_name` for shapes or values out of range.
LogitsResult teacher_forced_logits(const std::string& model_path, const at::Tensor& tokens,
                                   const at::Tensor& labels, int64_t batch = 64,
                                   const std::string& tokens_name = "tokens",
                                   const std::string& labels_name = "labels");

}  // namespace ctfgen::pipeline
