// Codebook clustering: k-means, balanced k-means, average linkage, random partitions, the
// CoarseMap (file round trip, validation, token replacement) and the redundancy bookkeeping.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "cluster/agglomerative.h"
#include "cluster/clustering.h"
#include "cluster/coarse_map.h"
#include "cluster/kmeans.h"
#include "cluster/redundancy.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "io/tensor_hash.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

using namespace ctfgen::cluster;

at::Tensor randn_points(int64_t n, int64_t d, uint64_t seed) {
  auto gen = make_generator(seed);
  return at::randn({n, d}, gen, at::TensorOptions().dtype(at::kFloat));
}

// `per` points around each of `blobs` centres 10 apart, noise 0.05; truth labels in blob order.
std::pair<at::Tensor, at::Tensor> make_blobs(int64_t blobs, int64_t per, int64_t d,
                                             uint64_t seed) {
  auto gen = make_generator(seed);
  auto centres = at::randn({blobs, d}, gen, at::TensorOptions().dtype(at::kFloat)) * 10.0;
  auto noise = at::randn({blobs * per, d}, gen, at::TensorOptions().dtype(at::kFloat)) * 0.05;
  auto truth = torch::arange(blobs, torch::kLong).repeat_interleave(per);
  // Shuffle so blob members are not contiguous.
  auto perm = at::randperm(blobs * per, gen, at::TensorOptions().dtype(at::kLong));
  auto x = centres.index_select(0, truth) + noise;
  return {x.index_select(0, perm).contiguous(), truth.index_select(0, perm).contiguous()};
}

// Canonical labels (order of first appearance): equal partitions give equal tensors.
at::Tensor canonical(const at::Tensor& assign) {
  auto a = assign.to(torch::kLong).contiguous();
  std::map<int64_t, int64_t> m;
  auto out = torch::empty_like(a);
  for (int64_t i = 0; i < a.numel(); ++i) {
    auto it = m.emplace(a[i].item<int64_t>(), static_cast<int64_t>(m.size())).first;
    out[i] = it->second;
  }
  return out;
}

KMeansConfig small_config(int64_t k, int64_t restarts = 3) {
  KMeansConfig c;
  c.k = k;
  c.restarts = restarts;
  c.max_iter = 100;
  c.seed = 7;
  return c;
}

TEST(ClusterKMeans, ObjectiveNeverIncreasesAcrossIterations) {
  auto x = l2_normalize_rows(randn_points(600, 8, 1));
  for (const char* init : {"kmeans++", "random"}) {
    auto cfg = small_config(24, 2);
    cfg.init = init;
    auto r = kmeans(x, cfg);
    ASSERT_GE(r.objective_history.size(), 3u) << init;
    for (size_t i = 1; i < r.objective_history.size(); ++i)
      EXPECT_LE(r.objective_history[i], r.objective_history[i - 1] * (1 + 1e-12))
          << init << " iteration " << i;
    EXPECT_LE(r.objective, r.objective_history.back() * (1 + 1e-12));
    EXPECT_NEAR(r.objective, clustering_objective(x, r.assign, r.centroids), 1e-4);
    // The kept restart is the best one.
    EXPECT_DOUBLE_EQ(r.objective, *std::min_element(r.restart_objectives.begin(),
                                                    r.restart_objectives.end()));
  }
}

TEST(ClusterKMeans, RecoversWellSeparatedBlobs) {
  auto [x, truth] = make_blobs(6, 25, 4, 3);
  auto r = kmeans(x, small_config(6));
  EXPECT_TRUE(torch::equal(canonical(r.assign), canonical(truth)));
  EXPECT_TRUE(r.converged);
  // Centroids are the member means.
  EXPECT_TRUE(all_close(r.centroids, cluster_means(x, r.assign, 6), 1e-5, 1e-5));
}

