// One entry point for every clustering method, used by `ctfgen cluster` and the tests:
// reads the codebook of a VQ component file, normalises it, clusters it and returns the
// canonical CoarseMap (docs/clustering.md).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "cluster/coarse_map.h"
#include "cluster/kmeans.h"

namespace ctfgen::cluster {

struct ClusterConfig {
  std::string method = "kmeans";  // "kmeans" | "balanced" | "agglomerative" | "random"
  int64_t k = 512;                // number of clusters (coarse labels)
  uint64_t seed = 0;              // seed of every random choice
  int64_t restarts = 10;          // k-means / balanced restarts (lowest objective kept)
  int64_t max_iter = 300;         // k-means / balanced iterations per restart
  double tol = 0.0;               // k-means relative objective tolerance (0: until stable)
  std::string init = "kmeans++";  // k-means initialisation: "kmeans++" | "random"

  nlohmann::json to_json() const;
  static ClusterConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("method", self.method);
    visit("k", self.k);
    visit("seed", self.seed);
    visit("restarts", self.restarts);
    visit("max_iter", self.max_iter);
    visit("tol", self.tol);
    visit("init", self.init);
  }
  void validate() const;
  KMeansConfig kmeans() const;  // the k-means part (also used by "random" for its sizes)
};

/// The codebook of a VQ component file.
struct Codebook {
  at::Tensor raw;         // [V, D] float32, quantize.embedding.weight as stored
  at::Tensor normalized;  // [V, D] float32, rows L2-normalised (what the quantiser uses)
  std::string tokenizer_hash;  // io::tokenizer_hash of the file's tensors
};

constexpr const char* kCodebookTensor = "quantize.embedding.weight";

/// Reads `quantize.embedding.weight` from a component file of kind "vq" (no VQ model needed).
Codebook load_codebook(const std::string& vq_path);

struct ClusteringOutput {
  CoarseMap map;
  nlohmann::json details;  // method-specific: objective history, restart objectives, ...
};

/// Clusters `points` ([V, D], normally Codebook::normalized) with config.method.
/// "random" runs k-means with the same config and then draws a random partition with exactly
/// the k-means cluster sizes (the redundancy test's control).
ClusteringOutput cluster_codebook(const at::Tensor& points, const ClusterConfig& config,
                                  const std::string& tokenizer_hash);

}  // namespace ctfgen::cluster
