// `ctfgen eval` and the experiment runner: samples N images balanced over the classes from a
// Generator, streams them through a FeatureNet in chunks (memory stays O(chunk) in images, so
// ImageNet-sized runs work), and reports FID, IS, precision, recall and sampling speed against
// cached reference statistics of a real split.
//
//   auto g = pipeline::load_generator(files);
//   eval::ClassifierNet net(eval::load_classifier("clf.safetensors"));
//   auto r = pipeline::evaluate_generator(g, net, gen_config, eval_config);   // r.metrics.fid ...
#pragma once
#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>

#include "data/dataset.h"
#include "eval/evaluate.h"
#include "eval/feature_net.h"
#include "pipeline/generate.h"

namespace ctfgen::pipeline {

struct GeneratorEvalConfig {
  int64_t num_samples = 1000;  // generated images; label of image i is i mod num_classes
  int64_t chunk = 512;         // images generated and featurised at a time
  uint64_t seed = 0;           // sampling seed (one generator for the whole run)
  data::DatasetConfig reference = [] {  // real split for the reference statistics
    data::DatasetConfig d;
    d.split = "test";
    return d;
  }();
  std::string cache_dir = "runs/fid-stats";  // reference statistics cache
  eval::EvalConfig metrics;
  int64_t keep_images = 100;  // first images returned for a preview grid

  nlohmann::json to_json() const;
  static GeneratorEvalConfig from_json(const nlohmann::json& j);  // does not validate
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("num_samples", self.num_samples);
    visit("chunk", self.chunk);
    visit("seed", self.seed);
    visit("reference", self.reference);
    visit("cache_dir", self.cache_dir);
    visit("metrics", self.metrics);
    visit("keep_images", self.keep_images);
  }
  void validate() const;
};

struct GeneratorEvalResult {
  eval::EvalResult metrics;
  double seconds_sampling = 0;  // stage 1 + stage 2 + decode, summed over chunks
  double images_per_s = 0;      // num_samples / seconds_sampling
  at::Tensor images;            // first keep_images samples [n, C, H, W] in [-1, 1]
  at::Tensor labels;            // their labels [n]
  nlohmann::json to_json() const;
};

/// Reference statistics of config.reference under `net`, from the cache when present. The real
/// images are loaded at the generator's image size (config.reference.image_size = 0 means that
/// size) and their channel count must match the generator's.
eval::ReferenceStats generator_reference_stats(const Generator& g, eval::FeatureNet& net,
                                               const GeneratorEvalConfig& config);

GeneratorEvalResult evaluate_generator(Generator& g, eval::FeatureNet& net,
                                       const GenerateConfig& sampling,
                                       const GeneratorEvalConfig& config);

}  // namespace ctfgen::pipeline