TEST(ClusterKMeans, DeterministicForASeed) {
  auto x = randn_points(300, 5, 4);
  auto a = kmeans(x, small_config(12));
  auto b = kmeans(x, small_config(12));
  EXPECT_TRUE(torch::equal(a.assign, b.assign));
  EXPECT_EQ(a.objective, b.objective);
  EXPECT_EQ(a.objective_history, b.objective_history);
  auto cfg = small_config(12);
  cfg.seed = 8;
  auto c = kmeans(x, cfg);
  EXPECT_NE(a.restart_objectives, c.restart_objectives);
}

// k-means' assignment step and the average-linkage distance matrix run in parallel loops
// (test_main runs on 1 thread): 2 threads give the same clusters, bit for bit.
TEST(ClusterKMeans, TwoThreadsGiveTheSameClusters) {
  auto x = randn_points(3000, 8, 9);  // chunks of 256 points: the assignment splits
  auto cfg = small_config(16);
  auto a = kmeans(x, cfg);
  auto la = average_linkage(x.narrow(0, 0, 400), AgglomerativeConfig{10});
  runtime::set_threads(2);
  auto b = kmeans(x, cfg);
  auto lb = average_linkage(x.narrow(0, 0, 400), AgglomerativeConfig{10});
  runtime::set_threads(1);
  EXPECT_TRUE(torch::equal(a.assign, b.assign));
  EXPECT_EQ(a.objective_history, b.objective_history);
  EXPECT_TRUE(torch::equal(la.assign, lb.assign));
  EXPECT_EQ(la.cut_height, lb.cut_height);
}

TEST(ClusterKMeans, RejectsNaNAndInf) {
  auto x = randn_points(50, 3, 5);
  x[17][1] = std::numeric_limits<float>::quiet_NaN();
  try {
    kmeans(x, small_config(4));
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN or Inf"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("row 17"), std::string::npos) << e.what();
  }
  x[17][1] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(balanced_kmeans(x, small_config(5)), Error);
  EXPECT_THROW(average_linkage(x, AgglomerativeConfig{4}), Error);
}

TEST(ClusterKMeans, FewerPointsThanClustersIsUsageError) {
  auto x = randn_points(5, 3, 6);
  EXPECT_THROW(kmeans(x, small_config(6)), UsageError);
  EXPECT_THROW(average_linkage(x, AgglomerativeConfig{6}), UsageError);
}

TEST(ClusterKMeans, FewerDistinctPointsThanClustersLeavesNoClusterEmpty) {
  // 30 points, only 3 distinct values, 8 clusters: empty clusters are repaired.
  auto base = randn_points(3, 4, 7);
  auto x = base.index_select(0, torch::arange(30, torch::kLong) % 3).contiguous();
  auto r = kmeans(x, small_config(8, 2));
  auto sizes = cluster_sizes(r.assign, 8);
  for (int64_t c = 0; c < 8; ++c) EXPECT_GT(sizes[c], 0) << "cluster " << c;
  EXPECT_NEAR(r.objective, 0.0, 1e-9);
  EXPECT_GT(r.empty_repairs, 0);
  // One point per cluster (n == k) also works.
  auto y = randn_points(8, 4, 8);
  auto r2 = kmeans(y, small_config(8, 1));
  EXPECT_TRUE(torch::equal(std::get<0>(torch::sort(r2.assign)), torch::arange(8, torch::kLong)));
}

TEST(ClusterKMeans, ConfigJsonRoundTripAndValidation) {
  KMeansConfig c;
  c.k = 33;
  c.tol = 1e-4;
  c.init = "random";
  auto d = KMeansConfig::from_json(c.to_json());
  EXPECT_EQ(d.to_json(), c.to_json());
  EXPECT_THROW(KMeansConfig::from_json({{"kk", 3}}), UsageError);
  EXPECT_THROW(KMeansConfig::from_json({{"k", "three"}}), UsageError);
  c.restarts = 0;
  EXPECT_THROW(c.validate(), UsageError);
  ClusterConfig cc;
  cc.method = "spectral";
  EXPECT_THROW(cc.validate(), UsageError);
  EXPECT_EQ(ClusterConfig::from_json(ClusterConfig{}.to_json()).to_json(), ClusterConfig{}.to_json());
}

