// The feature classifier: shapes, component round trip, training on a tiny synthetic dataset,
// and the evaluation facade on top of it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "eval/classifier.h"
#include "eval/evaluate.h"
#include "io/checkpoint.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

// Three classes of 1x12x12 images in [-1, 1]: a horizontal bar, a vertical bar, a bright 4x4
// square, each at a random position, plus noise.
std::pair<at::Tensor, at::Tensor> synthetic(int64_t n, uint64_t seed) {
  auto g = make_generator(seed);
  auto y = torch::randint(0, 3, {n}, g, torch::kLong);
  auto pos = torch::randint(1, 8, {n, 2}, g, torch::kLong);
  auto x = torch::full({n, 1, 12, 12}, -1.0f);
  auto ya = y.accessor<int64_t, 1>();
  auto pa = pos.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    auto img = x[i][0];
    const int64_t r = pa[i][0], c = pa[i][1];
    if (ya[i] == 0) img.slice(0, r, r + 2).fill_(1.0f);
    if (ya[i] == 1) img.slice(1, c, c + 2).fill_(1.0f);
    if (ya[i] == 2) img.slice(0, r, r + 4).slice(1, c, c + 4).fill_(1.0f);
  }
  x = (x + 0.3f * torch::randn(x.sizes(), g, torch::kFloat)).clamp(-1.0f, 1.0f);
  return {x, y};
}

eval::ClassifierConfig tiny() {
  eval::ClassifierConfig c;
  c.in_channels = 1;
  c.image_size = 12;
  c.num_classes = 3;
  c.width = 4;
  return c;
}

}  // namespace

TEST(Classifier, ShapesAndStages) {
  eval::Classifier m(tiny());
  auto x = torch::zeros({5, 1, 12, 12});
  EXPECT_EQ(m->features(x).sizes(), (std::vector<int64_t>{5, 16}));
  EXPECT_EQ(m->forward(x).sizes(), (std::vector<int64_t>{5, 3}));
  EXPECT_THROW(m->forward(torch::zeros({5, 3, 12, 12})), Error);
  eval::ClassifierConfig big;
  big.in_channels = 3;
  big.image_size = 64;
  big.num_classes = 9;
  big.width = 2;
  eval::Classifier m64(big);
  EXPECT_EQ(big.num_stages(), 4);
  EXPECT_EQ(m64->convs.size(), 8u);
  EXPECT_EQ(m64->forward(torch::zeros({2, 3, 64, 64})).sizes(), (std::vector<int64_t>{2, 9}));
  eval::ClassifierConfig bad = tiny();
  bad.in_channels = 2;
  EXPECT_THROW(bad.validate(), UsageError);
  EXPECT_THROW(eval::ClassifierConfig::from_json({{"width", "wide"}}), UsageError);
}

TEST(Classifier, ComponentRoundTrip) {
  TempDir d;
  eval::Classifier m(tiny());
  {  // non-trivial BatchNorm buffers
    torch::NoGradGuard ng;
    m->bns[0]->running_mean.uniform_(-1, 1);
    m->bns[0]->running_var.uniform_(0.5, 2);
  }
  eval::save_classifier(d.file("c.safetensors"), m, {{"test_accuracy", 0.5}});
  auto back = eval::load_classifier(d.file("c.safetensors"));
  back->to(torch::kCPU);  // the loader puts it on CTFGEN_TEST_DEVICE; compare on the CPU
  EXPECT_EQ(back->config.to_json(), m->config.to_json());
  m->eval();
  auto x = synthetic(4, 1).first;
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(back->forward(x), m->forward(x)));
  EXPECT_EQ(eval::ClassifierNet(back).identity(), eval::ClassifierNet(m).identity());
  auto comp = io::load_component(d.file("c.safetensors"), "classifier");
  EXPECT_DOUBLE_EQ(comp.meta.at("test_accuracy").get<double>(), 0.5);
  EXPECT_THROW(io::load_component(d.file("c.safetensors"), "fid-stats"), Error);
}

