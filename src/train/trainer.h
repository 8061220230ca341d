// Shared training machinery for every training command (tokenizer, stage 1, stage 2, baseline,
// classifier): step counting, periodic crash-safe checkpoints, exact resume, SIGINT/SIGTERM
// handling, non-finite loss/gradient skipping, progress and loss logging; data-parallel
// training across processes when given a DistContext (train/distributed.h).
//
// Typical use:
//   Trainer trainer(tconfig, run_dir, "gpt", model_config_json, dist);  // dist may be null
//   trainer.add_module("model", *model);  trainer.add_optimizer("optim", opt);
//   trainer.resume_if_present();                 // restores modules, optimisers, RNGs, cursor
//   while (!trainer.done()) {
//     auto idx = trainer.next_batch(batch, n);   // this rank's part; data order survives resume
//     auto loss = ...forward...;
//     trainer.backward_and_step(opt, loss);      // skip on NaN/Inf, clip, lr schedule, update
//     trainer.end_step({{"loss", loss_value}});  // logs, checkpoints every N, honours signals
//   }
//   trainer.finish();                           // final checkpoint
//
// Data-parallel runs (world size W > 1): every rank runs the same loop. next_batch() gives rank r
// the r-th contiguous slice of a global batch of W × batch items drawn from the shared data
// order, so the union over ranks is the single-process batch of W × batch; step_optimizer()
// averages the gradients over the ranks first (all ranks then take the same skip, clip and
// update decisions); end_step() averages the logged scalars and stops every rank when any one of
// them got a stop signal. Only rank 0 writes the checkpoint, log.jsonl and progress; the run
// directory must be readable by every rank (a shared filesystem across machines) for resume.
// A checkpoint records W and resumes only with the same W. The explicit generator() advances
// identically on every rank (draw randomness for the global batch and shard() it); libtorch's
// global generator (dropout) is seeded per rank and saved per rank.
#pragma once
#include <ATen/core/Generator.h>
#include <torch/nn/module.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/progress.h"
#include "train/distributed.h"
#include "train/optim.h"

namespace ctfgen::train {

struct TrainerConfig {
  int64_t steps = 1000;            // total optimisation steps
  int64_t checkpoint_every = 500;  // steps between periodic checkpoints; 0 = only at the end
  int64_t log_every = 50;          // steps between logged loss lines
  int max_nonfinite_in_a_row = 5;  // stop with an error after this many skipped steps in a row
  uint64_t seed = 0;
  // A resume with another `steps` than the checkpoint's is refused unless this is set: the
  // learning-rate schedule (warm-up, cosine) is a function of the total, so a cosine run then
  // follows the new length's curve from the resumed step on (a jump in the rate); a constant
  // schedule is unaffected. Not part of what a checkpoint must agree on.
  bool allow_steps_change = false;

  nlohmann::json to_json() const;
  static TrainerConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("steps", self.steps);
    visit("checkpoint_every", self.checkpoint_every);
    visit("log_every", self.log_every);
    visit("max_nonfinite_in_a_row", self.max_nonfinite_in_a_row);
    visit("seed", self.seed);
    visit("allow_steps_change", self.allow_steps_change);
  }
  void validate() const;
};

/// Epoch-based data order whose position is part of the checkpoint.
class DataCursor {
 public:
  DataCursor() = default;
  /// Indices [batch] of the next `batch` items of a dataset of size n (reshuffled every epoch
  /// from the seed); wraps into the next epoch when the current one runs out.
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
  /// `dist` (not owned; must outlive the trainer) makes this one rank of a data-parallel run;
  /// null = a single process.
  Trainer(TrainerConfig config, std::string run_dir, std::string kind, nlohmann::json model_config,
          DistContext* dist = nullptr);

  void add_module(const std::string& name, torch::nn::Module& module);
  void add_optimizer(const std::string& name, AdamW& opt);
  /// Extra state (for example a GAN start flag) saved as JSON in the checkpoint.
  nlohmann::json& extra_state() { return extra_; }

  /// Loads run_dir/checkpoint.safetensors when it exists; returns true if it resumed. Refuses a
  /// checkpoint whose kind or model config differs, or one written by a run with another world
  /// size. Call it once, after add_module()/add_optimizer() and before the first step: in a
  /// data-parallel run it also broadcasts every module's parameters and buffers from rank 0, so
  /// all ranks start identical (a collective).
  bool resume_if_present();

  at::Generator& generator() { return gen_; }
  DataCursor& cursor() { return cursor_; }
  DistContext& dist() { return *dist_; }
  /// This rank's indices [batch] of the next global batch of world_size × batch items of a
  /// dataset of size n (single process: cursor().next_batch(batch, n)). Throws when n is smaller
  /// than the global batch.
  at::Tensor next_batch(int64_t batch, int64_t n);
  /// This rank's rows of a tensor [world_size × b, ...] made for the global batch -> [b, ...].
  at::Tensor shard(const at::Tensor& global) const { return dist_->shard(global); }
  int64_t step() const { return step_; }
  bool done() const;

  /// Checks loss and gradients for NaN/Inf (skips the update and counts it; throws after
  /// max_nonfinite_in_a_row), clips, and steps `opt` at the scheduled learning rate.
  /// Call after loss.backward(). Returns false when the step was skipped. Data-parallel: first
  /// averages the gradients of opt's parameters and `loss_value` over the ranks (a collective),
  /// so the decisions agree everywhere.
  bool step_optimizer(AdamW& opt, double loss_value);

  /// Ends a step: increments the counter, logs `scalars`, writes periodic checkpoints and, if a
  /// stop signal arrived, a final checkpoint (then done() is true). Data-parallel: a collective;
  /// `scalars` (the same keys on every rank) are averaged over the ranks before logging, and a
  /// stop signal on any rank stops all of them at this step; module buffers (BatchNorm
  /// statistics) are overwritten with rank 0's. Returns the scalars as logged
  /// (averaged over the ranks; `scalars` itself for a single process). The log line is written
  /// every config.log_every steps, at the last step, and whenever `always_log` is true (for
  /// rare figures such as a validation loss, which must not fall between log_every steps).
  std::map<std::string, double> end_step(const std::map<std::string, double>& scalars,
                                         bool always_log = false);

  /// Writes the checkpoint (rank 0 only; a collective in data-parallel runs, which also
  /// collects every rank's dropout generator state).
  void save_checkpoint();
  /// Final checkpoint and progress line.
  void finish();
  double current_lr(const AdamW& opt) const;
  const std::string& run_dir() const { return run_dir_; }
  std::string checkpoint_path() const { return run_dir_ + "/checkpoint.safetensors"; }

 private:
  void load_checkpoint(const std::string& path);
  // global_states: [world_size, S] every rank's global-generator state.
  void write_checkpoint(const at::Tensor& generator_state, const at::Tensor& global_states);
  TrainerConfig config_;
  std::string run_dir_, kind_;
  nlohmann::json model_config_, extra_ = nlohmann::json::object();
  std::vector<std::pair<std::string, torch::nn::Module*>> modules_;
  std::vector<std::pair<std::string, AdamW*>> optimizers_;
  at::Generator gen_;
  DataCursor cursor_;
  DistContext single_;  // used when no DistContext is given
  DistContext* dist_;
  int64_t step_ = 0;
  int nonfinite_run_ = 0;
  int64_t nonfinite_total_ = 0;
  bool stopped_ = false;
  bool started_ = false;  // resume_if_present() ran (parameters synchronised)
  std::unique_ptr<Progress> progress_;
};

}  // namespace ctfgen::train
