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
#include "io/checkpoint.h"
#include "io/image_io.h"
#include "io/tensor_hash.h"
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


// The shared start of the pipeline tests: a tokenizer trained for a few steps on the bar
// images, their token sets, and a 4-cluster k-means map saved to clusters.safetensors.
struct TinyWorld {
  std::string vq_path;
  vq::VQModel model{nullptr};
  data::TokenSet train, test;
  cluster::CoarseMap clusters;
  at::Tensor x, y, xt, yt;
};

// 4 steps of the tiny preset, batch 16, one validation batch, no periodic checkpoints.
pipeline::GeneratorTrainConfig tiny_train_config() {
  pipeline::GeneratorTrainConfig g;
  g.preset = "tiny";
  g.batch_size = 16;
  g.trainer.steps = 4;
  g.trainer.checkpoint_every = 0;
  g.val_batches = 1;
  return g;
}

TinyWorld make_world(const TempDir& dir) {
  TinyWorld w;
  make_images(96, w.x, w.y, 1);
  make_images(32, w.xt, w.yt, 2);
  vq::VQTrainConfig vc;
  vc.model = tiny_vq_config(32, 3);
  vc.batch_size = 16;
  vc.optim.lr = 3e-3;
  vc.trainer.steps = 6;
  vc.trainer.checkpoint_every = 0;
  w.vq_path = vq::train_vq(vc, w.x, w.xt, dir.file("vq")).model_path;
  w.model = vq::load_vq(w.vq_path);
  const std::string hash = vq::vq_tokenizer_hash(w.model);
  auto encode = [&](const at::Tensor& images, const at::Tensor& labels) {
    data::TokenSet s;
    s.codes = vq::encode_to_indices(w.model, images).to(torch::kInt);
    s.labels = labels;
    s.meta = {{"tokenizer_hash", hash}, {"codebook_size", 32}, {"grid_h", s.codes.size(1)},
              {"grid_w", s.codes.size(2)}, {"num_classes", 2}};
    return s;
  };
  w.train = encode(w.x, w.y);
  w.test = encode(w.xt, w.yt);
  auto cb = cluster::load_codebook(w.vq_path);
  cluster::ClusterConfig cc;
  cc.k = 4;
  cc.restarts = 2;
  w.clusters = cluster::cluster_codebook(cb.normalized, cc, cb.tokenizer_hash).map;
  w.clusters.save(dir.file("clusters.safetensors"));
  return w;
}

}  // namespace

