#include "pipeline/evaluate_generator.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "eval/fid_stats.h"

namespace ctfgen::pipeline {

nlohmann::json GeneratorEvalConfig::to_json() const { return fields_to_json(*this); }

GeneratorEvalConfig GeneratorEvalConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<GeneratorEvalConfig>(j, "generator eval config");
}

void GeneratorEvalConfig::validate() const {
  CTFGEN_CHECK_USAGE(num_samples >= 2 && num_samples <= 10'000'000,
                     "eval: num_samples must be in [2, 10000000], got ", num_samples);
  CTFGEN_CHECK_USAGE(chunk >= 1 && chunk <= 1'000'000, "eval: chunk must be in [1, 1000000], got ",
                     chunk);
  CTFGEN_CHECK_USAGE(keep_images >= 0, "eval: keep_images must be >= 0, got ", keep_images);
  CTFGEN_CHECK_USAGE(!cache_dir.empty(), "eval: cache_dir must not be empty");
  reference.validate();
  metrics.validate();
}

nlohmann::json GeneratorEvalResult::to_json() const {
  auto j = metrics.to_json();
  j["seconds_sampling"] = seconds_sampling;
  j["images_per_s"] = images_per_s;
  return j;
}

namespace {

int64_t generated_image_size(const Generator& g) {
  return g.grid_h * g.vq->config.downsample_factor();
}

}  // namespace

eval::ReferenceStats generator_reference_stats(const Generator& g, eval::FeatureNet& net,
                                               const GeneratorEvalConfig& config) {
  data::DatasetConfig d = config.reference;
  const int64_t size = generated_image_size(g);
  if (d.image_size == 0) d.image_size = size;
  CTFGEN_CHECK_USAGE(d.image_size == size, "eval: reference image size ", d.image_size,
                     " differs from the generated image size ", size);
  eval::StatsKey key;
  key.dataset = d.name + "@" + std::to_string(d.image_size) + (d.path.empty() ? "" : ":" + d.path) +
                (d.limit > 0 ? "#" + std::to_string(d.limit) : "");
  key.split = d.split;
  key.net = net.identity();
  key.net_name = net.name();
  const int64_t channels = g.vq->config.in_channels;
  return eval::cached_reference_stats(config.cache_dir, key, [&] {
    auto real = data::load_dataset(d);
    CTFGEN_CHECK(real.images.size(1) == channels, "eval: the reference dataset '", d.name,
                 "' has ", real.images.size(1), " channels, the generator makes ", channels);
    log::info("eval: reference statistics of ", d.name, " ", d.split, " (", real.size(),
              " images) under ", net.name());
    return eval::extract_features(net, real.images, config.metrics.batch).features;
  });
}

GeneratorEvalResult evaluate_generator(Generator& g, eval::FeatureNet& net,
                                       const GenerateConfig& sampling,
                                       const GeneratorEvalConfig& config) {
  config.validate();
  sampling.validate();
  auto ref = generator_reference_stats(g, net, config);

  const int64_t n = config.num_samples, classes = g.num_classes();
  auto all_labels = torch::arange(n, torch::kLong).remainder(classes);
  auto rng = make_generator(config.seed);
  GeneratorEvalResult result;
  std::vector<at::Tensor> feats, probs, kept;
  Progress progress("eval: sampling + features", n, "img");
  for (int64_t i = 0; i < n; i += config.chunk) {
    const int64_t j = std::min(n, i + config.chunk);
    auto labels = all_labels.slice(0, i, j);
    auto r = generate(g, labels, sampling, rng, /*show_progress=*/false);
    result.seconds_sampling += r.seconds_total();
    auto out = eval::extract_features(net, r.images, config.metrics.batch, /*show_progress=*/false);
    feats.push_back(out.features);
    probs.push_back(out.probs);
    if (i < config.keep_images) kept.push_back(r.images.slice(0, 0, config.keep_images - i));
    progress.advance(j - i);
  }
  progress.finish();
  eval::FeatureOutput fake{torch::cat(feats, 0), torch::cat(probs, 0)};
  result.metrics = eval::evaluate_features(fake, ref, config.metrics);
  result.metrics.net = net.name();
  result.images_per_s = static_cast<double>(n) / result.seconds_sampling;
  if (!kept.empty()) {
    result.images = torch::cat(kept, 0);
    result.labels = all_labels.slice(0, 0, result.images.size(0));
  }
  return result;
}

}  // namespace ctfgen::pipeline
