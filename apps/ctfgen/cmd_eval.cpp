// `ctfgen eval`: N samples balanced over the classes -> FID, IS, precision, recall (k-NN
// manifolds) and sampling images/s, against cached statistics of a real split. The feature
// network is a classifier trained with `ctfgen train-classifier` (our datasets) or Inception-v3
// weights the user supplies (ImageNet-comparable numbers).
#include <torch/torch.h>

#include <cstdio>
#include <memory>

#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "eval/classifier.h"
#include "eval/inception.h"
#include "io/image_grid.h"
#include "io/image_io.h"
#include "pipeline/evaluate_generator.h"
#include "sampling_flags.h"

namespace ctfgen::cmd_eval {

struct EvalOptions {
  ctfgen::pipeline::GeneratorFiles files;
  ctfgen::pipeline::GenerateConfig sampling;
  ctfgen::pipeline::GeneratorEvalConfig eval;
  std::string classifier, inception, out;
  bool json = false;
};

std::unique_ptr<ctfgen::eval::FeatureNet> make_feature_net(const EvalOptions& o) {
  using namespace ctfgen;
  CTFGEN_CHECK_USAGE(o.classifier.empty() != o.inception.empty(),
                     "eval: give exactly one feature network: --classifier or --inception");
  if (!o.classifier.empty())
    return std::make_unique<eval::ClassifierNet>(eval::load_classifier(o.classifier));
  return std::make_unique<eval::InceptionNet>(eval::load_inception(o.inception));
}

std::string fmt(double v, const char* f = "%.4f") {
  if (!std::isfinite(v)) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

ctfgen::cli::Action setup_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  ctfgen::cli::add_generator_file_flags(app, o->files);
  ctfgen::cli::add_sampling_flags(app, o->sampling);
  app.add_option("--classifier", o->classifier, "Feature network: a classifier component (train-classifier)");
  app.add_option("--inception", o->inception,
                 "Feature network: Inception-v3 FID weights (ctfgen component or torchvision-named safetensors)");
  app.add_option("--num-samples", o->eval.num_samples, "Generated images (label of image i is i mod classes)")
      ->check(CLI::Range(int64_t{2}, int64_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--chunk", o->eval.chunk, "Images generated and featurised at a time (bounds memory)")
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000}))
      ->capture_default_str();
  app.add_option("--seed", o->eval.seed, "Sampling seed")->capture_default_str();
  app.add_option("--dataset", o->eval.reference.name, "Reference dataset: fashion-mnist | imagefolder | emoji")
      ->capture_default_str();
  app.add_option("--data-path", o->eval.reference.path, "Reference dataset location (default: the dataset's own)");
  app.add_flag("--skip-bad", o->eval.reference.skip_bad,
               "Skip unreadable or corrupt images (their count is reported) instead of failing");
  app.add_option("--split", o->eval.reference.split, "Reference split")
      ->check(CLI::IsMember({"train", "test"}))
      ->capture_default_str();
  app.add_option("--ref-limit", o->eval.reference.limit, "Use at most this many reference images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--cache-dir", o->eval.cache_dir, "Cache of reference statistics")->capture_default_str();
  app.add_option("--pr-k", o->eval.metrics.pr_k, "k of the k-NN manifolds (precision/recall)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}))
      ->capture_default_str();
  app.add_option("--is-splits", o->eval.metrics.is_splits, "Inception Score splits")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}))
      ->capture_default_str();
  app.add_option("--out", o->out, "Directory for eval.json and a grid of the first samples (optional)");
  app.add_flag("--json", o->json, "Print the result as JSON");
  return [o] {
    using namespace ctfgen;
    auto net = make_feature_net(*o);
    auto g = pipeline::load_generator(o->files);
    auto r = pipeline::evaluate_generator(g, *net, o->sampling, o->eval);
    nlohmann::json j = {{"mode", g.mode},
                        {"metrics", r.to_json()},
                        {"feature_net", {{"name", net->name()}, {"identity", net->identity()}}},
                        {"files", g.files},
                        {"eval", o->eval.to_json()},
                        {"sampling", o->sampling.to_json()},
                        {"threads", at::get_num_threads()},
                        {"ctfgen_version", CTFGEN_VERSION}};
    if (!o->out.empty()) {
      fs::ensure_dir(o->out);
      if (r.images.defined()) {
        io::GridOptions grid;
        grid.nrow = std::min<int64_t>(g.num_classes(), 10);
        io::write_png(o->out + "/samples.png", io::make_grid(r.images, grid));
      }
      fs::atomic_write_text(o->out + "/eval.json", j.dump(2) + "\n");
    }
    if (o->json) {
      cli::print_json(j.dump(2));
      return;
    }
    const auto& m = r.metrics;
    std::printf("mode       %s (%s features, %lld samples vs %lld real)\n", g.mode.c_str(),
                net->name().c_str(), static_cast<long long>(m.n_fake), static_cast<long long>(m.n_real));
    std::printf("FID        %s\n", fmt(m.fid).c_str());
    std::printf("IS         %s +- %s\n", fmt(m.is_mean).c_str(), fmt(m.is_std).c_str());
    std::printf("precision  %s\n", fmt(m.precision).c_str());
    std::printf("recall     %s\n", fmt(m.recall).c_str());
    std::printf("images/s   %s (sampling, %d threads)\n", fmt(r.images_per_s, "%.2f").c_str(),
                at::get_num_threads());
  };
}

CTFGEN_COMMAND("eval", "Sample N images and report FID, IS, precision, recall and images/s", setup_eval);

}  // namespace ctfgen::cmd_eval
