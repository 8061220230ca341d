// The main job (`ctfgen demo`): Fashion-MNIST -> VQ tokenizer -> token files -> k-means coarse
// labels -> CTF stage 1 + stage 2 and the LlamaGen baseline -> a sample grid per class for both.
// Every stage writes into the work directory and is reused (or resumed) by a later run.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace ctfgen::pipeline {

struct DemoConfig {
  std::string preset = "quick";   // "quick" (about 10 minutes on 2 cores) or "full" (docs/demo.md)
  std::string work_dir = "runs/demo";
  std::string dataset = "fashion-mnist";
  std::string dataset_path;       // "" = the dataset's default location
  std::string alpha_background = "white";  // data::DatasetConfig::alpha_background
  int64_t vq_steps = 0;           // 0 = the preset's value (likewise below)
  int64_t ar_steps = 0;           // stage 1 and baseline
  int64_t aux_steps = 0;
  int64_t clusters = 0;           // K
  std::string gpt_preset;         // models::preset_names()
  bool baseline = true;           // also train and sample the LlamaGen baseline
  int64_t samples_per_class = 8;
  uint64_t seed = 0;

  /// Fills zero/empty fields from the preset; throws UsageError for an unknown preset.
  DemoConfig resolved() const;
  nlohmann::json to_json() const;
  static DemoConfig from_json(const nlohmann::json& j);  // does not resolve
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("preset", self.preset);
    visit("work_dir", self.work_dir);
    visit("dataset", self.dataset);
    visit("dataset_path", self.dataset_path);
    visit("alpha_background", self.alpha_background);
    visit("vq_steps", self.vq_steps);
    visit("ar_steps", self.ar_steps);
    visit("aux_steps", self.aux_steps);
    visit("clusters", self.clusters);
    visit("gpt_preset", self.gpt_preset);
    visit("baseline", self.baseline);
    visit("samples_per_class", self.samples_per_class);
    visit("seed", self.seed);
  }
};

/// Runs (or resumes) every stage and returns a summary: paths, metrics, timings.
nlohmann::json run_demo(const DemoConfig& config);

}  // namespace ctfgen::pipeline