TEST(ClusterBalanced, EveryClusterHasExactlyNOverKMembers) {
  auto x = l2_normalize_rows(randn_points(240, 8, 9));
  auto r = balanced_kmeans(x, small_config(16, 2));
  for (int64_t s : cluster_sizes(r.assign, 16)) EXPECT_EQ(s, 15);
  EXPECT_TRUE(all_close(r.centroids, cluster_means(x, r.assign, 16), 1e-5, 1e-5));
  // Equal-size separated blobs are recovered exactly.
  auto [b, truth] = make_blobs(4, 10, 3, 10);
  auto rb = balanced_kmeans(b, small_config(4, 3));
  EXPECT_TRUE(torch::equal(canonical(rb.assign), canonical(truth)));
  // k must divide N.
  try {
    balanced_kmeans(x, small_config(7));
    FAIL() << "accepted 240 points in 7 clusters";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("divide"), std::string::npos) << e.what();
  }
}

// Naive average linkage: recompute every cluster-pair average distance from the points at
// every step (O(n^3) per step), merge the closest pair, stop at k clusters.
at::Tensor brute_force_average_linkage(const at::Tensor& x, int64_t k) {
  auto xd = x.to(torch::kDouble);
  const int64_t n = x.size(0);
  auto dist = torch::cdist(xd, xd);
  auto D = dist.accessor<double, 2>();
  std::vector<std::vector<int64_t>> clusters;
  for (int64_t i = 0; i < n; ++i) clusters.push_back({i});
  while (static_cast<int64_t>(clusters.size()) > k) {
    double best = std::numeric_limits<double>::infinity();
    size_t bi = 0, bj = 0;
    for (size_t i = 0; i < clusters.size(); ++i)
      for (size_t j = i + 1; j < clusters.size(); ++j) {
        double s = 0;
        for (int64_t a : clusters[i])
          for (int64_t b : clusters[j]) s += D[a][b];
        s /= static_cast<double>(clusters[i].size() * clusters[j].size());
        if (s < best) {
          best = s;
          bi = i;
          bj = j;
        }
      }
    clusters[bi].insert(clusters[bi].end(), clusters[bj].begin(), clusters[bj].end());
    clusters.erase(clusters.begin() + static_cast<long>(bj));
  }
  auto out = torch::empty({n}, torch::kLong);
  for (size_t c = 0; c < clusters.size(); ++c)
    for (int64_t i : clusters[c]) out[i] = static_cast<int64_t>(c);
  return out;
}

TEST(ClusterAgglomerative, EqualsBruteForceAverageLinkage) {
  for (uint64_t seed : {11u, 12u}) {
    auto x = l2_normalize_rows(randn_points(45, 4, seed));
    for (int64_t k : {1, 2, 5, 9, 20, 44, 45}) {
      auto r = average_linkage(x, AgglomerativeConfig{k});
      EXPECT_TRUE(torch::equal(canonical(r.assign), canonical(brute_force_average_linkage(x, k))))
          << "seed " << seed << " k " << k;
    }
  }
}

TEST(ClusterAgglomerative, MergeHeightsAreSortedAndBlobsRecovered) {
  auto [x, truth] = make_blobs(5, 12, 3, 13);
  auto r = average_linkage(x, AgglomerativeConfig{5});
  ASSERT_EQ(r.merges.size(), 59u);
  for (size_t i = 1; i < r.merges.size(); ++i)
    EXPECT_LE(r.merges[i - 1].height, r.merges[i].height);
  EXPECT_TRUE(torch::equal(canonical(r.assign), canonical(truth)));
  // Re-cutting the same dendrogram at another k matches a fresh run.
  auto r3 = average_linkage(x, AgglomerativeConfig{3});
  EXPECT_TRUE(torch::equal(cut_dendrogram(r.merges, 60, 3), r3.assign));
}

TEST(ClusterRandom, PartitionHasExactlyTheGivenSizes) {
  std::vector<int64_t> sizes{5, 1, 9, 3, 3, 7};
  auto gen = make_generator(0);
  auto a = random_partition(sizes, gen);
  EXPECT_EQ(a.numel(), 28);
  EXPECT_EQ(cluster_sizes(a, 6), sizes);
  auto gen2 = make_generator(0);
  EXPECT_TRUE(torch::equal(a, random_partition(sizes, gen2)));
}

