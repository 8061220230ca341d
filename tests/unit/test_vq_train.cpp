// VQ training loop on a tiny synthetic dataset: the loss goes down, outputs are written, resume
// continues the same run, dead-code restarts raise usage.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include "core/fs.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/token_dir.h"
#include "io/checkpoint.h"
#include "io/npy.h"
#include "test_util.h"
#include "vq/vq_train.h"

namespace ctfgen::test {
namespace {

vq::VQConfig tiny_train_config() { return tiny_vq_config(32, 1); }

// Smooth synthetic 8x8 grey images: a bright square at a random position on a dark background.
at::Tensor synthetic_images(int64_t n, uint64_t seed) {
  auto gen = make_generator(seed);
  auto x = torch::full({n, 1, 8, 8}, -1.0);
  auto pos = torch::randint(0, 5, {n, 2}, gen, torch::kLong);
  auto val = torch::rand({n}, gen);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = pos[i][0].item<int64_t>(), c = pos[i][1].item<int64_t>();
    x[i].slice(1, r, r + 4).slice(2, c, c + 4).fill_(val[i].item<double>());
  }
  return x;
}

vq::VQTrainConfig tiny_run(int64_t steps) {
  vq::VQTrainConfig c;
  c.model = tiny_train_config();
  c.optim.name = "adam";
  c.optim.weight_decay = 0.0;
  c.optim.lr = 3e-3;
  c.trainer.steps = steps;
  c.trainer.checkpoint_every = 0;
  c.trainer.log_every = 1000;
  c.trainer.seed = 5;
  c.batch_size = 16;
  c.eval_batch = 32;
  return c;
}

}  // namespace

TEST(VQTrain, ConfigJsonRoundTrip) {
  auto c = tiny_run(10);
  c.disc_weight = 0.5;
  c.recon_loss = "l1";
  EXPECT_EQ(vq::VQTrainConfig::from_json(c.to_json()).to_json(), c.to_json());
  c.recon_loss = "l3";
  EXPECT_THROW(c.validate(), UsageError);
}

TEST(VQTrain, FewStepsReduceLossAndWriteOutputs) {
  log::set_verbosity(0);
  TempDir dir;
  auto train = synthetic_images(64, 1), held = synthetic_images(32, 2);
  auto cfg = tiny_run(40);
  vq::VQModel init(cfg.model, cfg.trainer.seed);
  const double before = vq::evaluate_vq(init, held).recon_mse;
  auto r = vq::train_vq(cfg, train, held, dir.path());
  EXPECT_EQ(r.steps, 40);
  EXPECT_LT(r.eval.recon_mse, 0.5 * before) << "before " << before;
  EXPECT_TRUE(std::isnan(r.eval.ssim));  // 8x8 is below the SSIM window
  EXPECT_TRUE(fs::exists(dir.file("vq.safetensors")));
  auto metrics = nlohmann::json::parse(fs::read_text(dir.file("metrics.json")));
  EXPECT_NEAR(metrics["eval"]["recon_mse"].get<double>(), r.eval.recon_mse, 1e-12);
  auto model = vq::load_vq(dir.file("vq.safetensors"));
  EXPECT_NEAR(vq::evaluate_vq(model, held).psnr, r.eval.psnr, 1e-9);
  auto comp = io::load_component(dir.file("vq.safetensors"), "vq");
  EXPECT_EQ(comp.meta["step"], 40);
}

TEST(VQTrain, ResumeContinuesToTheSameModel) {
  log::set_verbosity(0);
  TempDir a, b;
  auto train = synthetic_images(48, 3), held = synthetic_images(16, 4);
  auto cfg = tiny_run(12);
  cfg.model.dead_code_restart_every = 3;
  cfg.batch_size = 8;
  auto full = vq::train_vq(cfg, train, held, a.path());
  auto part = cfg;
  part.trainer.steps = 5;
  vq::train_vq(part, train, held, b.path());
  // Another step count is refused unless asked for (the schedule depends on it; constant here).
  EXPECT_THROW(vq::train_vq(cfg, train, held, b.path()), Error);
  cfg.trainer.allow_steps_change = true;
  auto resumed = vq::train_vq(cfg, train, held, b.path());
  EXPECT_TRUE(resumed.resumed);
  EXPECT_EQ(resumed.steps, 12);
  auto ma = vq::load_vq(a.file("vq.safetensors")), mb = vq::load_vq(b.file("vq.safetensors"));
  EXPECT_EQ(vq::vq_tokenizer_hash(ma), vq::vq_tokenizer_hash(mb));
  // A changed training setting (not only the model) is refused, naming it.
  auto lr = cfg;
  lr.optim.lr *= 2;
  try {
    vq::train_vq(lr, train, held, b.path());
    ADD_FAILURE() << "a changed learning rate was accepted on resume";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("optim.lr was"), std::string::npos) << e.what();
  }
}

TEST(VQTrain, DeadCodeRestartsRaiseUsage) {
  log::set_verbosity(0);
  TempDir a, b;
  auto train = synthetic_images(64, 6), held = synthetic_images(64, 7);
  auto cfg = tiny_run(30);
  cfg.model.codebook_size = 64;
  cfg.model.dead_code_restart_every = 0;
  auto off = vq::train_vq(cfg, train, held, a.path());
  cfg.model.dead_code_restart_every = 1;
  cfg.restart_stop_fraction = 0.8;
  auto on = vq::train_vq(cfg, train, held, b.path());
  EXPECT_GT(on.eval.used, off.eval.used) << "off " << off.eval.used << " on " << on.eval.used;
}

}  // namespace ctfgen::test


namespace ctfgen::test {

TEST(TokenDir, RoundTripAndValidation) {
  TempDir dir;
  data::TokenSet set;
  set.codes = torch::randint(0, 16, {5, 3, 4}, make_generator(1), torch::kLong).to(torch::kInt);
  set.labels = torch::tensor({0, 1, 2, 1, 0}, torch::kLong);
  set.meta = {{"tokenizer_hash", "abc"}, {"codebook_size", 16}, {"grid_h", 3}, {"grid_w", 4},
              {"num_classes", 3}, {"class_names", {"a", "b", "c"}}, {"dataset", "synthetic"},
              {"split", "train"}, {"flipped", false}};
  data::save_token_dir(dir.path(), set);
  auto back = data::load_token_dir(dir.path());
  EXPECT_EQ(back.codes.scalar_type(), torch::kInt);
  EXPECT_EQ(back.labels.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(back.codes, set.codes));
  EXPECT_TRUE(torch::equal(back.labels, set.labels));
  EXPECT_EQ(back.meta, set.meta);

  auto bad = set;
  bad.codes = set.codes.clone();
  bad.codes[0][0][0] = 16;  // out of [0, V)
  try {
    data::save_token_dir(dir.file("bad"), bad);
    FAIL() << "expected a range error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("codes.npy"), std::string::npos) << e.what();
  }
  bad = set;
  bad.labels = set.labels.slice(0, 0, 4);
  EXPECT_THROW(data::save_token_dir(dir.file("bad2"), bad), Error);
  bad = set;
  bad.meta["grid_w"] = 5;
  EXPECT_THROW(data::save_token_dir(dir.file("bad3"), bad), Error);
  // A file that does not match the others on disk is named in the error.
  io::save_npy(dir.file("codes.npy"), torch::zeros({4, 3, 4}, torch::kInt));
  try {
    data::load_token_dir(dir.path());
    FAIL() << "expected a count mismatch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("labels.npy"), std::string::npos) << e.what();
  }
}

}  // namespace ctfgen::test
