// Training of the generators on token directories: the CTF stage-1 coarse AR model, the plain
// LlamaGen baseline, and the CTF stage-2 auxiliary model. One loop serves all three; they differ
// in the model built and the loss (see GeneratorStage).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cluster/coarse_map.h"
#include "data/token_dir.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace ctfgen::pipeline {

enum class GeneratorStage { Coarse, Baseline, Aux };
std::string to_string(GeneratorStage s);
GeneratorStage parse_generator_stage(const std::string& s);  // "coarse" | "baseline" | "aux"

struct GeneratorTrainConfig {
  GeneratorStage stage = GeneratorStage::Coarse;
  std::string preset = "small";        // models::preset_names(); vocab, classes, block size come from the data
  nlohmann::json model_overrides = nlohmann::json::object();  // trunk fields to override, e.g. {"dim": 192}
  int64_t batch_size = 64;             // sequences per step
  train::OptimConfig optim;            // AdamW (0.9, 0.95), weight decay 0.05, clip 1.0
  train::TrainerConfig trainer;        // steps, checkpoint cadence, seed
  double ema_decay = 0.0;              // EMA of the weights used for sampling; 0 = off
  int64_t val_batches = 8;             // batches of the validation split per evaluation; 0 = none
  int64_t val_every = 0;               // steps between validation losses; 0 = only at the end
  double coarse_noise = 0.0;           // aux only: probability of replacing an input coarse label at random
  std::string amp = "off";             // mixed-precision forward: "off", "bf16" (cpu/cuda), "fp16" (cuda)

  nlohmann::json to_json() const;
  static GeneratorTrainConfig from_json(const nlohmann::json& j);
  void validate() const;
};

struct GeneratorTrainResult {
  std::string model_path;    // <run_dir>/model.safetensors
  double final_loss = 0;     // mean training loss over the last logged window
  double val_loss = -1;      // mean validation cross-entropy (nats per token); -1 if no val split
  double tokens_per_s = 0;   // training throughput of this invocation
  int64_t steps = 0;
  int64_t num_params = 0;
};

/// Trains (or resumes) in run_dir and writes run_dir/model.safetensors, a component file of kind
/// "gpt" (Coarse, Baseline) or "aux" whose meta records the stage, tokenizer hash and clusters
/// hash. `clusters` is required for Coarse and Aux and must belong to the tokens' tokenizer.
GeneratorTrainResult train_generator(const GeneratorTrainConfig& config,
                                     const data::TokenSet& train_set,
                                     const data::TokenSet* val_set,
                                     const cluster::CoarseMap* clusters,
                                     const std::string& run_dir);

}  // namespace ctfgen::pipeline
