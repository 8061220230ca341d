// FID, Inception Score, precision/recall and the reference-statistics cache.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "core/rng.h"
#include "eval/feature_metrics.h"
#include "eval/fid_stats.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

using eval::FeatureStats;

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  auto g = make_generator(seed);
  return torch::randn(shape, g, torch::kDouble);
}

bool have_scipy() {
  static int ok = -1;
  if (ok < 0)
    ok = run_shell("/usr/bin/python3 -c 'import numpy, scipy.linalg'").exit_code == 0 ? 1 : 0;
  return ok == 1;
}

// Runs tests/python/fid_reference.py on (a, b); returns the printed FID.
double scipy_fid(const at::Tensor& a, const at::Tensor& b, double offset = 0.0) {
  TempDir d;
  io::save_safetensors(d.file("f.safetensors"), {{"a", a}, {"b", b}}, {});
  std::string cmd = "/usr/bin/python3 " + source_dir() + "/tests/python/fid_reference.py " +
                    d.file("f.safetensors");
  if (offset > 0) cmd += " --offset " + std::to_string(offset);
  auto r = run_shell(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return std::stod(r.out);
}

}  // namespace

TEST(FeatureStats, MeanAndUnbiasedCovariance) {
  auto f = torch::tensor({0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 2.0, 2.0}, torch::kDouble).view({4, 2});
  auto s = eval::compute_feature_stats(f.to(torch::kFloat));
  EXPECT_EQ(s.n, 4);
  EXPECT_EQ(s.mu.scalar_type(), torch::kDouble);
  EXPECT_TRUE(all_close(s.mu, torch::tensor({1.0, 1.0}, torch::kDouble)));
  // Sum of squared deviations 4 over N-1 = 3 (numpy.cov), independent coordinates.
  auto expected = torch::tensor({4.0 / 3.0, 0.0, 0.0, 4.0 / 3.0}, torch::kDouble).view({2, 2});
  EXPECT_TRUE(all_close(s.sigma, expected, 1e-12, 1e-12));
  EXPECT_THROW(eval::compute_feature_stats(f.slice(0, 0, 1)), Error);
  auto bad = f.clone();
  bad[0][0] = std::nan("");
  EXPECT_THROW(eval::compute_feature_stats(bad), Error);
}

TEST(Fid, SetAgainstItselfIsZero) {
  auto a = randn({300, 8}, 1) * 3.0 + 1.0;
  EXPECT_NEAR(eval::fid_from_features(a, a), 0.0, 1e-9);
}

TEST(Fid, GrowsMonotonicallyWithNoise) {
  auto a = randn({400, 6}, 2);
  auto noise = randn({400, 6}, 3);
  double prev = eval::fid_from_features(a, a);
  for (double s : {0.1, 0.3, 0.6, 1.0, 2.0, 4.0}) {
    double f = eval::fid_from_features(a, a + s * noise);
    EXPECT_GT(f, prev) << "noise scale " << s;
    prev = f;
  }
  EXPECT_GT(prev, 1.0);
}

