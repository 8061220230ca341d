// Trainer: exact resume (bit-identical per-step losses), non-finite skipping, AdamW vs libtorch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"
#include "test_util.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace ctfgen::test {
namespace {

struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(4, 16));
    fc2 = register_module("fc2", torch::nn::Linear(16, 1));
    drop = register_module("drop", torch::nn::Dropout(0.2));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(drop(torch::relu(fc1(x)))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(TinyNet);

// Trains for `steps` total (stopping early after `stop_after` steps when > 0) and returns the
// per-step losses this invocation computed.
std::vector<double> run_training(const std::string& dir, int64_t steps, int64_t stop_after,
                                 double poison_at = -1, int poison_count = 1) {
  torch::manual_seed(123);  // deliberately different init: resume must overwrite it
  TinyNet net;
  auto gen0 = at::detail::createCPUGenerator(7);
  auto data_x = torch::randn({40, 4}, gen0);
  auto data_y = data_x.sum(1, true);
  train::TrainerConfig tc;
  tc.steps = steps;
  tc.checkpoint_every = 3;
  tc.log_every = 1;
  tc.seed = 42;
  tc.max_nonfinite_in_a_row = 3;
  train::Trainer trainer(tc, dir, "test", {{"width", 16}});
  train::OptimConfig oc;
  oc.lr = 1e-2;
  oc.warmup_steps = 2;
  oc.schedule = "cosine";
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (auto& p : net->named_parameters()) params.emplace_back(p.key(), p.value());
  train::AdamW opt(params, oc);
  trainer.add_module("model", *net);
  trainer.add_optimizer("optim", opt);
  trainer.resume_if_present();
  std::vector<double> losses;
  int64_t local = 0;
  while (!trainer.done() && (stop_after <= 0 || local < stop_after)) {
    auto idx = trainer.cursor().next_batch(8, 40);
    auto noise = torch::randn({8, 1}, trainer.generator()) * 0.01;
    auto loss = torch::mse_loss(net->forward(data_x.index_select(0, idx)),
                                data_y.index_select(0, idx) + noise);
    if (trainer.step() >= poison_at && trainer.step() < poison_at + poison_count) loss = loss * std::numeric_limits<double>::quiet_NaN();
    opt.zero_grad();
    loss.backward();
    double lv = loss.item<double>();
    trainer.step_optimizer(opt, lv);
    trainer.end_step({{"loss", lv}});
    losses.push_back(lv);
    ++local;
  }
  if (stop_after <= 0 || trainer.done()) trainer.finish();
  else trainer.save_checkpoint();
  return losses;
}

}  // namespace

TEST(Trainer, ResumeGivesBitIdenticalLosses) {
  TempDir full, split;
  auto reference = run_training(full.path(), 10, 0);
  ASSERT_EQ(reference.size(), 10u);
  // Interrupted after 4 steps: the last periodic checkpoint is step 3, but save_checkpoint at 4
  // is what an orderly stop writes; resume from there.
  auto first = run_training(split.path(), 10, 4);
  auto second = run_training(split.path(), 10, 0);
  ASSERT_EQ(first.size() + second.size(), reference.size());
  std::vector<double> joined = first;
  joined.insert(joined.end(), second.begin(), second.end());
  for (size_t i = 0; i < reference.size(); ++i) EXPECT_EQ(joined[i], reference[i]) << "step " << i;
}

TEST(Trainer, ResumeFromPeriodicCheckpointAfterCrash) {
  TempDir full, crash;
  auto reference = run_training(full.path(), 9, 0);
  // Simulate kill -9 after step 5: only the periodic checkpoint at step 3 exists.
  {
    auto partial = run_training(crash.path(), 9, 3);  // writes checkpoint at step 3
    ASSERT_EQ(partial.size(), 3u);
  }
  auto rest = run_training(crash.path(), 9, 0);
  ASSERT_EQ(rest.size(), 6u);
  for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], reference[i + 3]);
  // log.jsonl holds exactly one line per step.
  std::ifstream in(crash.file("log.jsonl"));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) ++n;
  EXPECT_EQ(n, 9);
}

TEST(Trainer, ValidationLinesAreLoggedWhateverLogEvery) {
  TempDir dir;
  train::TrainerConfig tc;
  tc.steps = 6;
  tc.log_every = 4;
  tc.checkpoint_every = 0;
  train::Trainer trainer(tc, dir.path(), "test", {{"width", 1}});
  trainer.resume_if_present();
  while (!trainer.done()) {
    std::map<std::string, double> scalars{{"loss", 1.0}};
    const bool val = trainer.step() + 1 == 3;  // not a multiple of log_every
    if (val) scalars["val_loss"] = 2.5;
    trainer.end_step(scalars, /*always_log=*/val);
  }
  trainer.finish();
  std::ifstream in(dir.file("log.jsonl"));
  std::vector<int64_t> steps;
  double val = -1;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    steps.push_back(j["step"].get<int64_t>());
    if (j.contains("val_loss")) val = j["val_loss"].get<double>();
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{3, 4, 6}));
  EXPECT_EQ(val, 2.5);
}

