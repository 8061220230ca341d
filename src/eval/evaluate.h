// Evaluation facade for `ctfgen eval`: generated images -> FID, IS, precision, recall against
// cached reference statistics of a real split, on any FeatureNet (classifier or Inception).
//
//   auto net = eval::ClassifierNet(eval::load_classifier("clf.safetensors"));
//   auto ref = eval::reference_stats_for_images(real_x, net, {"fashion-mnist", "test"}, cache_dir);
//   auto r = eval::evaluate_images(fake_x, ref, net);      // r.fid, r.is_mean, ...
#pragma once
#include <ATen/core/Tensor.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "eval/feature_net.h"
#include "eval/fid_stats.h"

namespace ctfgen::eval {

struct EvalConfig {
  int64_t batch = 64;      // images per feature-network forward pass
  int64_t is_splits = 10;  // Inception Score splits
  int64_t pr_k = 3;        // k of the k-NN manifolds (precision/recall)
  int64_t pr_block = 2048; // rows per distance block (memory ~ pr_block^2 floats)

  nlohmann::json to_json() const;
  static EvalConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("batch", self.batch);
    visit("is_splits", self.is_splits);
    visit("pr_k", self.pr_k);
    visit("pr_block", self.pr_block);
  }
  void validate() const;
};

struct EvalResult {
  double fid = std::numeric_limits<double>::quiet_NaN();
  double is_mean = std::numeric_limits<double>::quiet_NaN();
  double is_std = std::numeric_limits<double>::quiet_NaN();
  double precision = std::numeric_limits<double>::quiet_NaN();  // NaN without real features
  double recall = std::numeric_limits<double>::quiet_NaN();
  int64_t n_fake = 0;
  int64_t n_real = 0;
  std::string net;  // FeatureNet::name()
  nlohmann::json to_json() const;  // NaN fields are written as null
};

/// Runs `net` over images [N, C, H, W] (float in [-1, 1]; checked) in batches of `batch`, with a
/// progress line. -> features [N, F] float32 and probabilities [N, K] float32.
FeatureOutput extract_features(FeatureNet& net, const at::Tensor& images, int64_t batch = 64,
                               bool show_progress = true);

/// Metrics from already extracted fake features/probabilities.
EvalResult evaluate_features(const FeatureOutput& fake, const ReferenceStats& real,
                             const EvalConfig& config = {});

/// fake: [N, C, H, W] in [-1, 1]. real: statistics from the same `net` (checked by identity);
/// precision/recall need real.features.
EvalResult evaluate_images(const at::Tensor& fake, const ReferenceStats& real, FeatureNet& net,
                           const EvalConfig& config = {});

/// Reference statistics of real images [N, C, H, W] in [-1, 1] for (dataset, split) under `net`,
/// cached in cache_dir (see fid_stats.h). key.net / key.net_name are filled from `net`.
ReferenceStats reference_stats_for_images(const at::Tensor& real, FeatureNet& net, StatsKey key,
                                          const std::string& cache_dir, int64_t batch = 64);

/// The floors of the metrics: real images scored as if generated. fake, real: [N, C, H, W] in
/// [-1, 1]; the reference statistics are computed from `real` directly (no cache).
EvalResult evaluate_real_vs_real(const at::Tensor& fake, const at::Tensor& real, FeatureNet& net,
                                 const EvalConfig& config = {});

/// Indices of part `part` (0-based) of `parts` equal contiguous parts of a permutation of
/// [0, n) drawn from `seed` (parts = 1: the whole permutation), cut to its first `limit`
/// (0 = all). Two calls with the same n and seed and different parts never share an index.
at::Tensor select_part(int64_t n, int64_t part, int64_t parts, uint64_t seed, int64_t limit = 0);

}  // namespace ctfgen::eval