TEST(Fid, ClosedFormForRotatedDiagonalGaussians) {
  // Same rotation Q for both: FID = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
  const int64_t f = 5;
  auto q = std::get<0>(at::linalg_qr(randn({f, f}, 4)));
  auto a = torch::tensor({1.0, 2.0, 0.5, 4.0, 0.1}, torch::kDouble);
  auto b = torch::tensor({2.0, 2.0, 1.5, 0.25, 3.0}, torch::kDouble);
  FeatureStats s1{randn({f}, 5), q.matmul(torch::diag(a)).matmul(q.t()), 1000};
  FeatureStats s2{randn({f}, 6), q.matmul(torch::diag(b)).matmul(q.t()), 1000};
  const double expected = (s1.mu - s2.mu).pow(2).sum().item<double>() +
                          (a.sqrt() - b.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(eval::frechet_distance(s1, s2), expected, 1e-9 * expected);
  EXPECT_NEAR(eval::frechet_distance(s2, s1), expected, 1e-9 * expected);  // symmetric
  FeatureStats wrong{randn({f + 1}, 7), torch::eye(f + 1, torch::kDouble), 10};
  EXPECT_THROW(eval::frechet_distance(s1, wrong), Error);
}

TEST(Fid, TraceSqrtProductOfPsdPairMatchesEigenvalues) {
  // For commuting s1 = Q diag(a) Q^T, s2 = Q diag(b) Q^T: tr sqrt(s1 s2) = sum sqrt(a_i b_i).
  auto q = std::get<0>(at::linalg_qr(randn({4, 4}, 8)));
  auto a = torch::tensor({1.0, 0.0, 9.0, 2.0}, torch::kDouble);  // singular s1
  auto b = torch::tensor({4.0, 5.0, 1.0, 8.0}, torch::kDouble);
  auto s1 = q.matmul(torch::diag(a)).matmul(q.t());
  auto s2 = q.matmul(torch::diag(b)).matmul(q.t());
  // The zero eigenvalue comes out as ~1e-15 round-off, whose square root is ~3e-8.
  EXPECT_NEAR(eval::trace_sqrt_product(s1, s2), 2.0 + 0.0 + 3.0 + 4.0, 1e-6);
}

TEST(Fid, MatchesScipySqrtm) {
  if (!have_scipy()) GTEST_SKIP() << "/usr/bin/python3 with numpy/scipy not available";
  auto a = randn({200, 12}, 9);
  auto mix = randn({12, 12}, 10) * 0.3 + torch::eye(12, torch::kDouble);
  auto b = randn({150, 12}, 11).matmul(mix) + 0.5;
  const double ours = eval::fid_from_features(a, b);
  const double ref = scipy_fid(a, b);
  EXPECT_GT(ref, 1.0);
  EXPECT_NEAR(ours, ref, 1e-7 * ref) << "ours " << ours << " scipy " << ref;
}

TEST(Fid, SingularCovarianceUsesDiagonalOffset) {
  // N < dim: both covariances are singular. We add kFidSingularOffset to both diagonals; the
  // pytorch-fid computation with the same offset agrees.
  auto a = randn({10, 32}, 12);
  auto b = randn({12, 32}, 13) * 1.5 + 0.2;
  const double ours = eval::fid_from_features(a, b);
  EXPECT_TRUE(std::isfinite(ours));
  EXPECT_GT(ours, 0.0);
  if (!have_scipy()) GTEST_SKIP() << "/usr/bin/python3 with numpy/scipy not available";
  const double ref = scipy_fid(a, b, eval::kFidSingularOffset);
  EXPECT_NEAR(ours, ref, 1e-4 * ref) << "ours " << ours << " scipy " << ref;
}

TEST(InceptionScore, OneHotUniformEqualsClassCount) {
  const int64_t k = 10, n = 200;
  auto labels = torch::arange(n, torch::kLong).remainder(k);
  auto probs = torch::one_hot(labels, k).to(torch::kFloat);
  auto is = eval::inception_score(probs, 10);
  EXPECT_NEAR(is.mean, 10.0, 1e-9);
  EXPECT_NEAR(is.std, 0.0, 1e-9);
}

TEST(InceptionScore, IdenticalPredictionsGiveOne) {
  auto row = torch::softmax(randn({1, 7}, 14), 1);
  auto is = eval::inception_score(row.expand({50, 7}).contiguous(), 5);
  EXPECT_NEAR(is.mean, 1.0, 1e-12);
  EXPECT_NEAR(is.std, 0.0, 1e-12);
}

TEST(InceptionScore, SplitsAreScoredSeparately) {
  // First half: one-hot over classes {0, 1} (IS 2); second half: one-hot over 4 classes (IS 4).
  auto l1 = torch::arange(8, torch::kLong).remainder(2);
  auto l2 = torch::arange(8, torch::kLong).remainder(4);
  auto probs = torch::one_hot(torch::cat({l1, l2}), 4).to(torch::kDouble);
  auto is = eval::inception_score(probs, 2);
  EXPECT_NEAR(is.mean, 3.0, 1e-12);
  EXPECT_NEAR(is.std, 1.0, 1e-12);
  // One split: marginal (6, 6, 2, 2) / 16, so IS = exp(E[-log p_y(y)]).
  const double one = std::exp(0.75 * std::log(16.0 / 6.0) + 0.25 * std::log(8.0));
  EXPECT_NEAR(eval::inception_score(probs, 1).mean, one, 1e-12);
  EXPECT_THROW(eval::inception_score(randn({20, 4}, 15), 2), Error);  // logits, not probs
  EXPECT_THROW(eval::inception_score(probs, 17), Error);             // fewer rows than splits
}

TEST(PrecisionRecall, KnnRadiiOnALine) {
  auto x = torch::tensor({0.0, 1.0, 3.0, 6.0, 10.0}).view({5, 1});
  EXPECT_TRUE(all_close(eval::knn_radii(x, 1), torch::tensor({1.0, 1.0, 2.0, 3.0, 4.0})));
  EXPECT_TRUE(all_close(eval::knn_radii(x, 2), torch::tensor({3.0, 2.0, 3.0, 4.0, 7.0})));
  EXPECT_TRUE(all_close(eval::knn_radii(x, 2, /*block=*/2), torch::tensor({3.0, 2.0, 3.0, 4.0, 7.0})));
  EXPECT_THROW(eval::knn_radii(x, 5), Error);
}

TEST(PrecisionRecall, BlockingDoesNotChangeResults) {
  auto real = randn({70, 5}, 16).to(torch::kFloat);
  auto fake = (randn({53, 5}, 17) * 1.3 + 0.4).to(torch::kFloat);
  auto big = eval::precision_recall(real, fake, 3, 4096);
  auto small = eval::precision_recall(real, fake, 3, 16);
  EXPECT_DOUBLE_EQ(big.precision, small.precision);
  EXPECT_DOUBLE_EQ(big.recall, small.recall);
  EXPECT_TRUE(all_close(eval::knn_radii(real, 3, 7), eval::knn_radii(real, 3, 4096), 1e-5, 1e-5));
  EXPECT_GT(big.precision, 0.0);
  EXPECT_LT(big.precision, 1.0);
}

TEST(PrecisionRecall, IdenticalSetsGiveOne) {
  auto a = randn({64, 10}, 18).to(torch::kFloat) * 5.0 + 100.0;  // large offset: centring matters
  auto pr = eval::precision_recall(a, a);
  EXPECT_DOUBLE_EQ(pr.precision, 1.0);
  EXPECT_DOUBLE_EQ(pr.recall, 1.0);
}

TEST(PrecisionRecall, FarApartSetsGiveZero) {
  auto a = randn({40, 4}, 19).to(torch::kFloat);
  auto b = randn({30, 4}, 20).to(torch::kFloat) + 1000.0;
  auto pr = eval::precision_recall(a, b);
  EXPECT_DOUBLE_EQ(pr.precision, 0.0);
  EXPECT_DOUBLE_EQ(pr.recall, 0.0);
}

TEST(PrecisionRecall, MissingModeLowersRecallOnly) {
  // Real: two far clusters of 30 and 20; fake: exactly the first cluster's points. Every fake
  // sample is a real sample (precision 1); only the first cluster is covered (recall 30/50).
  auto c1 = randn({30, 3}, 21).to(torch::kFloat);
  auto c2 = randn({20, 3}, 22).to(torch::kFloat) + 500.0;
  auto pr = eval::precision_recall(torch::cat({c1, c2}), c1);
  EXPECT_DOUBLE_EQ(pr.precision, 1.0);
  EXPECT_DOUBLE_EQ(pr.recall, 30.0 / 50.0);
}

TEST(FidStats, SaveLoadRoundTripAndKeyCheck) {
  TempDir d;
  eval::ReferenceStats ref;
  ref.key = {"fashion-mnist", "test", "abc123", "classifier"};
  ref.features = randn({20, 4}, 23).to(torch::kFloat);
  ref.stats = eval::compute_feature_stats(ref.features);
  const auto path = d.file(ref.key.file_name());
  eval::save_reference_stats(path, ref);
  auto back = eval::load_reference_stats(path, &ref.key);
  EXPECT_EQ(back.key.dataset, "fashion-mnist");
  EXPECT_EQ(back.key.net_name, "classifier");
  EXPECT_EQ(back.stats.n, 20);
  EXPECT_TRUE(torch::equal(back.stats.mu, ref.stats.mu));
  EXPECT_TRUE(torch::equal(back.stats.sigma, ref.stats.sigma));
  EXPECT_TRUE(torch::equal(back.features, ref.features));
  eval::StatsKey other = ref.key;
  other.split = "train";
  EXPECT_NE(other.file_name(), ref.key.file_name());
  EXPECT_THROW(eval::load_reference_stats(path, &other), Error);
  // Without features.
  ref.features = at::Tensor();
  eval::save_reference_stats(d.file("nofeat.safetensors"), ref);
  EXPECT_FALSE(eval::load_reference_stats(d.file("nofeat.safetensors")).features.defined());
}

TEST(FidStats, CacheComputesOnceAndRecomputesOnKeyChangeOrCorruption) {
  TempDir d;
  int calls = 0;
  auto feats = randn({30, 3}, 24).to(torch::kFloat);
  auto compute = [&] {
    ++calls;
    return feats;
  };
  eval::StatsKey key{"emoji", "test", "net1", "classifier"};
  auto r1 = eval::cached_reference_stats(d.path() + "/cache", key, compute);
  auto r2 = eval::cached_reference_stats(d.path() + "/cache", key, compute);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(torch::equal(r1.stats.sigma, r2.stats.sigma));
  EXPECT_TRUE(torch::equal(r2.features, feats));
  key.net = "net2";  // another feature network: another file
  eval::cached_reference_stats(d.path() + "/cache", key, compute);
  EXPECT_EQ(calls, 2);
  // A torn cache file is recomputed, not trusted.
  write_bytes(d.path() + "/cache/" + key.file_name(), {1, 2, 3});
  auto r3 = eval::cached_reference_stats(d.path() + "/cache", key, compute);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r3.stats.n, 30);
}

}  // namespace ctfgen::test
