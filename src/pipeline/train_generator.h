// Training of the generators on token directories: the CTF stage-1 coarse AR model, the plain
// LlamaGen baseline, and the CTF stage-2 auxiliary model. One loop serves all three; they differ
// in the model built and the loss (see GeneratorStage).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cluster/coarse_map.h"
#include "data/token_dir.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace ctfgen::pipeline {

enum class GeneratorStage { Coarse, Baseline, Aux };
std::string to_string(GeneratorStage s);
GeneratorStage parse_generator_stage(const std::string& s);  // "coarse" | "baseline" | "aux"
// JSON as the stage's name (nlohmann finds these by argument-dependent lookup); a bad name
// throws UsageError naming it.
void to_json(nlohmann::json& j, GeneratorStage s);
void from_json(const nlohmann::json& j, GeneratorStage& s);

struct GeneratorTrainConfig {
  GeneratorStage stage = GeneratorStage::Coarse;
  std::string preset = "small";        // models::preset_names(); vocab, classes, block size come from the data
  nlohmann::json model_overrides = nlohmann::json::object();  // trunk fields to override, e.g. {"dim": 192}
  int64_t batch_size = 64;             // sequences per step and process (global batch: world size x this)
  train::OptimConfig optim;            // AdamW (0.9, 0.95), weight decay 0.05, clip 1.0
  train::TrainerConfig trainer;        // steps, checkpoint cadence, seed
  double ema_decay = 0.0;              // EMA of the weights used for sampling; 0 = off
  int64_t val_batches = 8;             // batches of the validation split per evaluation; 0 = none
  int64_t val_every = 0;               // steps between validation losses; 0 = only at the end
  double coarse_noise = 0.0;           // aux only: probability of replacing an input coarse label at random
  std::string amp = "off";             // mixed-precision forward: "off", "bf16" (cpu/cuda); "fp16" refused
  // Steps after which the sampling weights are also written to
  // <run_dir>/snapshots/step<N>.safetensors (the same component as model.safetensors, meta
  // "steps" = N, with the validation loss then): one run gives a convergence curve. Increasing,
  // each in [1, steps]; a snapshot already on disk is not rewritten on resume.
  std::vector<int64_t> snapshot_steps;

  /// The JSON fields, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("stage", self.stage);
    visit("preset", self.preset);
    visit("model_overrides", self.model_overrides);
    visit("batch_size", self.batch_size);
    visit("optim", self.optim);
    visit("trainer", self.trainer);
    visit("ema_decay", self.ema_decay);
    visit("val_batches", self.val_batches);
    visit("val_every", self.val_every);
    visit("coarse_noise", self.coarse_noise);
    visit("amp", self.amp);
    visit("snapshot_steps", self.snapshot_steps);
  }
  nlohmann::json to_json() const;
  static GeneratorTrainConfig from_json(const nlohmann::json& j);
  void validate() const;
};

struct GeneratorTrainResult {
  std::string model_path;    // <run_dir>/model.safetensors
  double final_loss = 0;     // mean training loss over the last logged window
  double val_loss = -1;      // mean validation cross-entropy (nats per token); -1 if no val split
  double tokens_per_s = 0;   // training throughput of this invocation (all ranks together)
  int64_t steps = 0;
  int64_t num_params = 0;
};

/// Trains (or resumes) in run_dir and writes run_dir/model.safetensors, a component file of kind
/// "gpt" (Coarse, Baseline) or "aux" whose meta records the stage, tokenizer hash and clusters
/// hash. `clusters` is required for Coarse and Aux and must belong to the tokens' tokenizer.
/// `dist` (optional, not owned) makes this call one rank of a data-parallel run: every rank
/// passes the same arguments, trains on its slice of each global batch of world size x
/// batch_size sequences, and only rank 0 writes files; the result is the same on every rank.
GeneratorTrainResult train_generator(const GeneratorTrainConfig& config,
                                     const data::TokenSet& train_set,
                                     const data::TokenSet* val_set,
                                     const cluster::CoarseMap* clusters,
                                     const std::string& run_dir,
                                     train::DistContext* dist = nullptr);

}  // namespace ctfgen::pipeline
