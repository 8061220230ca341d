#include "pipeline/demo.h"

#include <torch/torch.h>

#include <chrono>

#include "cluster/clustering.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/dataset.h"
#include "data/token_dir.h"
#include "io/image_grid.h"
#include "io/image_io.h"
#include "pipeline/generate.h"
#include "pipeline/train_generator.h"
#include "vq/vq_train.h"

namespace ctfgen::pipeline {
namespace {

// Encodes a split to a token directory unless one for this tokenizer is already there.
void ensure_tokens(vq::VQModel& model, const std::string& tok_hash, const data::Dataset& ds,
                   const std::string& split, const std::string& dir, nlohmann::json& summary) {
  if (fs::exists(dir + "/meta.json")) {
    auto existing = data::load_token_dir(dir);
    if (existing.meta.value("tokenizer_hash", std::string()) == tok_hash) {
      log::info("demo: reusing tokens in ", dir);
      summary["tokens_" + split] = {{"path", dir}, {"reused", true}};
      return;
    }
    log::warn("demo: ", dir, " holds tokens of another tokenizer; re-encoding");
  }
  auto t0 = std::chrono::steady_clock::now();
  model->eval();
  data::TokenSet set;
  set.codes = vq::encode_to_indices(model, ds.images).to(torch::kInt);
  set.labels = ds.labels;
  set.meta = {{"tokenizer_hash", tok_hash},
              {"codebook_size", model->config.codebook_size},
              {"grid_h", set.codes.size(1)},
              {"grid_w", set.codes.size(2)},
              {"num_classes", static_cast<int64_t>(ds.class_names.size())},
              {"class_names", ds.class_names},
              {"dataset", ds.name},
              {"split", split},
              {"flipped", false}};
  data::save_token_dir(dir, set);
  summary["tokens_" + split] = {{"path", dir}, {"reused", false}, {"seconds", seconds_since(t0)}};
  log::info("demo: encoded ", ds.size(), " ", split, " images to ", dir);
}

nlohmann::json train_stage(GeneratorStage stage, const DemoConfig& c, int64_t steps,
                           const data::TokenSet& train, const data::TokenSet& val,
                           const cluster::CoarseMap& clusters, const std::string& dir) {
  std::string model = dir + "/model.safetensors";
  if (fs::exists(model)) {
    log::info("demo: reusing ", model);
    return {{"path", model}, {"reused", true}};
  }
  GeneratorTrainConfig g;
  g.stage = stage;
  g.preset = c.gpt_preset;
  g.batch_size = 64;
  g.optim.lr = 1e-3;
  g.optim.warmup_steps = std::min<int64_t>(100, steps / 10);
  g.optim.schedule = "cosine";
  g.trainer.steps = steps;
  g.trainer.checkpoint_every = std::max<int64_t>(100, steps / 5);
  g.trainer.seed = c.seed;
  g.val_batches = 8;
  auto t0 = std::chrono::steady_clock::now();
  auto r = train_generator(g, train, &val, stage == GeneratorStage::Baseline ? nullptr : &clusters, dir);
  return {{"path", r.model_path}, {"reused", false},  {"steps", r.steps},
          {"num_params", r.num_params}, {"final_loss", r.final_loss}, {"val_loss", r.val_loss},
          {"tokens_per_s", r.tokens_per_s}, {"seconds", seconds_since(t0)}};
}

}  // namespace

DemoConfig DemoConfig::resolved() const {
  DemoConfig c = *this;
  CTFGEN_CHECK_USAGE(preset == "quick" || preset == "full", "demo: preset must be 'quick' or 'full', got '",
                     preset, "'");
  bool quick = preset == "quick";
  // full: the same trunk trained five times longer, with a longer-trained tokenizer (about 40
  // minutes on 2 cores; docs/demo.md has both presets' measured cost and quality).
  if (!c.vq_steps) c.vq_steps = quick ? 1500 : 4000;
  if (!c.ar_steps) c.ar_steps = quick ? 600 : 3000;
  if (!c.aux_steps) c.aux_steps = quick ? 400 : 2000;
  if (!c.clusters) c.clusters = 128;
  if (c.gpt_preset.empty()) c.gpt_preset = "small";
  CTFGEN_CHECK_USAGE(c.samples_per_class >= 1 && c.samples_per_class <= 64,
                     "demo: samples per class must be in [1, 64], got ", c.samples_per_class);
  return c;
}

nlohmann::json DemoConfig::to_json() const { return fields_to_json(*this); }

DemoConfig DemoConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<DemoConfig>(j, "demo config");
}

