// Optimisers and learning-rate schedules. Our own AdamW/Adam (decoupled weight decay, PyTorch's
// update rule) so that the complete state is plain named tensors: it checkpoints into
// safetensors and restores bit-exactly on libtorch 1.13 and 2.x alike.
#pragma once
#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace ctfgen::train {

struct OptimConfig {
  std::string name = "adamw";     // "adamw" (decoupled decay) or "adam" (no decay)
  double lr = 1e-4;               // peak learning rate
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.05;     // AdamW only; applied to tensors with dim >= 2
  double grad_clip = 1.0;         // max global L2 norm; 0 = off
  int64_t warmup_steps = 0;       // linear warm-up from 0; 0 = off
  std::string schedule = "constant";  // "constant" or "cosine" (to min_lr_ratio * lr)
  double min_lr_ratio = 0.1;

  nlohmann::json to_json() const;
  static OptimConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("name", self.name);
    visit("lr", self.lr);
    visit("beta1", self.beta1);
    visit("beta2", self.beta2);
    visit("eps", self.eps);
    visit("weight_decay", self.weight_decay);
    visit("grad_clip", self.grad_clip);
    visit("warmup_steps", self.warmup_steps);
    visit("schedule", self.schedule);
    visit("min_lr_ratio", self.min_lr_ratio);
  }
  void validate() const;  // throws UsageError naming the field
};

/// Learning rate at `step` (0-based) of a run of `total_steps`.
double lr_at(const OptimConfig& config, int64_t step, int64_t total_steps);

class AdamW {
 public:
  /// named_params: the trainable tensors with stable names (module.named_parameters()).
  AdamW(std::vector<std::pair<std::string, at::Tensor>> named_params, OptimConfig config);
  void zero_grad();
  /// Global gradient L2 norm (before clipping); non-finite if any gradient is.
  double grad_norm() const;
  /// Clips to config.grad_clip (if > 0) and applies one update at learning rate `lr`.
  /// `grad_norm` may pass a norm already computed for this step (< 0: compute it).
  void step(double lr, double grad_norm = -1.0);
  /// State tensors named prefix + "<param>.exp_avg" / ".exp_avg_sq", plus prefix + "step".
  io::NamedTensors state(const std::string& prefix) const;
  /// Restores state written by state(); throws naming any missing or mis-shaped tensor.
  void load_state(const io::SafetensorsFile& file, const std::string& prefix);
  const OptimConfig& config() const { return config_; }
  /// The parameters this optimiser updates (those that required gradients), in slot order.
  std::vector<at::Tensor> parameters() const;
  int64_t steps_taken() const { return t_; }

 private:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq;
  };
  std::vector<Slot> slots_;
  OptimConfig config_;
  int64_t t_ = 0;
};

}  // namespace ctfgen::train
