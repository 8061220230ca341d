#include "train/optim.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "core/json_config.h"
#include "core/shape.h"

namespace ctfgen::train {

nlohmann::json OptimConfig::to_json() const { return fields_to_json(*this); }

OptimConfig OptimConfig::from_json(const nlohmann::json& j) {
  auto c = fields_from_json<OptimConfig>(j, "optimizer config");
  c.validate();
  return c;
}

void OptimConfig::validate() const {
  CTFGEN_CHECK_USAGE(name == "adamw" || name == "adam", "optimizer: name must be 'adamw' or 'adam', got '",
                     name, "'");
  CTFGEN_CHECK_USAGE(lr > 0 && lr < 10, "optimizer: lr must be in (0, 10), got ", lr);
  CTFGEN_CHECK_USAGE(beta1 >= 0 && beta1 < 1, "optimizer: beta1 must be in [0, 1), got ", beta1);
  CTFGEN_CHECK_USAGE(beta2 >= 0 && beta2 < 1, "optimizer: beta2 must be in [0, 1), got ", beta2);
  CTFGEN_CHECK_USAGE(eps > 0, "optimizer: eps must be > 0, got ", eps);
  CTFGEN_CHECK_USAGE(weight_decay >= 0 && weight_decay < 1,
                     "optimizer: weight_decay must be in [0, 1), got ", weight_decay);
  CTFGEN_CHECK_USAGE(grad_clip >= 0, "optimizer: grad_clip must be >= 0 (0 = off), got ", grad_clip);
  CTFGEN_CHECK_USAGE(warmup_steps >= 0, "optimizer: warmup_steps must be >= 0, got ", warmup_steps);
  CTFGEN_CHECK_USAGE(schedule == "constant" || schedule == "cosine",
                     "optimizer: schedule must be 'constant' or 'cosine', got '", schedule, "'");
  CTFGEN_CHECK_USAGE(min_lr_ratio >= 0 && min_lr_ratio <= 1,
                     "optimizer: min_lr_ratio must be in [0, 1], got ", min_lr_ratio);
}

double lr_at(const OptimConfig& c, int64_t step, int64_t total_steps) {
  if (c.warmup_steps > 0 && step < c.warmup_steps)
    return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  if (c.schedule == "cosine") {
    double span = std::max<int64_t>(1, total_steps - c.warmup_steps);
    double progress = std::min(1.0, static_cast<double>(step - c.warmup_steps) / span);
    return c.lr * (c.min_lr_ratio + (1.0 - c.min_lr_ratio) * 0.5 * (1.0 + std::cos(M_PI * progress)));
  }
  return c.lr;
}

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> named_params, OptimConfig config)
    : config_(std::move(config)) {
  config_.validate();
  for (auto& [name, p] : named_params) {
    if (!p.requires_grad()) continue;
    slots_.push_back({name, p, torch::zeros_like(p, torch::MemoryFormat::Contiguous),
                      torch::zeros_like(p, torch::MemoryFormat::Contiguous)});
  }
}

std::vector<at::Tensor> AdamW::parameters() const {
  std::vector<at::Tensor> out;
  out.reserve(slots_.size());
  for (const auto& s : slots_) out.push_back(s.param);
  return out;
}

void AdamW::zero_grad() {
  for (auto& s : slots_)
    if (s.param.grad().defined()) s.param.mutable_grad().zero_();
}

double AdamW::grad_norm() const {
  // Summed on the parameters' device and read once: one device sync per step, not one per tensor.
  at::Tensor sq;
  for (const auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    auto part = g.to(torch::kDouble).pow(2).sum();
    sq = sq.defined() ? sq + part : part;
  }
  return sq.defined() ? std::sqrt(sq.item<double>()) : 0.0;
}

void AdamW::step(double lr, double norm) {
  torch::NoGradGuard no_grad;
  if (config_.grad_clip > 0) {
    if (norm < 0) norm = grad_norm();
    if (norm > config_.grad_clip) {
      double scale = config_.grad_clip / (norm + 1e-6);
      for (auto& s : slots_)
        if (s.param.grad().defined()) s.param.mutable_grad().mul_(scale);
    }
  }
  ++t_;
  double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(t_));
  double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(t_));
  double step_size = lr / bc1;
  double sqrt_bc2 = std::sqrt(bc2);
  bool decay = config_.name == "adamw" && config_.weight_decay > 0;
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    if (decay && s.param.dim() >= 2) s.param.mul_(1.0 - lr * config_.weight_decay);
    s.exp_avg.mul_(config_.beta1).add_(g, 1.0 - config_.beta1);
    s.exp_avg_sq.mul_(config_.beta2).addcmul_(g, g, 1.0 - config_.beta2);
    auto denom = (s.exp_avg_sq.sqrt() / sqrt_bc2).add_(config_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

io::NamedTensors AdamW::state(const std::string& prefix) const {
  io::NamedTensors out;
  out.emplace_back(prefix + "step", torch::tensor({t_}, torch::kLong));
  for (const auto& s : slots_) {
    out.emplace_back(prefix + s.name + ".exp_avg", s.exp_avg);
    out.emplace_back(prefix + s.name + ".exp_avg_sq", s.exp_avg_sq);
  }
  return out;
}

void AdamW::load_state(const io::SafetensorsFile& file, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  t_ = file.get(prefix + "step").item<int64_t>();
  for (auto& s : slots_) {
    for (auto* dst : {&s.exp_avg, &s.exp_avg_sq}) {
      std::string name = prefix + s.name + (dst == &s.exp_avg ? ".exp_avg" : ".exp_avg_sq");
      const auto& src = file.get(name);
      CTFGEN_CHECK(src.sizes().equals(dst->sizes()), file.source, ": optimizer state '", name,
                   "' has shape ", shape_str(src.sizes()), ", expected ", shape_str(dst->sizes()));
      dst->copy_(src);
    }
  }
}

}  // namespace ctfgen::train