TEST(Trainer, NonFiniteLossIsSkippedThenStops) {
  TempDir d;
  // One poisoned step is skipped and training continues.
  auto losses = run_training(d.path(), 6, 0, /*poison_at=*/2);
  EXPECT_TRUE(std::isnan(losses[2]));
  EXPECT_FALSE(std::isnan(losses[3]));
  // Three in a row (the configured limit) stop training with an error naming the checkpoint.
  TempDir d2;
  try {
    run_training(d2.path(), 8, 0, /*poison_at=*/4, /*poison_count=*/3);
    FAIL() << "expected training to stop";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("checkpoint.safetensors"), std::string::npos) << e.what();
  }
  // The last checkpoint (periodic, step 6: steps 4 and 5 were skipped, so it holds the weights
  // of the last good update) is intact, loadable and finite.
  auto c = io::load_component(d2.file("checkpoint.safetensors"), "train-test");
  EXPECT_EQ(c.meta["step"], 6);
  for (const auto& [name, t] : c.file.tensors) {
    if (t.is_floating_point()) {
      EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
    }
  }
}

TEST(Trainer, RefusesCheckpointOfAnotherModel) {
  TempDir d;
  run_training(d.path(), 3, 0);
  train::TrainerConfig tc;
  tc.steps = 5;
  train::Trainer other(tc, d.path(), "test", {{"width", 32}});
  EXPECT_THROW(other.resume_if_present(), Error);
}

TEST(Trainer, RefusesChangedSettingsNamingTheField) {
  TempDir d;
  run_training(d.path(), 3, 0);
  auto message = [&](train::TrainerConfig tc, const nlohmann::json& model) {
    train::Trainer other(tc, d.path(), "test", model);
    try {
      other.resume_if_present();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(resumed)");
  };
  train::TrainerConfig tc;
  tc.steps = 3;
  tc.seed = 42;
  // a changed setting is named with both values
  auto m = message(tc, {{"width", 32}});
  EXPECT_NE(m.find("width was 16, now 32"), std::string::npos) << m;
  m = message(tc, {{"width", 16}, {"optim", {{"lr", 0.1}}}});
  EXPECT_NE(m.find("optim was absent"), std::string::npos) << m;
  // the seed drives the data order: refused
  tc.seed = 43;
  m = message(tc, {{"width", 16}});
  EXPECT_NE(m.find("seed 42"), std::string::npos) << m;
  tc.seed = 42;
  // another step count reshapes the schedule: refused unless asked for
  tc.steps = 5;
  m = message(tc, {{"width", 16}});
  EXPECT_NE(m.find("run of 3 steps"), std::string::npos) << m;
  EXPECT_NE(m.find("--allow-steps-change"), std::string::npos) << m;
  tc.allow_steps_change = true;
  EXPECT_EQ(message(tc, {{"width", 16}}), "(resumed)");
  tc.allow_steps_change = false;
  tc.steps = 3;
  tc.checkpoint_every = 7;  // cadence and logging may change freely
  tc.log_every = 2;
  EXPECT_EQ(message(tc, {{"width", 16}}), "(resumed)");
}

TEST(AdamW, MatchesLibtorchAdamW) {
  torch::manual_seed(0);
  auto w1 = torch::randn({5, 3}, torch::requires_grad());
  auto w2 = w1.detach().clone().requires_grad_(true);
  train::OptimConfig oc;
  oc.lr = 0.01;
  oc.weight_decay = 0.1;
  oc.grad_clip = 0;
  train::AdamW ours({{"w", w1}}, oc);
  torch::optim::AdamW theirs({w2}, torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int i = 0; i < 5; ++i) {
    auto x = torch::randn({3});
    ours.zero_grad();
    theirs.zero_grad();
    (w1.mv(x).pow(2).sum()).backward();
    (w2.mv(x).pow(2).sum()).backward();
    ours.step(0.01);
    theirs.step();
  }
  EXPECT_TRUE(all_close(w1, w2, 1e-5, 1e-6));
}

TEST(AdamW, LearningRateSchedule) {
  train::OptimConfig c;
  c.lr = 1.0;
  c.warmup_steps = 4;
  c.schedule = "cosine";
  c.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(train::lr_at(c, 0, 104), 0.25);
  EXPECT_DOUBLE_EQ(train::lr_at(c, 3, 104), 1.0);
  EXPECT_NEAR(train::lr_at(c, 54, 104), 0.55, 1e-12);
  EXPECT_NEAR(train::lr_at(c, 104, 104), 0.1, 1e-12);
  c.schedule = "bogus";
  EXPECT_THROW(c.validate(), UsageError);
}

}  // namespace ctfgen::test
