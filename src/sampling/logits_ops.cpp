#include "sampling/logits_ops.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/shape.h"

namespace ctfgen::sampling {
namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
}

at::Tensor cfg_mix(const at::Tensor& cond, const at::Tensor& uncond, double scale) {
  CTFGEN_CHECK(cond.sizes() == uncond.sizes(), "cfg_mix: cond ", shape_str(cond.sizes()),
               " and uncond ", shape_str(uncond.sizes()), " differ");
  return uncond + (cond - uncond) * scale;
}

at::Tensor apply_temperature(const at::Tensor& logits, double temperature) {
  return logits / std::max(temperature, kMinTemperature);
}

at::Tensor top_k_filter(const at::Tensor& logits, int64_t k) {
  const int64_t V = logits.size(-1);
  if (k <= 0 || k >= V) return logits;
  auto kth = std::get<0>(torch::topk(logits, k, -1)).narrow(-1, k - 1, 1);  // [..., 1]
  return logits.masked_fill(logits < kth, kNegInf);
}

at::Tensor top_p_filter(const at::Tensor& logits, double p) {
  if (p >= 1.0) return logits;
  CTFGEN_CHECK(logits.dim() == 2, "top_p_filter: logits must be [N, V], got ",
               shape_str(logits.sizes()));
  auto sorted = torch::sort(logits, -1, /*descending=*/true);
  auto sorted_logits = std::get<0>(sorted), sorted_idx = std::get<1>(sorted);
  auto cum = torch::softmax(sorted_logits, -1).cumsum(-1);
  auto remove = cum > p;
  // Shift right by one: the first entry over the threshold is kept; entry 0 always kept.
  auto shifted = torch::zeros_like(remove);
  if (remove.size(1) > 1) shifted.narrow(1, 1, remove.size(1) - 1).copy_(remove.narrow(1, 0, remove.size(1) - 1));
  auto remove_orig = torch::zeros_like(shifted).scatter(1, sorted_idx, shifted);
  return logits.masked_fill(remove_orig, kNegInf);
}

at::Tensor mask_to_members(const at::Tensor& logits, const at::Tensor& allowed) {
  CTFGEN_CHECK(allowed.scalar_type() == torch::kBool, "mask_to_members: mask must be bool");
  return logits.masked_fill(allowed.logical_not(), kNegInf);
}

at::Tensor sample_from_uniforms(const at::Tensor& logits, const at::Tensor& u, bool argmax,
                                at::Tensor* finite_rows) {
  CTFGEN_CHECK(logits.dim() == 2 && logits.size(1) >= 1, "sample: logits must be [N, V], got ",
               shape_str(logits.sizes()));
  const int64_t N = logits.size(0), V = logits.size(1);
  CTFGEN_CHECK(argmax || (u.defined() && u.numel() == N),
               "sample: needs one uniform number per row (", N, "), got ",
               u.defined() ? shape_str(u.sizes()) : std::string("none"));
  CTFGEN_CHECK(finite_rows != nullptr, "sample: finite_rows must not be null");
  auto lf = logits.to(torch::kFloat32);
  *finite_rows = torch::isfinite(std::get<0>(lf.max(-1)));  // [N]
  if (argmax) return lf.argmax(-1);
  // Inverse-CDF draw: one uniform number per row, located in the running sum of the row's
  // probabilities (cumsum accumulates in double). torch::multinomial instead draws one
  // exponential number per vocabulary entry from the serial CPU generator: V = 16384 per row,
  // about 30 ms per decode step at batch 64 and most of a stage-2 pass (docs/performance.md).
  // searchsorted(right) returns the first index whose running sum exceeds u, so an entry of
  // probability 0 is never chosen; u is kept strictly below the row total.
  auto cdf = torch::softmax(lf, -1).cumsum(-1);
  auto total = cdf.narrow(1, V - 1, 1);  // [N, 1], 1 up to rounding
  auto x = u.reshape({N, 1}).to(lf.device(), torch::kFloat32) * total;
  x = torch::minimum(x, total * (1.0 - 1.0 / (1 << 23)));
  auto idx = torch::searchsorted(cdf, x, /*out_int32=*/false, /*right=*/true).squeeze(1);
  return idx.clamp_max(V - 1);
}

void check_finite_rows(const at::Tensor& finite_rows) {
  CTFGEN_CHECK(finite_rows.all().item<bool>(),
               "sample: a row of logits has no finite entry (everything masked?) or holds NaN/inf");
}

at::Tensor sample(const at::Tensor& logits, at::Generator& gen, bool argmax) {
  CTFGEN_CHECK(logits.dim() == 2 && logits.size(1) >= 1, "sample: logits must be [N, V], got ",
               shape_str(logits.sizes()));
  // u is drawn on the CPU (the generator is a CPU one, core/rng.h) and moved: the same draws on
  // every device.
  at::Tensor u = argmax ? at::Tensor() : torch::rand({logits.size(0), 1}, gen, torch::kFloat32);
  at::Tensor finite;
  auto tokens = sample_from_uniforms(logits, u, argmax, &finite);
  check_finite_rows(finite);
  return tokens;
}

at::Tensor filter_logits(const at::Tensor& logits, const SamplingConfig& config) {
  auto l = apply_temperature(logits, config.temperature);
  l = top_k_filter(l, config.top_k);
  return top_p_filter(l, config.top_p);
}

at::Tensor sample_tokens(const at::Tensor& logits, const SamplingConfig& config,
                         at::Generator& gen) {
  return sample(filter_logits(logits, config), gen, config.argmax);
}

at::Tensor sample_tokens_from_uniforms(const at::Tensor& logits, const SamplingConfig& config,
                                       const at::Tensor& u, at::Tensor* finite_rows) {
  return sample_from_uniforms(filter_logits(logits, config), u, config.argmax, finite_rows);
}

}  // namespace ctfgen::sampling
