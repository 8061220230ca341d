// The token-redundancy test (CTF paper Fig. 1b; docs/clustering.md): encode images, replace every
// token with a random member of its own cluster, decode, and score the result against the
// original images and the plain reconstruction. The VQ model and the image metrics come in as
// callbacks, so this bookkeeping is testable without them.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cluster/coarse_map.h"

namespace ctfgen::cluster {

struct RedundancyConfig {
  uint64_t seed = 0;          // seed of the replacement draws (each variant restarts from it)
  bool exclude_self = false;  // false: include-self (MASC); true: draw among the other members
  int64_t strip_images = 8;   // images kept for the image strip
  bool random_control = true; // add a random partition with each file's size histogram

  nlohmann::json to_json() const;
  static RedundancyConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("seed", self.seed);
    visit("exclude_self", self.exclude_self);
    visit("strip_images", self.strip_images);
    visit("random_control", self.random_control);
  }
  void validate() const;
};

/// images [B, C, H, W] in [-1, 1] -> codes [B, h, w] int64.
using EncodeFn = std::function<at::Tensor(const at::Tensor& images)>;
/// codes [B, h, w] int64 -> images [B, C, H, W] in [-1, 1].
using DecodeFn = std::function<at::Tensor(const at::Tensor& codes)>;
/// Per-image scores of images a against reference images ref (both [B, C, H, W] in [-1, 1]):
/// metric name -> [B] values (e.g. {"psnr", ...}, {"ssim", ...}).
using ScoreFn =
    std::function<std::map<std::string, at::Tensor>(const at::Tensor& a, const at::Tensor& ref)>;

/// images [B, C, H, W] in [-1, 1] -> features [B, F] for set-level metrics (FID).
using FeatureFn = std::function<at::Tensor(const at::Tensor& images)>;
/// Set-level metrics of all features a [N, F] against all reference features ref [N, F]:
/// metric name -> value (e.g. {"fid", ...}).
using SetScoreFn =
    std::function<std::map<std::string, double>(const at::Tensor& a, const at::Tensor& ref)>;

/// A random partition of the same codes with exactly the cluster-size histogram of `like`
/// (the lower-bound control); points: [V, D] the normalised codewords.
CoarseMap random_control(const CoarseMap& like, const at::Tensor& points, uint64_t seed);

class RedundancyTest {
 public:
  /// codebook: [V, D] normalised codewords (for the codeword-space distance).
  RedundancyTest(at::Tensor codebook, RedundancyConfig config, EncodeFn encode, DecodeFn decode,
                 ScoreFn score);

  /// Also computes set-level metrics (FID) over all images from features; call before the first
  /// batch. Their values join the per-image means in results_json() and table().
  void set_set_metrics(FeatureFn features, SetScoreFn score);

  /// Adds a clustering to test. Its V must equal the codebook's.
  void add_variant(const std::string& name, const CoarseMap& map);

  /// Runs one batch of images [B, C, H, W] in [-1, 1] through every variant.
  void add_batch(const at::Tensor& images);

  /// One row per variant plus the "reconstruction" row (r0 vs original):
  /// {name, method, k, images, tokens, frac_changed, expected_frac_changed, mean_sq_code_dist,
  ///  vs_original {metric: mean}, vs_reconstruction {metric: mean}}.
  nlohmann::json results_json() const;
  /// The same as a fixed-width text table.
  std::string table() const;
  /// Rows = the first strip_images images; columns = original, reconstruction, then each
  /// variant's replacement. -> [C, rows * H, cols * W] in [-1, 1]; undefined before any batch.
  at::Tensor strip() const;
  std::vector<std::string> strip_columns() const;

 private:
  struct Variant {
    std::string name;
    CoarseMap map;
    at::Generator gen;
    int64_t tokens = 0, changed = 0;
    double expected_changed = 0, sq_dist = 0;
    std::map<std::string, double> vs_orig, vs_recon;
    std::vector<at::Tensor> strip;
    std::vector<at::Tensor> features;
  };
  /// Set metrics of a variant's (or the reconstruction's) features against originals and
  /// reconstructions; empty without set_set_metrics().
  std::map<std::string, double> set_scores(const std::vector<at::Tensor>& a,
                                           const std::vector<at::Tensor>& ref) const;
  at::Tensor codebook_;
  RedundancyConfig config_;
  EncodeFn encode_;
  DecodeFn decode_;
  ScoreFn score_;
  FeatureFn features_;
  SetScoreFn set_score_;
  std::vector<at::Tensor> feat_orig_, feat_recon_;
  std::vector<Variant> variants_;
  int64_t images_ = 0, tokens_ = 0;
  std::map<std::string, double> recon_vs_orig_;
  std::vector<at::Tensor> strip_orig_, strip_recon_;
};

}  // namespace ctfgen::cluster
