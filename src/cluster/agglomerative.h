// Exact average-linkage (UPGMA) agglomerative clustering, the centroid-free grouping of
// DCPE/MASC (arXiv 2508.10719, 2510.04220): start from N singletons and repeatedly merge the two
// clusters whose mean cross-pair Euclidean distance is smallest, until k clusters remain.
//
// Implementation: a nearest-neighbour chain over a dense symmetric fp32 distance matrix
// (N^2 floats: 1 GiB for N = 16384, nothing else of that order), updated after each merge with
// the size-weighted Lance-Williams recurrence d(i+j, m) = (n_i d(i, m) + n_j d(j, m)) /
// (n_i + n_j). Average linkage is reducible, so the chain finds exactly the merges of the
// naive greedy algorithm; the merges are then sorted by height and the first N - k applied.
// Time ~O(N^2) (each nearest-neighbour search is one contiguous row scan), memory O(N^2).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace ctfgen::cluster {

struct AgglomerativeConfig {
  int64_t k = 512;  // clusters left after merging

  nlohmann::json to_json() const;
  static AgglomerativeConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("k", self.k);
  }
  void validate() const;
};

/// One merge of the dendrogram: the clusters represented by points a < b joined at `height`
/// (the average cross-pair distance). A cluster is represented by one of its points.
struct Merge {
  int64_t a = 0, b = 0;
  float height = 0;
};

struct AgglomerativeResult {
  at::Tensor assign;          // [N] int64 in [0, k), labels in order of first appearance
  std::vector<Merge> merges;  // all N - 1 merges, sorted by height (stable)
  double cut_height = 0;      // height of the last applied merge (0 when k = N)
};

/// x: [N, D] finite floating point -> partition into config.k clusters.
/// Throws UsageError when N < k, Error on NaN/Inf or when N^2 floats cannot be allocated.
AgglomerativeResult average_linkage(const at::Tensor& x, const AgglomerativeConfig& config);

/// Labels [N] int64 of the partition after applying the first n - k merges (sorted by height).
at::Tensor cut_dendrogram(const std::vector<Merge>& merges, int64_t n, int64_t k);

}  // namespace ctfgen::cluster