TEST(Classifier, TrainsOnSyntheticDataToHighAccuracy) {
  TempDir d;
  auto [xtr, ytr] = synthetic(600, 2);
  auto [xte, yte] = synthetic(300, 3);
  eval::Classifier m(tiny());
  const double before = eval::classifier_accuracy(m, xte, yte);
  eval::ClassifierTrainConfig cfg;
  cfg.batch = 32;
  cfg.trainer.steps = 60;
  cfg.trainer.checkpoint_every = 0;
  cfg.trainer.log_every = 20;
  cfg.trainer.seed = 7;
  cfg.optim.lr = 1e-2;
  cfg.optim.warmup_steps = 5;
  auto r = eval::train_classifier(m, xtr, ytr, xte, yte, cfg, d.path() + "/run");
  EXPECT_EQ(r.steps, 60);
  EXPECT_GE(r.test_accuracy, 0.95) << "before training: " << before;
  EXPECT_LT(before, 0.7);
  EXPECT_FALSE(m->is_training());
  EXPECT_DOUBLE_EQ(eval::classifier_accuracy(m, xte, yte), r.test_accuracy);
  EXPECT_TRUE(fs::exists(d.path() + "/run/checkpoint.safetensors"));
  // Labels out of range are refused.
  auto bad_y = ytr.clone();
  bad_y[0] = 3;
  EXPECT_THROW(eval::train_classifier(m, xtr, bad_y, xte, yte, cfg, d.path() + "/run2"), Error);
}

TEST(Classifier, EmbedWidensTheFeaturesAndShiftTrains) {
  auto c = tiny();
  c.embed_dim = 24;
  eval::Classifier m(c);
  EXPECT_EQ(c.feature_dim(), 24);
  ASSERT_TRUE(m->embed);
  auto x = synthetic(6, 4).first;
  EXPECT_EQ(m->features(x).sizes(), (std::vector<int64_t>{6, 24}));
  EXPECT_EQ(m->forward(x).sizes(), (std::vector<int64_t>{6, 3}));
  EXPECT_FALSE(eval::Classifier(tiny())->embed);  // embed_dim 0: the plain pooled last stage
  auto bad = tiny();
  bad.embed_dim = -1;
  EXPECT_THROW(bad.validate(), UsageError);
  // Old files (no embed_dim field) still load as embed_dim 0.
  auto j = tiny().to_json();
  j.erase("embed_dim");
  EXPECT_EQ(eval::ClassifierConfig::from_json(j).embed_dim, 0);

  // Training with random shifts learns the task as well; the shift changes the batches (a run
  // without it ends at other weights) and is part of what a resume must agree on.
  TempDir d;
  auto [xtr, ytr] = synthetic(600, 2);
  auto [xte, yte] = synthetic(300, 3);
  eval::ClassifierTrainConfig cfg;
  cfg.batch = 32;
  cfg.trainer.steps = 60;
  cfg.trainer.checkpoint_every = 0;
  cfg.trainer.seed = 7;
  cfg.optim.lr = 1e-2;
  cfg.shift = 1;
  eval::Classifier shifted(c), plain(c);
  auto r = eval::train_classifier(shifted, xtr, ytr, xte, yte, cfg, d.path() + "/shift");
  EXPECT_GE(r.test_accuracy, 0.9);
  cfg.shift = 0;
  eval::train_classifier(plain, xtr, ytr, xte, yte, cfg, d.path() + "/plain");
  EXPECT_FALSE(torch::equal(shifted->fc->weight, plain->fc->weight));
  cfg.shift = 2;  // resuming the finished shift-1 run with another shift is refused
  eval::Classifier again(c);
  EXPECT_THROW(eval::train_classifier(again, xtr, ytr, xte, yte, cfg, d.path() + "/shift"), Error);
  cfg.shift = 17;
  EXPECT_THROW(cfg.validate(), UsageError);
}

