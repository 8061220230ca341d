// The class-conditioned transformer shared by the GPT and the auxiliary model. Registered names
// are LlamaGen's (LlamaGen gpt.py: Transformer), in LlamaGen's order:
//   cls_embedding.embedding_table.weight [num_classes + 1, D]
//   tok_embeddings.weight                [in_vocab, D]
//   layers.{i}.attention.{wqkv,wo}.weight, layers.{i}.feed_forward.{w1,w3,w2}.weight,
//   layers.{i}.{attention_norm,ffn_norm}.weight
//   norm.weight [D], output.weight [out_vocab, D] (untied, zero-init)
// The 2D RoPE table is a plain member (not a parameter or buffer), as in LlamaGen.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <string>
#include <utility>
#include <vector>

#include "models/model_config.h"
#include "nn/layers.h"

namespace ctfgen::models {

class ClassTokenTransformer : public torch::nn::Module {
 public:
  nn::LabelEmbedder cls_embedding{nullptr};
  torch::nn::Embedding tok_embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};
  nn::RMSNorm norm{nullptr};
  torch::nn::Linear output{nullptr};
  torch::nn::Dropout tok_dropout{nullptr};

  /// The 2D RoPE table [1 + block_size, head_dim/2, 2] float32 (nn/rope.h layout).
  const at::Tensor& rope_table() const { return rope_; }
  /// Dtype of the weights (float32 for training; bfloat16 after ->to(kBFloat16) for inference).
  at::ScalarType param_dtype() const;
  /// Sum of numel over all parameters.
  int64_t count_params() const;

  /// Re-initialises: Linear/Embedding weights ~ N(0, std) from `gen`, output = 0, norms = 1.
  void reset_parameters(double std, at::Generator& gen);

 protected:
  ClassTokenTransformer(const TrunkConfig& trunk, int64_t in_vocab, int64_t out_vocab);

  /// [class embedding, token embeddings] then token dropout.
  /// labels: [B] int64, tokens: [B, n] int64 (n may be 0) -> [B, 1 + n, D]
  at::Tensor embed(const at::Tensor& labels, const at::Tensor& tokens);
  /// All blocks without a cache over positions 0..S-1; mask [S, S] bool or undefined (full).
  at::Tensor run_blocks(const at::Tensor& h, const at::Tensor& mask);
  /// All blocks through the KV cache at positions [start_pos, start_pos + s).
  at::Tensor run_blocks_cached(const at::Tensor& h, nn::KVCache& cache, int64_t start_pos);
  /// The RoPE table on `device` (moved there on first use).
  const at::Tensor& rope_on(c10::Device device);
  /// Final norm and output head; logits cast to float32. [B, S, D] -> [B, S, out_vocab]
  at::Tensor head(const at::Tensor& h);
  /// Mean cross-entropy of head(h) against targets without holding the [B, S, out_vocab]
  /// logits (nn/linear_cross_entropy.h). h: [B, S, D], targets: [B, S] in [0, out_vocab)
  /// -> scalar float32
  at::Tensor head_loss(const at::Tensor& h, const at::Tensor& targets);

  TrunkConfig trunk_;
  int64_t in_vocab_, out_vocab_;
  std::vector<nn::TransformerBlock> blocks_;
  at::Tensor rope_;
};

/// Trainable parameters split for AdamW weight decay (LlamaGen DDP rule): tensors with
/// dim >= 2 (matrices, embeddings) decay; the rest (RMSNorm weights) do not.
struct ParamGroups {
  std::vector<std::pair<std::string, at::Tensor>> decay, no_decay;
};
ParamGroups weight_decay_groups(const torch::nn::Module& module);

/// Checks labels [B] int64 in [0, num_classes] (num_classes = null) and tokens [B, n] in
/// [0, vocab); `what` names the caller in the error.
void check_tokens(const at::Tensor& tokens, int64_t B, int64_t vocab, const char* what);

}  // namespace ctfgen::models
