#include "eval/feature_metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/log.h"
#include "core/shape.h"

namespace ctfgen::eval {

namespace {

void check_features(const at::Tensor& f, const char* what) {
  CTFGEN_CHECK(f.defined(), what, ": undefined tensor");
  CTFGEN_CHECK(f.dim() == 2, what, ": expected features [N, F], got ", shape_str(f.sizes()));
  CTFGEN_CHECK(at::isFloatingType(f.scalar_type()), what, ": expected a floating dtype");
  CTFGEN_CHECK(f.size(1) > 0, what, ": feature dimension is 0");
  CTFGEN_CHECK(at::isfinite(f).all().item<bool>(), what, ": features contain NaN or Inf");
}

void check_stats(const FeatureStats& s, const char* what) {
  CTFGEN_CHECK(s.mu.defined() && s.sigma.defined(), what, ": statistics are empty");
  CTFGEN_CHECK(s.mu.dim() == 1, what, ": mu must be [F], got ", shape_str(s.mu.sizes()));
  CTFGEN_CHECK_SHAPE(s.sigma, {s.mu.size(0), s.mu.size(0)}, what);
}

// Symmetric PSD square root via eigh, eigenvalues clamped at 0.
at::Tensor psd_sqrt(const at::Tensor& s) {
  auto sym = (s + s.t()) * 0.5;
  auto eig = at::linalg_eigh(sym, "L");
  auto vals = std::get<0>(eig).clamp_min(0.0).sqrt();
  const auto& vecs = std::get<1>(eig);
  return (vecs * vals.unsqueeze(0)).matmul(vecs.t());
}

}  // namespace

FeatureStats compute_feature_stats(const at::Tensor& features) {
  check_features(features, "compute_feature_stats");
  const int64_t n = features.size(0);
  CTFGEN_CHECK(n >= 2, "compute_feature_stats: need at least 2 samples, got ", n);
  torch::NoGradGuard no_grad;
  auto x = features.detach().to(torch::kCPU, torch::kDouble);
  FeatureStats s;
  s.mu = x.mean(0);
  auto c = x - s.mu.unsqueeze(0);
  s.sigma = c.t().matmul(c) / static_cast<double>(n - 1);
  s.n = n;
  return s;
}

double trace_sqrt_product(const at::Tensor& s1, const at::Tensor& s2) {
  CTFGEN_CHECK(s1.dim() == 2 && s1.size(0) == s1.size(1) && s1.sizes().equals(s2.sizes()),
               "trace_sqrt_product: expected two [F, F] matrices, got ", shape_str(s1.sizes()),
               " and ", shape_str(s2.sizes()));
  torch::NoGradGuard no_grad;
  auto a = s1.to(torch::kCPU, torch::kDouble);
  auto b = s2.to(torch::kCPU, torch::kDouble);
  auto r = psd_sqrt(a);
  auto m = r.matmul(b).matmul(r);
  m = (m + m.t()) * 0.5;
  auto ev = at::linalg_eigvalsh(m, "L");
  const double most = ev.abs().max().item<double>();
  const double least = ev.min().item<double>();
  // Round-off gives eigenvalues around -1e-12 * most; anything far larger means the inputs were
  // not PSD covariances.
  if (least < -1e-6 * std::max(most, 1e-300))
    log::warn("trace_sqrt_product: clamping a negative eigenvalue ", least, " (largest |ev| ",
              most, "); are both matrices covariances?");
  return ev.clamp_min(0.0).sqrt().sum().item<double>();
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b, double singular_offset) {
  check_stats(a, "frechet_distance (first)");
  check_stats(b, "frechet_distance (second)");
  CTFGEN_CHECK(a.dim() == b.dim(), "frechet_distance: feature dimensions differ (", a.dim(),
               " vs ", b.dim(), ")");
  CTFGEN_CHECK(singular_offset >= 0, "frechet_distance: negative singular_offset");
  torch::NoGradGuard no_grad;
  auto mu1 = a.mu.to(torch::kCPU, torch::kDouble), mu2 = b.mu.to(torch::kCPU, torch::kDouble);
  auto s1 = a.sigma.to(torch::kCPU, torch::kDouble), s2 = b.sigma.to(torch::kCPU, torch::kDouble);
  const int64_t f = a.dim();
  const bool singular = (a.n > 0 && a.n <= f) || (b.n > 0 && b.n <= f);
  if (singular && singular_offset > 0) {
    log::debug("frechet_distance: n <= dim (", a.n, ", ", b.n, " vs ", f, "): adding ",
               singular_offset, " to the covariance diagonals");
    auto eye = torch::eye(f, torch::kDouble) * singular_offset;
    s1 = s1 + eye;
    s2 = s2 + eye;
  }
  const double mean_term = (mu1 - mu2).pow(2).sum().item<double>();
  const double tr = s1.trace().item<double>() + s2.trace().item<double>();
  const double cross = trace_sqrt_product(s1, s2);
  return mean_term + tr - 2.0 * cross;
}

double fid_from_features(const at::Tensor& a, const at::Tensor& b) {
  return frechet_distance(compute_feature_stats(a), compute_feature_stats(b));
}

InceptionScore inception_score(const at::Tensor& probs, int64_t splits) {
  CTFGEN_CHECK(probs.defined() && probs.dim() == 2, "inception_score: expected probs [N, K], got ",
               probs.defined() ? shape_str(probs.sizes()) : std::string("undefined"));
  const int64_t n = probs.size(0);
  CTFGEN_CHECK_USAGE(splits >= 1, "inception_score: splits must be >= 1, got ", splits);
  CTFGEN_CHECK(n >= splits, "inception_score: need at least ", splits, " samples for ", splits,
               " splits, got ", n);
  torch::NoGradGuard no_grad;
  auto p = probs.detach().to(torch::kCPU, torch::kDouble);
  CTFGEN_CHECK(at::isfinite(p).all().item<bool>() && p.min().item<double>() >= 0.0,
               "inception_score: probabilities must be finite and >= 0");
  const double worst = (p.sum(1) - 1.0).abs().max().item<double>();
  CTFGEN_CHECK(worst < 1e-3, "inception_score: rows must sum to 1 (worst deviation ", worst,
               "); pass softmax outputs, not logits");
  std::vector<double> scores;
  for (int64_t i = 0; i < splits; ++i) {
    const int64_t lo = i * n / splits, hi = (i + 1) * n / splits;
    auto part = p.slice(0, lo, hi);
    auto py = part.mean(0, /*keepdim=*/true);
    // p * (log p - log py) with 0 log 0 = 0 (py > 0 wherever p > 0).
    auto pos = part > 0;
    auto logp = at::where(pos, part, at::ones_like(part)).log();
    auto logpy = at::where(py > 0, py, at::ones_like(py)).log();
    auto kl = at::where(pos, part * (logp - logpy), at::zeros_like(part)).sum(1).mean();
    scores.push_back(std::exp(kl.item<double>()));
  }
  InceptionScore out;
  for (double s : scores) out.mean += s;
  out.mean /= static_cast<double>(scores.size());
  for (double s : scores) out.std += (s - out.mean) * (s - out.mean);
  out.std = std::sqrt(out.std / static_cast<double>(scores.size()));
  return out;
}

namespace {

// Squared distances between row blocks: a [n, F], b [m, F] with precomputed squared norms.
at::Tensor block_sqdist(const at::Tensor& a, const at::Tensor& a2, const at::Tensor& b,
                        const at::Tensor& b2) {
  return (a2.unsqueeze(1) + b2.unsqueeze(0) - 2.0 * a.matmul(b.t())).clamp_min_(0.0);
}

at::Tensor prepare(const at::Tensor& f, const at::Tensor& center) {
  return (f.detach().to(torch::kCPU, torch::kDouble) - center).to(torch::kFloat).contiguous();
}

// Squared k-NN radii of x [N, F] (already float32, contiguous).
at::Tensor knn_sq_radii(const at::Tensor& x, int64_t k, int64_t block) {
  const int64_t n = x.size(0);
  auto sq = x.pow(2).sum(1);
  auto radii = torch::empty({n}, torch::kFloat);
  for (int64_t i0 = 0; i0 < n; i0 += block) {
    const int64_t i1 = std::min(n, i0 + block);
    auto xi = x.slice(0, i0, i1), si = sq.slice(0, i0, i1);
    at::Tensor best;
    for (int64_t j0 = 0; j0 < n; j0 += block) {
      const int64_t j1 = std::min(n, j0 + block);
      auto d = block_sqdist(xi, si, x.slice(0, j0, j1), sq.slice(0, j0, j1));
      if (i0 == j0) d.diagonal().zero_();  // exact 0 for the sample itself
      auto cand = best.defined() ? torch::cat({best, d}, 1) : d;
      const int64_t keep = std::min<int64_t>(k + 1, cand.size(1));
      best = std::get<0>(cand.topk(keep, 1, /*largest=*/false, /*sorted=*/true));
    }
    radii.slice(0, i0, i1).copy_(best.select(1, k));
  }
  return radii;
}

at::Tensor inside_sq(const at::Tensor& q, const at::Tensor& r, const at::Tensor& r_sq_radii,
                     int64_t block) {
  auto q2 = q.pow(2).sum(1), rr = r.pow(2).sum(1);
  auto inside = torch::zeros({q.size(0)}, torch::kBool);
  for (int64_t i0 = 0; i0 < q.size(0); i0 += block) {
    const int64_t i1 = std::min(q.size(0), i0 + block);
    auto acc = torch::zeros({i1 - i0}, torch::kBool);
    for (int64_t j0 = 0; j0 < r.size(0); j0 += block) {
      const int64_t j1 = std::min(r.size(0), j0 + block);
      auto d = block_sqdist(q.slice(0, i0, i1), q2.slice(0, i0, i1), r.slice(0, j0, j1),
                            rr.slice(0, j0, j1));
      acc.logical_or_((d <= r_sq_radii.slice(0, j0, j1).unsqueeze(0)).any(1));
    }
    inside.slice(0, i0, i1).copy_(acc);
  }
  return inside;
}

}  // namespace

at::Tensor knn_radii(const at::Tensor& features, int64_t k, int64_t block) {
  check_features(features, "knn_radii");
  CTFGEN_CHECK_USAGE(k >= 1, "knn_radii: k must be >= 1, got ", k);
  CTFGEN_CHECK_USAGE(block >= 1, "knn_radii: block must be >= 1, got ", block);
  CTFGEN_CHECK(features.size(0) > k, "knn_radii: need more than k = ", k, " samples, got ",
               features.size(0));
  torch::NoGradGuard no_grad;
  auto center = features.detach().to(torch::kCPU, torch::kDouble).mean(0, true);
  return knn_sq_radii(prepare(features, center), k, block).sqrt();
}

at::Tensor inside_manifold(const at::Tensor& query, const at::Tensor& ref, const at::Tensor& radii,
                           int64_t block) {
  check_features(query, "inside_manifold (query)");
  check_features(ref, "inside_manifold (reference)");
  CTFGEN_CHECK(query.size(1) == ref.size(1), "inside_manifold: feature dimensions differ (",
               query.size(1), " vs ", ref.size(1), ")");
  CTFGEN_CHECK_SHAPE(radii, {ref.size(0)}, "inside_manifold radii");
  CTFGEN_CHECK_USAGE(block >= 1, "inside_manifold: block must be >= 1, got ", block);
  torch::NoGradGuard no_grad;
  auto center = ref.detach().to(torch::kCPU, torch::kDouble).mean(0, true);
  auto r2 = radii.detach().to(torch::kCPU, torch::kFloat).pow(2);
  return inside_sq(prepare(query, center), prepare(ref, center), r2, block);
}

PrecisionRecall precision_recall(const at::Tensor& real, const at::Tensor& fake, int64_t k,
                                 int64_t block) {
  check_features(real, "precision_recall (real)");
  check_features(fake, "precision_recall (fake)");
  CTFGEN_CHECK(real.size(1) == fake.size(1), "precision_recall: feature dimensions differ (",
               real.size(1), " vs ", fake.size(1), ")");
  CTFGEN_CHECK_USAGE(k >= 1, "precision_recall: k must be >= 1, got ", k);
  CTFGEN_CHECK_USAGE(block >= 1, "precision_recall: block must be >= 1, got ", block);
  CTFGEN_CHECK(real.size(0) > k && fake.size(0) > k, "precision_recall: need more than k = ", k,
               " samples in each set, got ", real.size(0), " real and ", fake.size(0), " fake");
  torch::NoGradGuard no_grad;
  auto center = real.detach().to(torch::kCPU, torch::kDouble).mean(0, true);
  auto r = prepare(real, center), g = prepare(fake, center);
  auto r_rad = knn_sq_radii(r, k, block), g_rad = knn_sq_radii(g, k, block);
  PrecisionRecall out;
  out.precision = inside_sq(g, r, r_rad, block).to(torch::kDouble).mean().item<double>();
  out.recall = inside_sq(r, g, g_rad, block).to(torch::kDouble).mean().item<double>();
  return out;
}

}  // namespace ctfgen::eval