CoarseMap blob_map(int64_t* k_out = nullptr) {
  auto x = l2_normalize_rows(randn_points(64, 8, 21));
  auto r = kmeans(x, small_config(10, 2));
  if (k_out) *k_out = 10;
  return CoarseMap::from_assignment(r.assign, 10, x, {{"method", "kmeans"}}, "hash-a");
}

TEST(ClusterCoarseMap, EveryCodeHasExactlyOneCanonicalLabel) {
  auto m = blob_map();
  const auto coarse = m.coarse_of().to(torch::kLong);
  const auto off = m.offsets().to(torch::kLong);
  const auto mem = m.members().to(torch::kLong);
  EXPECT_EQ(off[0].item<int64_t>(), 0);
  EXPECT_EQ(off[10].item<int64_t>(), 64);
  EXPECT_TRUE(torch::equal(std::get<0>(torch::sort(mem)), torch::arange(64, torch::kLong)));
  for (int64_t c = 0; c < 10; ++c) {
    for (int64_t i = off[c].item<int64_t>(); i < off[c + 1].item<int64_t>(); ++i)
      EXPECT_EQ(coarse[mem[i]].item<int64_t>(), c);
    if (c > 0) {
      EXPECT_LT(mem[off[c - 1]].item<int64_t>(), mem[off[c]].item<int64_t>());
    }
  }
  EXPECT_EQ(coarse[0].item<int64_t>(), 0);  // canonical: code 0 is in cluster 0
  auto mask = m.member_mask();
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{10, 64}));
  EXPECT_TRUE(torch::equal(mask.sum(0), torch::ones({64}, torch::kLong)));
  auto sizes = m.sizes();
  EXPECT_TRUE(torch::equal(mask.sum(1), torch::tensor(sizes, torch::kLong)));
  // to_coarse keeps the shape and matches coarse_of.
  auto fine = torch::randint(0, 64, {2, 3, 4}, torch::kLong);
  auto cc = m.to_coarse(fine);
  EXPECT_EQ(cc.sizes(), fine.sizes());
  EXPECT_TRUE(torch::equal(cc, coarse.index({fine})));
  EXPECT_THROW(m.to_coarse(torch::tensor({64}, torch::kLong)), Error);
  // Relabelling the same partition gives the same map.
  auto perm_labels = (m.coarse_of().to(torch::kLong) * 7 + 3) % 10;  // 7 is invertible mod 10
  auto x = l2_normalize_rows(randn_points(64, 8, 21));
  auto m2 = CoarseMap::from_assignment(perm_labels, 10, x, {}, "hash-a");
  EXPECT_TRUE(torch::equal(m2.coarse_of(), m.coarse_of()));
  // Statistics: the inertia matches the objective of the member means.
  EXPECT_NEAR(m.stats().objective, clustering_objective(x, m.coarse_of(), m.centroids()), 1e-6);
  EXPECT_GT(m.stats().mean_intra_distance, 0);
}

TEST(ClusterCoarseMap, FileRoundTripAndTokenizerCheck) {
  TempDir dir;
  auto m = blob_map();
  const std::string path = dir.file("c.safetensors");
  m.save(path);
  auto l = CoarseMap::load(path);
  EXPECT_TRUE(torch::equal(l.coarse_of(), m.coarse_of()));
  EXPECT_TRUE(torch::equal(l.offsets(), m.offsets()));
  EXPECT_TRUE(torch::equal(l.members(), m.members()));
  EXPECT_TRUE(torch::equal(l.centroids(), m.centroids()));
  EXPECT_EQ(l.tokenizer_hash(), "hash-a");
  EXPECT_EQ(l.method(), "kmeans");
  EXPECT_DOUBLE_EQ(l.stats().objective, m.stats().objective);
  EXPECT_EQ(l.size_histogram(), m.size_histogram());
  EXPECT_NO_THROW(l.check_tokenizer("hash-a", "stage-1 training"));
  try {
    l.check_tokenizer("hash-b", "stage-1 training");
    FAIL() << "foreign tokenizer accepted";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("stage-1 training"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("hash-a"), std::string::npos) << msg;
    EXPECT_NE(msg.find("hash-b"), std::string::npos) << msg;
  }
}

