// The feature network interface the evaluation facade (eval/evaluate.h) works with: our trained
// classifier (eval/classifier.h, ClassifierNet) or Inception-v3 (eval/inception.h, InceptionNet).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace ctfgen::eval {

struct FeatureOutput {
  at::Tensor features;  // [B, F] float32: penultimate / pool features (FID, precision/recall)
  at::Tensor probs;     // [B, K] float32: class probabilities (Inception Score)
};

class FeatureNet {
 public:
  virtual ~FeatureNet() = default;
  /// images: [B, C, H, W] float in [-1, 1]; the net adapts size (bilinear) and, where defined,
  /// channels itself. Runs in eval mode without gradients.
  virtual FeatureOutput run(const at::Tensor& images) = 0;
  virtual int64_t feature_dim() const = 0;
  virtual int64_t num_classes() const = 0;
  /// Stable identity of the network (SHA-256 over kind, config and weights): part of the
  /// reference-statistics cache key, so statistics are never reused across networks.
  virtual std::string identity() const = 0;
  /// Short human-readable name ("classifier", "inception-fid", ...).
  virtual std::string name() const = 0;

  at::Tensor features(const at::Tensor& images) { return run(images).features; }
  at::Tensor probabilities(const at::Tensor& images) { return run(images).probs; }
};

/// SHA-256 (hex) over kind, config JSON and the tensors' content hash: a FeatureNet identity.
std::string network_identity(const std::string& kind, const std::string& config_json,
                             const std::string& tensors_hash);

}  // namespace ctfgen::eval
