// LlamaGen's class-conditional GPT (LlamaGen gpt.py: Transformer): the CTF stage-1 coarse model
// (vocab_size = K) and the plain LlamaGen baseline (vocab_size = V). Sequence layout:
// position 0 is the class token, position k + 1 is image token k; the logits at position p
// predict image token p. Causal attention; 2D RoPE with an all-zero class row.
//
//   GPT model(GPTConfig::preset("GPT-B"), /*init_seed=*/0);
//   auto logits = model->forward_train(tokens, labels);           // training, [B, T, V]
//   model->eval(); model->setup_cache(2 * B, model->param_dtype());
//   auto l0 = model->prefill(labels);                              // [B, V], predicts token 0
//   auto l1 = model->decode_step(token0, /*pos=*/1);               // [B, V], predicts token 1
#pragma once
#include <ATen/core/Generator.h>

#include "models/model_config.h"
#include "models/trunk.h"
#include "nn/layers.h"

namespace ctfgen::models {

class GPTImpl : public ClassTokenTransformer {
 public:
  /// Builds the modules and initialises them (N(0, initializer_range), output zero) from a
  /// generator seeded with init_seed. Validates the config.
  explicit GPTImpl(const GPTConfig& config, uint64_t init_seed = 0);

  /// Teacher-forced training forward: input [class, tok_0 .. tok_{T-2}], causal.
  /// Label dropout and dropouts apply in training mode.
  /// tokens: [B, T] int64 (1 <= T <= block_size), labels: [B] int64 -> logits [B, T, V] float32
  at::Tensor forward_train(const at::Tensor& tokens, const at::Tensor& labels);

  /// Mean cross-entropy of forward_train's logits against tokens, computed without holding
  /// them (ClassTokenTransformer::head_loss). tokens: [B, T], labels: [B] -> scalar float32
  at::Tensor loss(const at::Tensor& tokens, const at::Tensor& labels);

  /// Full causal forward without cache over [class, tok_0 .. tok_{n-1}].
  /// tokens: [B, n] (0 <= n <= block_size), labels: [B] -> logits [B, n + 1, V] float32
  at::Tensor forward_full(const at::Tensor& tokens, const at::Tensor& labels);

  /// Allocates the static KV cache: per layer k/v [max_batch, H, S_max, hd] in `dtype`,
  /// S_max = 1 + block_size rounded up to a multiple of 8. Reuses the existing cache when it is
  /// large enough and of the same dtype.
  void setup_cache(int64_t max_batch, at::ScalarType dtype);
  void clear_cache();
  const nn::KVCache& cache() const { return cache_; }

  /// Runs the class tokens at position 0 through the cache (no grad).
  /// labels: [B] int64 in [0, num_classes] (num_classes = null class) -> logits [B, V] float32
  at::Tensor prefill(const at::Tensor& labels);

  /// Feeds image token pos-1 at sequence position pos (1 <= pos <= block_size) for the batch
  /// of the last prefill; positions < pos must already be in the cache.
  /// tokens: [B] int64 -> logits [B, V] float32 (predicts image token pos)
  /// check_range = false skips the token range check, for callers whose tokens are in [0, V)
  /// by construction (the sampler feeding back its own draws): on a GPU the check is a device
  /// read, so it would make every step wait for the previous one.
  at::Tensor decode_step(const at::Tensor& tokens, int64_t pos, bool check_range = true);

  /// Chunked form of decode_step: feeds image tokens pos-1 .. pos+n-2 at sequence positions
  /// [pos, pos + n) in one pass (causal within the chunk).
  /// tokens: [B, n] int64 -> logits [B, n, V] float32 (row i predicts image token pos + i)
  at::Tensor extend(const at::Tensor& tokens, int64_t pos, bool check_range = true);

  const GPTConfig& config() const { return config_; }

 private:
  /// forward_full before the head: [B, n] tokens, [B] labels -> hidden states [B, n + 1, D]
  at::Tensor hidden_full(const at::Tensor& tokens, const at::Tensor& labels);
  /// Checks [B, T] training tokens and drops the last: the teacher-forced inputs [B, T - 1].
  at::Tensor train_inputs(const at::Tensor& tokens) const;

  GPTConfig config_;
  nn::KVCache cache_;
  int64_t cache_batch_ = 0;  // batch of the last prefill
  int64_t filled_ = 0;       // positions [0, filled_) hold valid keys/values
};
TORCH_MODULE(GPT);

/// Mean cross-entropy over all T positions of forward_train against tokens (model->loss).
/// tokens: [B, T] int64, labels: [B] int64 -> scalar float32
at::Tensor gpt_loss(GPT& model, const at::Tensor& tokens, const at::Tensor& labels);

}  // namespace ctfgen::models