TEST(Evaluate, RealVersusRealFloors) {
  // select_part: disjoint equal parts of one seeded permutation, cut to the limit.
  auto a = eval::select_part(10, 0, 2, 3), b = eval::select_part(10, 1, 2, 3);
  ASSERT_EQ(a.numel(), 5);
  ASSERT_EQ(b.numel(), 5);
  auto both = std::get<0>(torch::cat({a, b}).sort());
  EXPECT_TRUE(torch::equal(both, torch::arange(10, torch::kLong)));
  EXPECT_TRUE(torch::equal(eval::select_part(10, 0, 2, 3), a));   // deterministic
  EXPECT_FALSE(torch::equal(eval::select_part(10, 0, 2, 4), a));  // another seed, another cut
  EXPECT_EQ(eval::select_part(10, 0, 1, 3, 4).numel(), 4);
  EXPECT_THROW(eval::select_part(10, 2, 2, 0), UsageError);
  EXPECT_THROW(eval::select_part(1, 0, 2, 0), UsageError);

  // Identical sets: FID 0, precision and recall 1; another class mix: a clear distance.
  eval::Classifier m(tiny());
  {  // a briefly trained network, so that the classes are apart in its features
    TempDir d;
    auto [xtr, ytr] = synthetic(300, 2);
    eval::ClassifierTrainConfig cfg;
    cfg.batch = 32;
    cfg.trainer.steps = 30;
    cfg.trainer.checkpoint_every = 0;
    cfg.optim.lr = 1e-2;
    eval::train_classifier(m, xtr, ytr, xtr, ytr, cfg, d.path() + "/run");
  }
  eval::ClassifierNet net(m);
  auto [x, y] = synthetic(64, 5);
  eval::EvalConfig ec;
  ec.is_splits = 2;
  auto same = eval::evaluate_real_vs_real(x, x, net, ec);
  EXPECT_NEAR(same.fid, 0.0, 1e-3);
  EXPECT_DOUBLE_EQ(same.precision, 1.0);
  EXPECT_DOUBLE_EQ(same.recall, 1.0);
  auto only0 = x.index_select(0, torch::nonzero(y == 0).flatten());
  auto only1 = x.index_select(0, torch::nonzero(y != 0).flatten());
  auto apart = eval::evaluate_real_vs_real(only0, only1, net, ec);
  EXPECT_GT(apart.fid, 1.0);
  EXPECT_LT(apart.precision, 0.5);
  EXPECT_EQ(apart.n_fake, only0.size(0));
  EXPECT_EQ(apart.n_real, only1.size(0));
}

TEST(Evaluate, FacadeOnClassifierFeatures) {
  TempDir d;
  eval::Classifier m(tiny());
  eval::ClassifierNet net(m);
  auto real = synthetic(120, 4).first;
  auto ref = eval::reference_stats_for_images(real, net, {"synthetic", "test", "", ""},
                                              d.path() + "/cache", 50);
  EXPECT_EQ(ref.key.net, net.identity());
  EXPECT_EQ(ref.stats.n, 120);
  // Real against itself: FID ~ 0, precision = recall = 1.
  auto same = eval::evaluate_images(real, ref, net, {});
  EXPECT_NEAR(same.fid, 0.0, 1e-10);
  EXPECT_DOUBLE_EQ(same.precision, 1.0);
  EXPECT_DOUBLE_EQ(same.recall, 1.0);
  EXPECT_GE(same.is_mean, 1.0);
  EXPECT_EQ(same.net, "classifier");
  // Other images score worse; images of another size are resized by the net.
  auto other = (synthetic(120, 5).first * 0.2f).to(torch::kFloat);
  auto worse = eval::evaluate_images(other, ref, net, {});
  // (An untrained network has small features, so compare relative to the self-FID round-off.)
  EXPECT_GT(worse.fid, 1e-7);
  EXPECT_GT(worse.fid, 1e3 * std::abs(same.fid)) << "self " << same.fid;
  EXPECT_LT(worse.precision + worse.recall, 2.0);
  auto resized = at::upsample_bilinear2d(real, {24, 24}, false).clamp(-1, 1);
  EXPECT_TRUE(std::isfinite(eval::evaluate_images(resized, ref, net, {}).fid));
  auto j = worse.to_json();
  EXPECT_TRUE(j.contains("fid") && j.contains("recall"));
  // Images outside [-1, 1] and statistics of another network are refused.
  EXPECT_THROW(eval::evaluate_images(real * 255.0f, ref, net, {}), Error);
  eval::Classifier m2(tiny());
  eval::ClassifierNet net2(m2);
  EXPECT_NE(net2.identity(), net.identity());
  EXPECT_THROW(eval::evaluate_images(real, ref, net2, {}), Error);
  // Cached: a second call does not recompute (same statistics object content).
  auto again = eval::reference_stats_for_images(real * 0.0f, net, {"synthetic", "test", "", ""},
                                                d.path() + "/cache", 50);
  EXPECT_TRUE(torch::equal(again.stats.mu, ref.stats.mu));
}

}  // namespace ctfgen::test

namespace ctfgen::test {

TEST(TrainClassifierCli, RangeChecksAreUsageErrors) {
  auto r = run_cli({"train-classifier", "--steps", "0", "--out", "x.safetensors"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--steps"), std::string::npos) << r.err;
  r = run_cli({"train-classifier", "--steps", "5"});  // --out is required
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run_cli({"train-classifier", "--dataset", "no-such-set", "--out", "x.safetensors"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace ctfgen::test
