// CoarseMap: the fine code -> coarse label mapping that stage 1, stage 2 and the redundancy
// test use, with member lists (CSR), centroids and the statistics of the clustering.
//
// Cluster ids are canonical: cluster c is the one whose smallest member is the c-th smallest
// among the clusters' smallest members; members are listed in increasing code order.
//
// File (component kind "clusters", io/checkpoint.h):
//   tensors  coarse_of [V] int32, offsets [K+1] int32, members [V] int32, centroids [K, D] f32
//   config   the method's config JSON ({"method": ..., "k": ..., "seed": ..., ...})
//   meta     {"tokenizer_hash", "num_codes", "num_clusters", "dim", "objective",
//             "size_histogram" {"<size>": <number of clusters>}, "mean_intra_distance",
//             "mean_centroid_distance", "iterations", "seconds"}
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ctfgen::cluster {

struct ClusterStats {
  double objective = 0;              // sum over codes of ||e - centroid||^2 (normalised codes)
  double mean_intra_distance = 0;    // mean ||e_u - e_v|| over ordered pairs u != v sharing a
                                     // cluster (0 when every cluster is a singleton)
  double mean_centroid_distance = 0; // mean over codes of ||e - centroid||
  int64_t iterations = 0;            // iterations of the method (0 when not iterative)
  double seconds = 0;                // wall time of the clustering

  nlohmann::json to_json() const;
};

class CoarseMap {
 public:
  CoarseMap() = default;

  /// Builds the canonical map from any labelling. assign: [V] integers in [0, k), every label
  /// used; points: [V, D] the vectors that were clustered (normalised codewords), used for the
  /// centroids and statistics. iterations/seconds are copied into the statistics.
  static CoarseMap from_assignment(const at::Tensor& assign, int64_t k, const at::Tensor& points,
                                   nlohmann::json method_config, std::string tokenizer_hash,
                                   int64_t iterations = 0, double seconds = 0);

  /// Writes a component file of kind "clusters" (atomic).
  void save(const std::string& path) const;
  /// Reads and validates a cluster file; every error names the file.
  static CoarseMap load(const std::string& path);

  int64_t num_codes() const { return num_codes_; }        // V
  int64_t num_clusters() const { return num_clusters_; }  // K
  int64_t dim() const { return dim_; }                    // D
  const at::Tensor& coarse_of() const { return coarse_of_; }  // [V] int32
  const at::Tensor& offsets() const { return offsets_; }      // [K+1] int32
  const at::Tensor& members() const { return members_; }      // [V] int32
  const at::Tensor& centroids() const { return centroids_; }  // [K, D] float32
  const nlohmann::json& method_config() const { return config_; }
  std::string method() const;  // config "method", or "" when absent
  const std::string& tokenizer_hash() const { return tokenizer_hash_; }
  const ClusterStats& stats() const { return stats_; }
  const std::string& source() const { return source_; }  // file it was loaded from, or ""

  /// Sizes of clusters 0..K-1.
  std::vector<int64_t> sizes() const;
  /// size -> number of clusters of that size.
  std::map<int64_t, int64_t> size_histogram() const;
  /// Summary for printing: method, V, K, D, sizes (min/max/mean, histogram), statistics.
  nlohmann::json summary_json() const;

  /// Coarse label of every fine code. fine: any shape, int64 (int32 accepted) in [0, V)
  /// -> same shape, int64 in [0, K).
  at::Tensor to_coarse(const at::Tensor& fine) const;

  /// mask[c][v] = code v belongs to cluster c. -> [K, V] bool.
  at::Tensor member_mask() const;

  /// Every token replaced by a uniformly random member of its own cluster. include-self
  /// (exclude_self = false) draws among all members; exclude-self draws among the other
  /// members, and a singleton keeps its code. fine: any shape, int64 in [0, V) -> same shape.
  at::Tensor replace_with_members(const at::Tensor& fine, at::Generator& gen,
                                  bool exclude_self) const;

  /// Throws Error when this map was made for another tokenizer. `what` names the consumer
  /// (e.g. "stage-1 training with tokens dir 'toks'").
  void check_tokenizer(const std::string& tokenizer_hash, const std::string& what) const;

 private:
  void build_index();     // derives the int64 helpers from the int32 tensors
  void validate() const;  // CSR consistency; throws Error naming source_

  int64_t num_codes_ = 0, num_clusters_ = 0, dim_ = 0;
  at::Tensor coarse_of_, offsets_, members_, centroids_;
  nlohmann::json config_ = nlohmann::json::object();
  std::string tokenizer_hash_;
  ClusterStats stats_;
  std::string source_;
  // helpers: int64 copies for indexing, and each code's position inside its cluster
  std::vector<int64_t> coarse_v_, offsets_v_, members_v_, pos_in_cluster_;
};

}  // namespace ctfgen::cluster