TEST(ClusterCoarseMap, LoadRejectsInconsistentFiles) {
  TempDir dir;
  auto m = blob_map();
  auto write = [&](const std::string& name, at::Tensor coarse, at::Tensor off, at::Tensor mem,
                   nlohmann::json meta = {{"tokenizer_hash", "h"}}) {
    std::string p = dir.file(name);
    io::save_component(p, "clusters", {{"method", "kmeans"}},
                       {{"coarse_of", coarse}, {"offsets", off}, {"members", mem},
                        {"centroids", m.centroids()}},
                       meta);
    return p;
  };
  auto expect_error = [](const std::string& p, const std::string& needle) {
    try {
      CoarseMap::load(p);
      ADD_FAILURE() << p << " accepted";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  auto mem = m.members().clone();
  mem[1] = mem[0];  // a code listed twice, another missing
  expect_error(write("dup.st", m.coarse_of(), m.offsets(), mem), "more than one");
  auto coarse = m.coarse_of().clone();
  coarse[5] = (coarse[5].item<int>() + 1) % 10;
  expect_error(write("coarse.st", coarse, m.offsets(), m.members()), "coarse_of says");
  auto off = m.offsets().clone();
  off[10] = 63;
  expect_error(write("off.st", m.coarse_of(), off, m.members()), "offsets");
  expect_error(write("dtype.st", m.coarse_of().to(torch::kLong), m.offsets(), m.members()),
               "dtype");
  expect_error(write("nohash.st", m.coarse_of(), m.offsets(), m.members(), nlohmann::json::object()),
               "tokenizer_hash");
  // Another kind of component file.
  std::string other = dir.file("vq.st");
  io::save_component(other, "vq", {}, {{"x", torch::zeros({1})}});
  expect_error(other, "clusters");
}

TEST(ClusterCoarseMap, ReplaceWithMembersStaysInsideTheCluster) {
  // Clusters {0,1,2}, {3}, {4,5}: cluster 1 is a singleton.
  auto x = randn_points(6, 2, 30);
  auto m = CoarseMap::from_assignment(torch::tensor({0, 0, 0, 1, 2, 2}, torch::kLong), 3, x, {},
                                      "h");
  auto fine = torch::randint(0, 6, {200, 7}, torch::kLong);
  auto gen = make_generator(0);
  auto inc = m.replace_with_members(fine, gen, false);
  EXPECT_EQ(inc.sizes(), fine.sizes());
  EXPECT_TRUE(torch::equal(m.to_coarse(inc), m.to_coarse(fine)));
  auto gen2 = make_generator(0);
  auto exc = m.replace_with_members(fine, gen2, true);
  EXPECT_TRUE(torch::equal(m.to_coarse(exc), m.to_coarse(fine)));
  auto singleton = fine.eq(3);
  EXPECT_TRUE(torch::equal(exc.ne(fine), singleton.logical_not()));  // all others changed
  EXPECT_TRUE(torch::equal(inc.masked_select(singleton), fine.masked_select(singleton)));
  // include-self: changes with probability 1 - 1/|cluster|; every member gets drawn.
  auto many = torch::zeros({20000}, torch::kLong);
  auto gen3 = make_generator(1);
  auto r = m.replace_with_members(many, gen3, false);
  const double frac_changed = r.ne(0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(frac_changed, 2.0 / 3.0, 0.02);
  for (int64_t v : {0, 1, 2}) EXPECT_GT(r.eq(v).sum().item<int64_t>(), 6000);
  // Deterministic for a seed.
  auto gen4 = make_generator(0);
  EXPECT_TRUE(torch::equal(inc, m.replace_with_members(fine, gen4, false)));
}

// Writes a minimal VQ component file holding only a codebook.
std::string write_fake_vq(const TempDir& dir, int64_t v, int64_t d, uint64_t seed) {
  std::string p = dir.file("vq.safetensors");
  io::save_component(p, "vq", {{"codebook_size", v}},
                     {{"quantize.embedding.weight", randn_points(v, d, seed) * 3.0},
                      {"decoder.conv_out.weight", torch::ones({2, 2})}});
  return p;
}

TEST(ClusterCodebook, LoadsNormalisedCodebookAndTokenizerHash) {
  TempDir dir;
  auto p = write_fake_vq(dir, 96, 8, 40);
  auto cb = load_codebook(p);
  EXPECT_EQ(cb.normalized.sizes(), (std::vector<int64_t>{96, 8}));
  EXPECT_TRUE(all_close(cb.normalized.norm(2, {1}), torch::ones({96}), 1e-5, 1e-6));
  EXPECT_EQ(cb.tokenizer_hash, io::tokenizer_hash(io::load_component(p).file.tensors));
  for (const char* method : {"kmeans", "balanced", "agglomerative", "random"}) {
    ClusterConfig cfg;
    cfg.method = method;
    cfg.k = 8;
    cfg.restarts = 2;
    auto out = cluster_codebook(cb.normalized, cfg, cb.tokenizer_hash);
    EXPECT_EQ(out.map.num_clusters(), 8) << method;
    EXPECT_EQ(out.map.method(), method);
    EXPECT_EQ(out.map.tokenizer_hash(), cb.tokenizer_hash);
    if (std::string(method) == "balanced") {
      EXPECT_EQ(out.map.size_histogram(), (std::map<int64_t, int64_t>{{12, 8}}));
    }
  }
  // random uses exactly the k-means sizes for the same k and seed.
  ClusterConfig km;
  km.k = 8;
  km.restarts = 2;
  ClusterConfig rnd = km;
  rnd.method = "random";
  EXPECT_EQ(cluster_codebook(cb.normalized, km, "h").map.size_histogram(),
            cluster_codebook(cb.normalized, rnd, "h").map.size_histogram());
}

TEST(ClusterCli, ClusterCommandWritesAValidFile) {
  TempDir dir;
  auto vq = write_fake_vq(dir, 64, 8, 41);
  auto out = dir.file("c.safetensors");
  auto r = run_cli({"cluster", "--vq", vq, "--k", "8", "--method", "kmeans", "--restarts", "2",
                    "--out", out, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["num_clusters"], 8);
  auto m = CoarseMap::load(out);
  EXPECT_EQ(m.tokenizer_hash(), load_codebook(vq).tokenizer_hash);
  auto bad = run_cli({"cluster", "--vq", vq, "--k", "7", "--method", "balanced", "--out", out});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("divide"), std::string::npos) << bad.err;
  auto many = run_cli({"cluster", "--vq", vq, "--k", "65", "--out", out});
  EXPECT_EQ(many.exit_code, 2) << many.err;
}

TEST(ClusterRedundancy, BookkeepingWithToyCallbacks) {
  // Toy tokenizer: an image is a 2x2 grid of 1x1 pixels whose 2 channels are the codeword.
  const int64_t v = 12;
  auto cb = l2_normalize_rows(randn_points(v, 2, 50));
  auto encode = [cb](const at::Tensor& img) {  // [B, 2, 2, 2] -> [B, 2, 2]
    auto flat = img.permute({0, 2, 3, 1}).reshape({-1, 2});
    return torch::cdist(flat, cb).argmin(1).reshape({img.size(0), 2, 2});
  };
  auto decode = [cb](const at::Tensor& codes) {  // [B, 2, 2] -> [B, 2, 2, 2]
    return cb.index_select(0, codes.reshape({-1})).reshape({codes.size(0), 2, 2, 2})
        .permute({0, 3, 1, 2});
  };
  auto score = [](const at::Tensor& a, const at::Tensor& ref) {
    return std::map<std::string, at::Tensor>{{"mse", (a - ref).pow(2).mean({1, 2, 3})}};
  };
  RedundancyConfig cfg;
  cfg.strip_images = 3;
  RedundancyTest test(cb, cfg, encode, decode, score);
  auto singletons = CoarseMap::from_assignment(torch::arange(v, torch::kLong), v, cb, {}, "h");
  auto pairs = CoarseMap::from_assignment(torch::arange(v, torch::kLong) / 2, v / 2, cb,
                                          {{"method", "kmeans"}}, "h");
  test.add_variant("singletons", singletons);
  test.add_variant("pairs", pairs);
  test.add_variant("pairs random", random_control(pairs, cb, 0));
  // Images made of codewords, so the reconstruction is exact.
  auto gen = make_generator(3);
  auto codes = at::randint(0, v, {10, 2, 2}, gen, at::TensorOptions().dtype(at::kLong));
  test.add_batch(decode(codes).slice(0, 0, 6));
  test.add_batch(decode(codes).slice(0, 6, 10));
  auto j = test.results_json();
  auto rows = j["rows"];
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0]["name"], "reconstruction");
  EXPECT_NEAR(rows[0]["vs_original"]["mse"].get<double>(), 0.0, 1e-10);
  EXPECT_EQ(rows[1]["frac_changed"].get<double>(), 0.0);  // singletons never change
  EXPECT_NEAR(rows[1]["vs_original"]["mse"].get<double>(), 0.0, 1e-10);
  EXPECT_EQ(rows[1]["tokens"], 40);
  EXPECT_DOUBLE_EQ(rows[2]["expected_frac_changed"].get<double>(), 0.5);
  // Changed tokens cost exactly their codeword distance: MSE = mean sq dist / 2 channels.
  EXPECT_NEAR(rows[2]["vs_original"]["mse"].get<double>(),
              rows[2]["mean_sq_code_dist"].get<double>() / 2.0, 1e-6);
  EXPECT_GT(rows[2]["frac_changed"].get<double>(), 0.0);
  auto strip = test.strip();
  EXPECT_EQ(strip.sizes(), (std::vector<int64_t>{2, 3 * 2, 5 * 2}));
  EXPECT_EQ(test.strip_columns().size(), 5u);
  EXPECT_NE(test.table().find("pairs random"), std::string::npos);
  EXPECT_EQ(test.table().find("nan"), std::string::npos) << test.table();  // "-" when missing
  // exclude-self changes every token of a pair clustering.
  cfg.exclude_self = true;
  RedundancyTest strict(cb, cfg, encode, decode, score);
  strict.add_variant("pairs", pairs);
  strict.add_batch(decode(codes));
  EXPECT_EQ(strict.results_json()["rows"][1]["frac_changed"].get<double>(), 1.0);

  // Set-level metrics see all images of a row at once: here the distance between the feature
  // means (0 for identical sets), as FID would be computed from features.
  RedundancyTest sets(cb, RedundancyConfig{}, encode, decode, score);
  sets.set_set_metrics(
      [](const at::Tensor& x) { return x.reshape({x.size(0), -1}); },
      [](const at::Tensor& a, const at::Tensor& ref) {
        EXPECT_EQ(a.size(0), 10);
        return std::map<std::string, double>{
            {"mean_gap", (a.mean(0) - ref.mean(0)).norm().item<double>()}};
      });
  sets.add_variant("singletons", singletons);
  sets.add_variant("pairs random", random_control(pairs, cb, 0));
  sets.add_batch(decode(codes).slice(0, 0, 4));
  sets.add_batch(decode(codes).slice(0, 4, 10));
  auto sr = sets.results_json()["rows"];
  EXPECT_NEAR(sr[0]["vs_original"]["mean_gap"].get<double>(), 0.0, 1e-6);
  EXPECT_NEAR(sr[1]["vs_reconstruction"]["mean_gap"].get<double>(), 0.0, 1e-6);
  EXPECT_GT(sr[2]["vs_original"]["mean_gap"].get<double>(), 1e-3);
  EXPECT_NE(sets.table().find("mean_gap/orig"), std::string::npos);
}

}  // namespace
}  // namespace ctfgen::test
