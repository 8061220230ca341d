// Llama-style transformer pieces with LlamaGen's exact semantics and registered names
// (LlamaGen autoregressive/models/gpt.py): RMSNorm, SwiGLU FeedForward, LabelEmbedder, multi-head
// Attention with an explicit boolean mask and a preallocated static KV cache, and the pre-norm
// TransformerBlock.
// Shape letters: B batch, S sequence positions, D model width, H heads, hd = D / H head width.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

namespace ctfgen::nn {

/// LlamaGen/Llama FFN width: find_multiple(int(2 * 4 * dim / 3) [* ffn_dim_multiplier], multiple_of).
/// ffn_dim_multiplier <= 0 means "none" (LlamaGen's None).
int64_t swiglu_hidden_dim(int64_t dim, int64_t multiple_of, double ffn_dim_multiplier = 0.0);

/// y = cast_back(x_f32 * rsqrt(mean(x_f32^2, -1) + eps)) * weight. Parameter: weight [D] (ones).
struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);  // [..., D] -> [..., D]
  at::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

/// SwiGLU: dropout(w2(silu(w1 x) * w3 x)). Registered in order w1, w3, w2; no biases.
struct FeedForwardImpl : torch::nn::Module {
  FeedForwardImpl(int64_t dim, int64_t hidden, double ffn_dropout);
  at::Tensor forward(const at::Tensor& x);  // [B, S, D] -> [B, S, D]
  torch::nn::Linear w1{nullptr}, w3{nullptr}, w2{nullptr};
  torch::nn::Dropout ffn_dropout{nullptr};
};
TORCH_MODULE(FeedForward);

/// Class embedding with a null row: embedding_table [num_classes + 1, D]; row num_classes is the
/// unconditional (null) class. In training mode each label is replaced by the null class with
/// probability dropout_prob (drawn from libtorch's global generator, like dropout).
struct LabelEmbedderImpl : torch::nn::Module {
  LabelEmbedderImpl(int64_t num_classes, int64_t dim, double dropout_prob);
  at::Tensor forward(const at::Tensor& labels);  // [B] int64 in [0, num_classes] -> [B, 1, D]
  torch::nn::Embedding embedding_table{nullptr};
  int64_t num_classes;
  double dropout_prob;
};
TORCH_MODULE(LabelEmbedder);

/// Preallocated static KV cache of one layer: k, v [B_max, H, S_max, hd], zero-filled.
struct LayerKV {
  at::Tensor k, v;
};

/// Static KV cache for a stack of layers (gpt-fast / LlamaGen style): allocated once, written in
/// place at the input positions; S_max is rounded up to a multiple of 8.
struct KVCache {
  std::vector<LayerKV> layers;
  int64_t max_batch = 0;
  int64_t max_seq = 0;  // S_max (multiple of 8)
  /// Allocates n_layer zero-filled layers of [max_batch, n_head, round_up_8(max_seq), head_dim]
  /// on `device`.
  static KVCache allocate(int64_t n_layer, int64_t max_batch, int64_t n_head, int64_t max_seq,
                          int64_t head_dim, at::ScalarType dtype,
                          c10::Device device = c10::Device(c10::kCPU));
  bool empty() const { return layers.empty(); }
  /// Bytes held by all k/v buffers.
  int64_t bytes() const;
};

/// Multi-head self-attention, LlamaGen names: wqkv = Linear(D, 3D) split q | k | v, wo = Linear(D, D)
/// followed by resid_dropout; no biases; scale 1/sqrt(hd); RoPE on q and k. Written as matmul +
/// mask + softmax (no SDPA).
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t dim, int64_t n_head, double resid_dropout);

  /// Without cache. mask: [S, S] bool (true = attend) or undefined for bidirectional attention.
  /// x: [B, S, D], rope rows: [S, hd/2, 2] -> [B, S, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& rope_rows, const at::Tensor& mask);

  /// Causal attention through a static cache: writes k/v of the s inputs at sequence positions
  /// [start_pos, start_pos + s) of rows [0, B) in place, then attends over positions
  /// [0, start_pos + s) with the causal rule (input i sees positions <= start_pos + i).
  /// x: [B, s, D], rope rows: [s, hd/2, 2] -> [B, s, D]
  at::Tensor forward_cached(const at::Tensor& x, const at::Tensor& rope_rows, LayerKV& cache,
                            int64_t start_pos);

  torch::nn::Linear wqkv{nullptr}, wo{nullptr};
  torch::nn::Dropout resid_dropout{nullptr};
  int64_t dim, n_head, head_dim;

 private:
  // x -> q, k, v each [B, H, S, hd] with RoPE applied to q and k.
  void project(const at::Tensor& x, const at::Tensor& rope_rows, at::Tensor& q, at::Tensor& k,
               at::Tensor& v);
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const at::Tensor& mask);
};
TORCH_MODULE(Attention);

/// Reference attention with explicit loops over batch, head, query and key (for tests).
/// q, k, v: [B, H, S, hd]; mask [S, Skv] bool or undefined -> [B, H, S, hd]
at::Tensor attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& mask);

/// Pre-norm Llama block: h = x + attention(attention_norm(x)); out = h + feed_forward(ffn_norm(h)).
/// Registration order (LlamaGen): attention, feed_forward, attention_norm, ffn_norm.
struct TransformerBlockImpl : torch::nn::Module {
  TransformerBlockImpl(int64_t dim, int64_t n_head, int64_t ffn_hidden, double norm_eps,
                       double resid_dropout, double ffn_dropout);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& rope_rows, const at::Tensor& mask);
  at::Tensor forward_cached(const at::Tensor& x, const at::Tensor& rope_rows, LayerKV& cache,
                            int64_t start_pos);
  Attention attention{nullptr};
  FeedForward feed_forward{nullptr};
  RMSNorm attention_norm{nullptr}, ffn_norm{nullptr};
};
TORCH_MODULE(TransformerBlock);

/// [S, S] bool lower-triangular mask (true = attend) on `device`.
at::Tensor causal_mask(int64_t S, c10::Device device = c10::Device(c10::kCPU));

}  // namespace ctfgen::nn
