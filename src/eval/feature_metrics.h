// Distribution metrics on feature vectors (any feature network: our classifier or Inception-v3).
//
//   FID  = |mu_r - mu_g|^2 + tr(S_r) + tr(S_g) - 2 tr sqrt(S_r S_g)          (float64 throughout)
//   IS   = exp(E_x KL(p(y|x) || p(y))), averaged over `splits` contiguous chunks (mean, std)
//   precision / recall with k-NN manifolds (Kynkaanniemi et al. 2019, k = 3)
//
// Covariances use the unbiased N-1 normalisation (numpy.cov). tr sqrt(S_r S_g) is computed as
// sum_i sqrt(lambda_i) over the eigenvalues of the symmetric PSD matrix sqrt(S_r) S_g sqrt(S_r),
// which has the same eigenvalues as S_r S_g; both eigendecompositions are symmetric (eigh) and
// round-off negatives are clamped to 0. See docs/evaluation.md.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ctfgen::eval {

/// Gaussian statistics of a feature set.
struct FeatureStats {
  at::Tensor mu;     // [F] float64
  at::Tensor sigma;  // [F, F] float64, unbiased (N-1) covariance
  int64_t n = 0;     // number of samples the statistics came from
  int64_t dim() const { return mu.defined() ? mu.size(0) : 0; }
};

/// features: [N, F] (any floating dtype, N >= 2) -> mean and unbiased covariance in float64.
FeatureStats compute_feature_stats(const at::Tensor& features);

/// tr sqrt(s1 s2) for symmetric PSD s1, s2 [F, F] (computed in float64).
double trace_sqrt_product(const at::Tensor& s1, const at::Tensor& s2);

/// Offset added to both covariance diagonals when either set has n <= dim samples (its
/// covariance is then singular), as pytorch-fid does when sqrtm fails. 0 disables it.
constexpr double kFidSingularOffset = 1e-6;

/// Frechet distance between two Gaussians. Both must have the same dimension.
double frechet_distance(const FeatureStats& a, const FeatureStats& b,
                        double singular_offset = kFidSingularOffset);

/// FID between two feature sets: a [Na, F], b [Nb, F].
double fid_from_features(const at::Tensor& a, const at::Tensor& b);

struct InceptionScore {
  double mean = 0;
  double std = 0;  // population std over the splits (numpy.std)
};

/// probs: [N, K] class probabilities (rows sum to 1), N >= splits. Split i covers rows
/// [i*N/splits, (i+1)*N/splits). Computed in float64; 0 * log 0 = 0.
InceptionScore inception_score(const at::Tensor& probs, int64_t splits = 10);

struct PrecisionRecall {
  double precision = 0;  // fraction of generated samples inside the real manifold
  double recall = 0;     // fraction of real samples inside the generated manifold
};

/// Distance from every row of features [N, F] to its k-th nearest neighbour within the set
/// (the sample itself excluded; duplicates count as neighbours at distance 0). Needs N > k.
/// Distances are computed in blocks of `block` x `block` rows, so memory is O(block^2 + N).
/// -> [N] float32
at::Tensor knn_radii(const at::Tensor& features, int64_t k = 3, int64_t block = 2048);

/// For every row of query [Nq, F]: is it within radii[j] of some row j of ref [Nr, F]
/// (distance <= radius)? -> [Nq] bool. Blocked like knn_radii.
at::Tensor inside_manifold(const at::Tensor& query, const at::Tensor& ref, const at::Tensor& radii,
                           int64_t block = 2048);

/// Improved precision and recall: real [Nr, F], fake [Ng, F] with Nr, Ng > k. Distances are
/// computed in float32 after centring both sets on the real mean (reduces cancellation in
/// |a|^2 + |b|^2 - 2 a.b; distances are translation invariant).
PrecisionRecall precision_recall(const at::Tensor& real, const at::Tensor& fake, int64_t k = 3,
                                 int64_t block = 2048);

}  // namespace ctfgen::eval
