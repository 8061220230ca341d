// Codebook clustering by k-means: Lloyd's algorithm with k-means++ seeding and restarts
// (faiss-style parameters), IAR's balanced variant (every cluster exactly N/K members), and a
// random partition with a given cluster-size histogram (the control of the redundancy test).
//
// Points are rows of x: [N, D] floating point (ctfgen clusters the L2-normalised codewords,
// see l2_normalize_rows). Distances are squared Euclidean, computed in fp64; centroids are
// accumulated in fp64. Every random choice comes from one explicit generator seeded with
// config.seed, so a seed gives the same result on every run and thread count.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ctfgen::cluster {

struct KMeansConfig {
  int64_t k = 512;                 // number of clusters (CTF paper Table 3a: K = 512)
  int64_t max_iter = 300;          // Lloyd iterations per restart (upper bound)
  int64_t restarts = 10;           // independent runs; the lowest objective is kept
  uint64_t seed = 0;               // seed of the one generator used by all restarts
  double tol = 0.0;                // also stop when (prev - obj) <= tol * prev; 0 = only when
                                   // the assignments stop changing
  std::string init = "kmeans++";   // "kmeans++" (D^2 sampling) or "random" (k distinct points)

  nlohmann::json to_json() const;
  static KMeansConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("k", self.k);
    visit("max_iter", self.max_iter);
    visit("restarts", self.restarts);
    visit("seed", self.seed);
    visit("tol", self.tol);
    visit("init", self.init);
  }
  void validate() const;
};

struct KMeansResult {
  at::Tensor assign;                     // [N] int64 in [0, k); every cluster non-empty
  at::Tensor centroids;                  // [k, D] float32, member means
  double objective = 0;                  // sum over points of ||x - centroid||^2 (fp64)
  std::vector<double> objective_history; // best restart: objective after each iteration
  std::vector<double> restart_objectives;  // final objective of every restart
  int64_t iterations = 0;                // iterations of the best restart
  int64_t best_restart = 0;
  int64_t empty_repairs = 0;             // empty clusters re-seeded (all restarts)
  bool converged = false;                // best restart stopped before max_iter
};

/// Rows divided by their L2 norm (rows of norm 0 stay 0). x: [N, D] -> [N, D] float32.
at::Tensor l2_normalize_rows(const at::Tensor& x);

/// Throws Error naming `what` and the first bad row when x holds NaN or Inf.
void check_finite_points(const at::Tensor& x, const std::string& what);

/// Lloyd k-means. x: [N, D] -> assignment [N], centroids [k, D].
/// Throws UsageError when N < k, Error on NaN/Inf. Fewer distinct points than k is allowed:
/// empty clusters are re-seeded with the point farthest from its centroid among clusters
/// that have at least two members, so every cluster ends non-empty (objective may reach 0).
/// The objective history is non-increasing.
KMeansResult kmeans(const at::Tensor& x, const KMeansConfig& config);

/// IAR's balanced k-means: every cluster gets exactly N/k members (UsageError unless k
/// divides N). Centres start at k points of a random permutation; each iteration visits the
/// points in increasing order of nearest-centre distance and gives each to its nearest centre
/// that still has room; centres become member means; stops when the assignment repeats or
/// after max_iter. Restarts keep the lowest objective; tol and init are not used.
KMeansResult balanced_kmeans(const at::Tensor& x, const KMeansConfig& config);

/// Sizes of clusters 0..k-1 in `assign` ([N] integer labels in [0, k)).
std::vector<int64_t> cluster_sizes(const at::Tensor& assign, int64_t k);

/// A uniformly random partition of N = sum(sizes) points into clusters of exactly these sizes:
/// -> [N] int64, cluster c has sizes[c] members.
at::Tensor random_partition(const std::vector<int64_t>& sizes, at::Generator& gen);

/// Member means of each cluster (fp64 accumulation). x: [N, D], assign: [N] -> [k, D] float32.
at::Tensor cluster_means(const at::Tensor& x, const at::Tensor& assign, int64_t k);

/// Sum over points of ||x - centroids[assign]||^2 in fp64.
double clustering_objective(const at::Tensor& x, const at::Tensor& assign,
                            const at::Tensor& centroids);

}  // namespace ctfgen::cluster