nlohmann::json run_demo(const DemoConfig& config) {
  const DemoConfig c = config.resolved();
  auto start = std::chrono::steady_clock::now();
  const std::string& w = c.work_dir;
  fs::ensure_dir(w);
  nlohmann::json summary = {{"config", c.to_json()}};
  log::info("demo: ", c.preset, " preset, work directory ", w);

  data::DatasetConfig dc;
  dc.name = c.dataset;
  dc.path = c.dataset_path;
  dc.alpha_background = c.alpha_background;
  dc.split = "train";
  auto train_ds = data::load_dataset(dc);
  dc.split = "test";
  auto test_ds = data::load_dataset(dc);
  log::info("demo: ", train_ds.size(), " training and ", test_ds.size(), " test images of ", train_ds.name);

  // 1. Tokenizer.
  std::string vq_path = w + "/vq/vq.safetensors";
  if (fs::exists(vq_path)) {
    log::info("demo: reusing tokenizer ", vq_path);
    summary["tokenizer"] = {{"path", vq_path}, {"reused", true}};
  } else {
    vq::VQTrainConfig vc;
    vc.model = vq::VQConfig::preset(c.dataset == "fashion-mnist" ? "fmnist" : "emoji32");
    vc.batch_size = 32;
    vc.optim.name = "adam";
    vc.optim.lr = 2e-3;
    vc.optim.warmup_steps = 100;
    vc.optim.schedule = "cosine";
    vc.trainer.steps = c.vq_steps;
    vc.trainer.checkpoint_every = std::max<int64_t>(100, c.vq_steps / 5);
    vc.trainer.seed = c.seed;
    vc.sample_every = std::max<int64_t>(100, c.vq_steps / 4);
    auto r = vq::train_vq(vc, train_ds.images, test_ds.images, w + "/vq",
                          {{"dataset", train_ds.name}});
    summary["tokenizer"] = r.to_json();
    summary["tokenizer"]["reused"] = false;
  }
  auto vq_model = vq::load_vq(vq_path);
  const std::string tok_hash = vq::vq_tokenizer_hash(vq_model);

  // 2. Token files.
  ensure_tokens(vq_model, tok_hash, train_ds, "train", w + "/tokens_train", summary);
  ensure_tokens(vq_model, tok_hash, test_ds, "test", w + "/tokens_test", summary);
  auto train_tokens = data::load_token_dir(w + "/tokens_train");
  auto test_tokens = data::load_token_dir(w + "/tokens_test");

  // 3. Coarse labels.
  std::string cl_path = w + "/clusters.safetensors";
  bool reuse_clusters = false;
  if (fs::exists(cl_path)) {
    auto existing = cluster::CoarseMap::load(cl_path);
    reuse_clusters = existing.tokenizer_hash() == tok_hash && existing.num_clusters() == c.clusters;
  }
  if (!reuse_clusters) {
    cluster::ClusterConfig cc;
    cc.k = c.clusters;
    cc.seed = c.seed;
    cc.restarts = 3;
    auto cb = cluster::load_codebook(vq_path);
    auto out = cluster::cluster_codebook(cb.normalized, cc, cb.tokenizer_hash);
    out.map.save(cl_path);
    summary["clusters"] = out.map.summary_json();
    summary["clusters"]["reused"] = false;
  } else {
    log::info("demo: reusing clusters ", cl_path);
    summary["clusters"] = {{"path", cl_path}, {"reused", true}};
  }
  auto clusters = cluster::CoarseMap::load(cl_path);

  // 4. Generators.
  summary["stage1"] = train_stage(GeneratorStage::Coarse, c, c.ar_steps, train_tokens, test_tokens,
                                  clusters, w + "/stage1");
  summary["stage2"] = train_stage(GeneratorStage::Aux, c, c.aux_steps, train_tokens, test_tokens,
                                  clusters, w + "/stage2");
  if (c.baseline)
    summary["baseline"] = train_stage(GeneratorStage::Baseline, c, c.ar_steps, train_tokens,
                                      test_tokens, clusters, w + "/baseline");

  // 5. Samples: one row per class.
  std::vector<int64_t> labels;
  const int64_t classes = static_cast<int64_t>(train_ds.class_names.size());
  for (int64_t k = 0; k < classes; ++k)
    for (int64_t i = 0; i < c.samples_per_class; ++i) labels.push_back(k);
  auto y = torch::tensor(labels, torch::kLong);
  io::GridOptions grid;
  grid.nrow = c.samples_per_class;
  grid.row_labels = train_ds.class_names;
  auto sample = [&](const GeneratorFiles& files, const std::string& name) {
    auto g = load_generator(files);
    GenerateConfig gc;
    gc.coarse_preview = g.mode == "ctf";
    gc.batch_size = 40;
    if (g.mode == "baseline") gc.stage1 = sampling::SamplingConfig::llamagen_fid(2.0);
    auto rng = make_generator(c.seed);
    auto r = generate(g, y, gc, rng);
    std::string png = w + "/samples_" + name + ".png";
    io::write_png(png, io::make_grid(r.images, grid));
    nlohmann::json s = {{"grid", png}, {"images_per_s", y.size(0) / r.seconds_total()},
                        {"sampling", gc.to_json()}};
    if (r.preview.defined()) {
      std::string pv = w + "/samples_" + name + "_coarse_preview.png";
      io::write_png(pv, io::make_grid(r.preview, grid));
      s["coarse_preview"] = pv;
    }
    log::info("demo: wrote ", png);
    return s;
  };
  summary["samples_ctf"] = sample({vq_path, w + "/stage1/model.safetensors",
                                   w + "/stage2/model.safetensors", cl_path, ""}, "ctf");
  if (c.baseline)
    summary["samples_baseline"] = sample({vq_path, w + "/baseline/model.safetensors", "", "", ""}, "baseline");
  summary["seconds"] = seconds_since(start);
  fs::atomic_write_text(w + "/summary.json", summary.dump(2) + "\n");
  return summary;
}

}  // namespace ctfgen::pipeline
