// Shared training machinery for every training command (tokenizer, stage 1, stage 2, baseline,
// classifier): step counting, periodic crash-safe checkpoints, exact resume, SIGINT/SIGTERM
// handling, non-finite loss/gradient skipping, progress and loss logging.
//
// Typical use:
//   Trainer trainer(tconfig, run_dir, "gpt", model_config_json);
//   trainer.add_module("model", *model);  trainer.add_optimizer("optim", opt);
//   trainer.resume_if_present();                 // restores modules, optimisers, RNGs, cursor
//   while (!trainer.done()) {
//     auto idx = trainer.cursor().next_batch(batch, n);   // data order survives resume
//     auto loss = ...forward...;
//     trainer.backward_and_step(opt, loss);      // skip on NaN/Inf, clip, lr schedule, update
//     trainer.end_step({{"loss", loss_value}});  // logs, checkpoints every N, honours signals
//   }
//   trainer.finish();                           // final checkpoint
#pragma once
#include <ATen/core/Generator.h>
#include <torch/nn/module.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/progress.h"
#include "train/optim.h"

namespace ctfgen::train {

struct TrainerConfig {
  int64_t steps = 1000;            // total optimisation steps
  int64_t checkpoint_every = 500;  // steps between periodic checkpoints; 0 = only at the end
  int64_t log_every = 50;          // steps between logged loss lines
  int max_nonfinite_in_a_row = 5;  // stop with an error after this many skipped steps in a row
  uint64_t seed = 0;

  nlohmann::json to_json() const;
  static TrainerConfig from_json(const nlohmann::json& j);
  void validate() const;
};

/// Epoch-based data order whose position is part of the checkpoint.
class DataCursor {
 public:
  DataCursor() = default;
  /// Indices of the next `batch` items of a dataset of size n (reshuffled every epoch from the
  /// seed); wraps into the next epoch when the current one runs out.
  at::Tensor next_batch(int64_t batch, int64_t n);
  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }
  void set(uint64_t seed, int64_t epoch, int64_t position) {
    seed_ = seed; epoch_ = epoch; position_ = position; cached_n_ = -1;
  }

 private:
  uint64_t seed_ = 0;
  int64_t epoch_ = 0, position_ = 0, cached_n_ = -1;
  at::Tensor perm_;
};

/// True once SIGINT or SIGTERM arrived (after install_stop_handlers()).
bool stop_requested();
void install_stop_handlers();

class Trainer {
 public:
  /// run_dir receives checkpoint.safetensors (resume point) and log.jsonl (one line per logged
  /// step). kind/config describe the model being trained and are stored in the checkpoint.
  Trainer(TrainerConfig config, std::string run_dir, std::string kind, nlohmann::json model_config);

  void add_module(const std::string& name, torch::nn::Module& module);
  void add_optimizer(const std::string& name, AdamW& opt);
  /// Extra state (for example a GAN start flag) saved as JSON in the checkpoint.
  nlohmann::json& extra_state() { return extra_; }

  /// Loads run_dir/checkpoint.safetensors when it exists; returns true if it resumed. Refuses a
  /// checkpoint whose kind or model config differs.
  bool resume_if_present();

  at::Generator& generator() { return gen_; }
  DataCursor& cursor() { return cursor_; }
  int64_t step() const { return step_; }
  bool done() const;

  /// Checks loss and gradients for NaN/Inf (skips the update and counts it; throws after
  /// max_nonfinite_in_a_row), clips, and steps `opt` at the scheduled learning rate.
  /// Call after loss.backward(). Returns false when the step was skipped.
  bool step_optimizer(AdamW& opt, double loss_value);

  /// Ends a step: increments the counter, logs `scalars`, writes periodic checkpoints and, if a
  /// stop signal arrived, a final checkpoint (then done() is true).
  void end_step(const std::map<std::string, double>& scalars);

  void save_checkpoint();
  /// Final checkpoint and progress line.
  void finish();
  double current_lr(const AdamW& opt) const;
  const std::string& run_dir() const { return run_dir_; }
  std::string checkpoint_path() const { return run_dir_ + "/checkpoint.safetensors"; }

 private:
  TrainerConfig config_;
  std::string run_dir_, kind_;
  nlohmann::json model_config_, extra_ = nlohmann::json::object();
  std::vector<std::pair<std::string, torch::nn::Module*>> modules_;
  std::vector<std::pair<std::string, AdamW*>> optimizers_;
  at::Generator gen_;
  DataCursor cursor_;
  int64_t step_ = 0;
  int nonfinite_run_ = 0;
  int64_t nonfinite_total_ = 0;
  bool stopped_ = false;
  std::unique_ptr<Progress> progress_;
};

}  // namespace ctfgen::train
