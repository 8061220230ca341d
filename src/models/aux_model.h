// The CTF stage-2 auxiliary model (the paper gives its size and one parallel step; the layout is
// ctfgen's, docs/generators.md): input [class, coarse_0 .. coarse_{T-1}] (T + 1 positions),
// bidirectional attention, the same 2D RoPE table as the GPT (class row zero), final norm and an
// untied zero-initialised head over the V fine labels. The logits at image
// position i (sequence position i + 1) predict fine token i: no shift. The class input has label
// dropout in training, so stage-2 classifier-free guidance is possible with the null class.
// Names: cls_embedding.embedding_table, tok_embeddings (K rows), layers.*, norm, output (V rows).
#pragma once
#include "models/model_config.h"
#include "models/trunk.h"

namespace ctfgen::models {

class AuxImpl : public ClassTokenTransformer {
 public:
  /// Builds and initialises (N(0, initializer_range), output zero) from init_seed.
  explicit AuxImpl(const AuxConfig& config, uint64_t init_seed = 0);

  /// coarse: [B, T] int64 in [0, K) (1 <= T <= block_size), labels: [B] int64 in
  /// [0, num_classes] -> fine logits [B, T, V] float32
  at::Tensor forward(const at::Tensor& coarse, const at::Tensor& labels);

  /// Mean cross-entropy of forward's logits against the fine tokens, computed without holding
  /// them (ClassTokenTransformer::head_loss). coarse, fine: [B, T], labels: [B] -> scalar
  at::Tensor loss(const at::Tensor& coarse, const at::Tensor& fine, const at::Tensor& labels);

  const AuxConfig& config() const { return config_; }

 private:
  /// forward before the head: hidden states of the image positions [B, T, D].
  at::Tensor hidden(const at::Tensor& coarse, const at::Tensor& labels);

  AuxConfig config_;
};
TORCH_MODULE(Aux);

/// Mean cross-entropy over all positions against the fine tokens (model->loss).
/// coarse, fine: [B, T] int64, labels: [B] -> scalar float32
at::Tensor aux_loss(Aux& model, const at::Tensor& coarse, const at::Tensor& fine,
                    const at::Tensor& labels);

}  // namespace ctfgen::models
