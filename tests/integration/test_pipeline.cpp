// End to end on tiny configurations: train a tokenizer, encode, cluster, train CTF stage 1,
// stage 2 and the baseline for a few steps, sample with both, decode. Runs in seconds.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cluster/clustering.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/token_dir.h"
#include "pipeline/generate.h"
#include "pipeline/train_generator.h"
#include "test_util.h"
#include "eval/classifier.h"
#include "io/image_io.h"
#include "pipeline/evaluate_generator.h"
#include "vq/vq_train.h"

namespace ctfgen::test {
namespace {

// Two classes of 8x8 images (grey content in 3 channels): horizontal vs vertical bars, with noise.
void make_images(int64_t n, at::Tensor& x, at::Tensor& y, uint64_t seed) {
  auto gen = make_generator(seed);
  y = torch::randint(2, {n}, gen, torch::kLong);
  x = torch::full({n, 1, 8, 8}, -1.0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t pos = torch::randint(8, {1}, gen).item<int64_t>();
    if (y[i].item<int64_t>() == 0)
      x[i][0][pos].fill_(1.0);
    else
      x[i][0].select(1, pos).fill_(1.0);
  }
  x = (x + 0.1 * torch::randn(x.sizes(), gen)).clamp(-1, 1).repeat({1, 3, 1, 1});
}

vq::VQConfig tiny_vq() {
  vq::VQConfig c;
  c.codebook_size = 32;
  c.codebook_dim = 4;
  c.in_channels = 3;
  c.base_channels = 8;
  c.encoder_ch_mult = {1, 2};
  c.decoder_ch_mult = {1, 2};
  c.encoder_num_res_blocks = 1;
  c.decoder_num_res_blocks = 1;
  c.z_channels = 8;
  c.norm_groups = 4;
  c.image_size = 8;
  return c;
}

}  // namespace

TEST(Pipeline, TinyEndToEndCtfAndBaseline) {
  TempDir dir;
  at::Tensor x, y, xt, yt;
  make_images(96, x, y, 1);
  make_images(32, xt, yt, 2);

  vq::VQTrainConfig vc;
  vc.model = tiny_vq();
  vc.batch_size = 16;
  vc.optim.lr = 3e-3;
  vc.trainer.steps = 6;
  vc.trainer.checkpoint_every = 0;
  auto vr = vq::train_vq(vc, x, xt, dir.file("vq"));
  auto model = vq::load_vq(vr.model_path);
  const std::string hash = vq::vq_tokenizer_hash(model);

  auto encode = [&](const at::Tensor& images, const at::Tensor& labels) {
    data::TokenSet s;
    s.codes = vq::encode_to_indices(model, images).to(torch::kInt);
    s.labels = labels;
    s.meta = {{"tokenizer_hash", hash}, {"codebook_size", 32}, {"grid_h", s.codes.size(1)},
              {"grid_w", s.codes.size(2)}, {"num_classes", 2}};
    return s;
  };
  auto train = encode(x, y), test = encode(xt, yt);
  ASSERT_EQ(train.codes.size(1), 4);  // 8x8 images, 2x down-sampling

  auto cb = cluster::load_codebook(vr.model_path);
  cluster::ClusterConfig cc;
  cc.k = 4;
  cc.restarts = 2;
  auto clusters = cluster::cluster_codebook(cb.normalized, cc, cb.tokenizer_hash).map;
  clusters.save(dir.file("clusters.safetensors"));

  pipeline::GeneratorTrainConfig g;
  g.preset = "tiny";
  g.batch_size = 16;
  g.trainer.steps = 4;
  g.trainer.checkpoint_every = 0;
  g.val_batches = 1;
  g.stage = pipeline::GeneratorStage::Coarse;
  auto s1 = pipeline::train_generator(g, train, &test, &clusters, dir.file("stage1"));
  g.stage = pipeline::GeneratorStage::Aux;
  auto s2 = pipeline::train_generator(g, train, &test, &clusters, dir.file("stage2"));
  g.stage = pipeline::GeneratorStage::Baseline;
  auto base = pipeline::train_generator(g, train, &test, nullptr, dir.file("baseline"));
  // bf16 autocast trains too (the loss is computed in fp32 and stays finite).
  g.amp = "bf16";
  auto base16 = pipeline::train_generator(g, train, &test, nullptr, dir.file("baseline_bf16"));
  EXPECT_TRUE(std::isfinite(base16.final_loss) && base16.final_loss > 0) << base16.final_loss;
  g.amp = "off";
  EXPECT_GT(s1.val_loss, 0);
  EXPECT_GT(s2.val_loss, 0);

  auto ctf = pipeline::load_generator({vr.model_path, s1.model_path, s2.model_path,
                                       dir.file("clusters.safetensors")});
  ASSERT_EQ(ctf.mode, "ctf");
  pipeline::GenerateConfig gc;
  gc.restrict_to_cluster = true;
  gc.coarse_preview = true;
  auto labels = torch::tensor({0, 1, 1}, torch::kLong);
  auto rng = make_generator(5);
  auto r = pipeline::generate(ctf, labels, gc, rng, false);
  EXPECT_EQ(r.images.sizes(), (std::vector<int64_t>{3, 3, 8, 8}));
  EXPECT_EQ(r.preview.sizes(), r.images.sizes());
  // With --restrict every fine token belongs to the coarse cluster stage 1 chose.
  EXPECT_TRUE(torch::equal(clusters.to_coarse(r.fine), r.coarse));
  EXPECT_LE(r.images.max().item<double>(), 1.0);

  // Same seed, same tokens.
  auto rng2 = make_generator(5);
  auto r2 = pipeline::generate(ctf, labels, gc, rng2, false);
  EXPECT_TRUE(torch::equal(r.fine, r2.fine));

  auto baseline = pipeline::load_generator({vr.model_path, base.model_path, "", ""});
  ASSERT_EQ(baseline.mode, "baseline");
  auto rb = pipeline::generate(baseline, labels, gc, rng, false);
  EXPECT_EQ(rb.fine.sizes(), (std::vector<int64_t>{3, 4, 4}));
  EXPECT_GE(rb.fine.min().item<int64_t>(), 0);
  EXPECT_LT(rb.fine.max().item<int64_t>(), 32);

  // Mismatched files are refused: a baseline model cannot serve as CTF stage 1.
  EXPECT_THROW(pipeline::load_generator({vr.model_path, base.model_path, s2.model_path,
                                         dir.file("clusters.safetensors")}),
               Error);

  // Evaluation against an ImageFolder copy of the test images, with an (untrained) classifier
  // as the feature network: metrics are computed, the reference statistics are cached and reused.
  const auto u8 = io::to_uint8(xt);
  for (int64_t i = 0; i < xt.size(0); ++i) {
    for (const char* split : {"train", "test"}) {
      const std::string cls = dir.file(std::string("ref/") + split + "/c" + std::to_string(yt[i].item<int64_t>()));
      fs::ensure_dir(cls);
      io::write_png(cls + "/" + std::to_string(i) + ".png", io::chw_to_hwc(u8[i]));
    }
  }
  eval::ClassifierConfig clf_cfg;
  clf_cfg.in_channels = 3;
  clf_cfg.image_size = 8;
  clf_cfg.num_classes = 2;
  clf_cfg.width = 4;
  eval::Classifier clf(clf_cfg);
  eval::save_classifier(dir.file("clf.safetensors"), clf);
  eval::ClassifierNet net(eval::load_classifier(dir.file("clf.safetensors")));
  pipeline::GeneratorEvalConfig ec;
  ec.num_samples = 12;
  ec.chunk = 5;
  ec.reference.name = "imagefolder";
  ec.reference.path = dir.file("ref");
  ec.cache_dir = dir.file("cache");
  ec.metrics.is_splits = 2;
  auto er = pipeline::evaluate_generator(ctf, net, gc, ec);
  EXPECT_EQ(er.metrics.n_fake, 12);
  EXPECT_EQ(er.metrics.n_real, 32);
  EXPECT_TRUE(std::isfinite(er.metrics.fid) && er.metrics.fid >= 0) << er.metrics.fid;
  EXPECT_TRUE(std::isfinite(er.metrics.is_mean));
  EXPECT_GE(er.metrics.precision, 0.0);
  EXPECT_LE(er.metrics.recall, 1.0);
  EXPECT_GT(er.images_per_s, 0.0);
  ASSERT_EQ(er.images.size(0), 12);
  EXPECT_TRUE(torch::equal(er.labels, torch::arange(12, torch::kLong).remainder(2)));
  // Same seed, same samples and metrics; the statistics now come from the cache (the images
  // are gone).
  std::filesystem::remove_all(dir.file("ref"));
  auto er2 = pipeline::evaluate_generator(ctf, net, gc, ec);
  EXPECT_DOUBLE_EQ(er2.metrics.fid, er.metrics.fid);
  EXPECT_TRUE(torch::equal(er2.images, er.images));

  // The CLI prints the same numbers as JSON.
  auto cli = run_cli({"eval", "--tokenizer", vr.model_path, "--model", s1.model_path, "--aux",
                      s2.model_path, "--clusters", dir.file("clusters.safetensors"), "--restrict",
                      "--classifier", dir.file("clf.safetensors"), "--num-samples", "12",
                      "--dataset", "imagefolder", "--data-path", dir.file("ref"), "--cache-dir",
                      dir.file("cache"), "--is-splits", "2", "--out", dir.file("eval"), "--json"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  auto j = nlohmann::json::parse(cli.out);
  EXPECT_EQ(j["mode"], "ctf");
  EXPECT_EQ(j["metrics"]["n_fake"], 12);
  EXPECT_TRUE(std::filesystem::exists(dir.file("eval/samples.png")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("eval/eval.json")));
  cli = run_cli({"eval", "--tokenizer", vr.model_path, "--model", s1.model_path, "--num-samples", "12"});
  EXPECT_EQ(cli.exit_code, 2);
  EXPECT_NE(cli.err.find("--classifier or --inception"), std::string::npos) << cli.err;
}

}  // namespace ctfgen::test