TEST(Pipeline, TinyEndToEndCtfAndBaseline) {
  TempDir dir;
  auto w = make_world(dir);
  auto& train = w.train;
  auto& test = w.test;
  auto& clusters = w.clusters;
  auto& xt = w.xt;
  auto& yt = w.yt;
  ASSERT_EQ(train.codes.size(1), 4);  // 8x8 images, 2x down-sampling

  auto g = tiny_train_config();
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

  auto ctf = pipeline::load_generator({w.vq_path, s1.model_path, s2.model_path,
                                       dir.file("clusters.safetensors"), ""});
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

  auto baseline = pipeline::load_generator({w.vq_path, base.model_path, "", "", ""});
  ASSERT_EQ(baseline.mode, "baseline");
  auto rb = pipeline::generate(baseline, labels, gc, rng, false);
  EXPECT_EQ(rb.fine.sizes(), (std::vector<int64_t>{3, 4, 4}));
  EXPECT_GE(rb.fine.min().item<int64_t>(), 0);
  EXPECT_LT(rb.fine.max().item<int64_t>(), 32);

  // Mismatched files are refused: a baseline model cannot serve as CTF stage 1.
  EXPECT_THROW(pipeline::load_generator({w.vq_path, base.model_path, s2.model_path,
                                         dir.file("clusters.safetensors"), ""}),
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
  auto cli = run_cli({"eval", "--tokenizer", w.vq_path, "--model", s1.model_path, "--aux",
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
  cli = run_cli({"eval", "--tokenizer", w.vq_path, "--model", s1.model_path, "--num-samples", "12"});
  EXPECT_EQ(cli.exit_code, 2);
  EXPECT_NE(cli.err.find("--classifier or --inception"), std::string::npos) << cli.err;
}

TEST(Pipeline, SnapshotsAndStageTwoFreeDecoders) {
  TempDir dir;
  auto w = make_world(dir);
  data::save_token_dir(dir.file("tokens_train"), w.train);

  // Snapshots: the weights after steps 2 and 4 of a 4-step run; the last equals the final model.
  auto g = tiny_train_config();
  g.snapshot_steps = {2, 4};
  auto s1 = pipeline::train_generator(g, w.train, &w.test, &w.clusters, dir.file("stage1"));
  for (int64_t step : {2, 4}) {
    auto c = io::load_component(dir.file("stage1/snapshots/step" + std::to_string(step) + ".safetensors"), "gpt");
    EXPECT_EQ(c.meta.at("steps").get<int64_t>(), step);
    EXPECT_EQ(c.meta.at("stage"), "coarse");
    EXPECT_GT(c.meta.at("val_loss").get<double>(), 0.0);
  }
  auto last = io::load_component(dir.file("stage1/snapshots/step4.safetensors"), "gpt");
  auto fin = io::load_component(s1.model_path, "gpt");
  auto step2 = io::load_component(dir.file("stage1/snapshots/step2.safetensors"), "gpt");
  EXPECT_EQ(io::hash_tensors(last.file.tensors), io::hash_tensors(fin.file.tensors));
  EXPECT_NE(io::hash_tensors(step2.file.tensors), io::hash_tensors(fin.file.tensors));
  EXPECT_FALSE(fs::exists(dir.file("stage1/snapshots/step3.safetensors")));
  g.snapshot_steps = {5};
  EXPECT_THROW(g.validate(), UsageError);
  g.snapshot_steps = {3, 2};
  EXPECT_THROW(g.validate(), UsageError);

  // CTF with a cluster file and no stage-2 model: the stage-2-free decoders.
  auto ctf = pipeline::load_generator({w.vq_path, s1.model_path, "", dir.file("clusters.safetensors"),
                                       dir.file("tokens_train")});
  ASSERT_EQ(ctf.mode, "ctf");
  auto labels = torch::tensor({0, 1, 0, 1, 1}, torch::kLong);
  pipeline::GenerateConfig gc;
  auto coarse_ref = [&](const std::string& decoder, uint64_t seed) {
    gc.fine_decoder = decoder;
    auto rng = make_generator(seed);
    return pipeline::generate(ctf, labels, gc, rng, false);
  };
  // Every decoder keeps the fine token inside the coarse cluster stage 1 chose.
  const auto members = w.clusters.member_mask();  // [K, V]
  auto norm = w.model->normalized_codebook().to(torch::kCPU);
  auto counts = torch::bincount(w.train.codes.flatten().to(torch::kLong), {}, 32);
  for (const std::string d : {"uniform", "frequent", "centroid"}) {
    auto r = coarse_ref(d, 9);
    EXPECT_TRUE(torch::equal(w.clusters.to_coarse(r.fine), r.coarse)) << d;
    auto again = coarse_ref(d, 9);
    EXPECT_TRUE(torch::equal(r.fine, again.fine)) << d;  // same seed, same tokens
    auto f = r.fine.flatten(), c = r.coarse.flatten();
    for (int64_t i = 0; i < f.numel(); ++i) {
      const int64_t k = c[i].item<int64_t>(), v = f[i].item<int64_t>();
      auto in_k = torch::nonzero(members[k]).flatten();
      if (d == "frequent") {  // the most frequent member in the training tokens
        EXPECT_EQ(counts[v].item<int64_t>(), counts.index_select(0, in_k).max().item<int64_t>()) << i;
      } else if (d == "centroid") {  // the member nearest the centroid, by brute force
        auto dist = (norm.index_select(0, in_k) - w.clusters.centroids()[k]).pow(2).sum(1);
        EXPECT_EQ(v, in_k[dist.argmin()].item<int64_t>()) << i;
      }
    }
  }
  // The uniform decoder uses more than one member of a multi-member cluster across draws.
  auto ru = coarse_ref("uniform", 1);
  auto rv = coarse_ref("uniform", 2);
  EXPECT_FALSE(torch::equal(ru.fine, rv.fine) && torch::equal(ru.coarse, rv.coarse));
  // The learned decoder needs its model, the frequent one its counts.
  EXPECT_THROW(coarse_ref("aux", 1), UsageError);
  auto no_counts = pipeline::load_generator({w.vq_path, s1.model_path, "", dir.file("clusters.safetensors"), ""});
  gc.fine_decoder = "frequent";
  auto rng = make_generator(1);
  EXPECT_THROW(pipeline::generate(no_counts, labels, gc, rng, false), UsageError);
  gc.fine_decoder = "nearest";
  EXPECT_THROW(gc.validate(), UsageError);
  // The CLI takes the decoder by name; an unknown one is a usage error.
  auto cli = run_cli({"sample", "--tokenizer", w.vq_path, "--model", s1.model_path, "--clusters",
                           dir.file("clusters.safetensors"), "--fine-decoder", "centroid", "--n", "2",
                           "--out", dir.file("samples")});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  auto bad = run_cli({"sample", "--tokenizer", w.vq_path, "--model", s1.model_path, "--clusters",
                      dir.file("clusters.safetensors"), "--fine-decoder", "nearest", "--n", "2",
                      "--out", dir.file("samples2")});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("nearest"), std::string::npos) << bad.err;
}

}  // namespace ctfgen::test
