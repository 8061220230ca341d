#include "sampling/fine_sampler.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/device.h"
#include "core/error.h"
#include "core/shape.h"
#include "sampling/logits_ops.h"

namespace ctfgen::sampling {

at::Tensor member_mask_from_coarse_of(const at::Tensor& coarse_of, int64_t K) {
  CTFGEN_CHECK(coarse_of.dim() == 1, "member_mask_from_coarse_of: coarse_of must be [V], got ",
               shape_str(coarse_of.sizes()));
  auto c = coarse_of.to(torch::kLong);
  const int64_t V = c.size(0);
  if (V > 0) {
    const auto [lo, hi] = int_range(c);
    CTFGEN_CHECK(lo >= 0 && hi < K, "member_mask_from_coarse_of: coarse labels must be in [0, ", K,
                 ")");
  }
  auto mask = torch::zeros({K, V}, c.options().dtype(torch::kBool));
  mask.index_put_({c, torch::arange(V, c.options())}, true);
  return mask;
}

at::Tensor sample_fine(models::Aux& model, const at::Tensor& coarse, const at::Tensor& labels,
                       const SamplingConfig& config, at::Generator& gen,
                       const at::Tensor* member_mask, int64_t chunk) {
  config.validate();
  CTFGEN_CHECK(chunk >= 0, "sample_fine: chunk must be >= 0 (0 = automatic), got ", chunk);
  const auto& mc = model->config();
  CTFGEN_CHECK(labels.dim() == 1 && labels.size(0) >= 1, "sample_fine: labels must be [B], got ",
               shape_str(labels.sizes()));
  const int64_t B = labels.size(0);
  CTFGEN_CHECK(coarse.dim() == 2 && coarse.size(0) == B, "sample_fine: coarse must be [", B,
               ", T], got ", shape_str(coarse.sizes()));
  const int64_t T = coarse.size(1), K = mc.coarse_vocab, V = mc.fine_vocab;
  const int64_t logits_per_image = (config.guidance() ? 2 : 1) * std::max<int64_t>(T, 1) * V;
  const c10::Device device = module_device(*model);
  // CPU: chunks that keep the logits cache-sized; a GPU wants large batches (1 GiB of logits).
  const int64_t budget = device.is_cpu() ? int64_t{1} << 23 : int64_t{1} << 28;
  if (chunk == 0) chunk = std::max<int64_t>(1, budget / logits_per_image);
  at::Tensor mask;
  if (member_mask) {
    mask = *member_mask;
    CTFGEN_CHECK_SHAPE(mask, {K, V}, "sample_fine member_mask [K, V]");
    CTFGEN_CHECK(mask.scalar_type() == torch::kBool, "sample_fine: member_mask must be bool");
    CTFGEN_CHECK(mask.any(1).all().item<bool>(),
                 "sample_fine: member_mask has a cluster without members");
  }
  c10::InferenceMode inference;
  const bool was_training = model->is_training();
  model->eval();
  if (mask.defined()) mask = mask.to(device);
  auto out = torch::empty({B, T}, torch::TensorOptions().dtype(torch::kLong).device(device));
  try {
    const bool cfg = config.guidance();
    auto all_coarse = coarse.to(device, torch::kLong), all_labels = labels.to(device, torch::kLong);
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
      const int64_t n = std::min(chunk, B - b0);
      auto c = all_coarse.narrow(0, b0, n), lab = all_labels.narrow(0, b0, n);
      at::Tensor logits;  // [n, T, V]
      if (cfg) {
        auto both = model->forward(torch::cat({c, c}),
                                   torch::cat({lab, torch::full({n}, mc.num_classes, lab.options())}));
        logits = cfg_mix(both.narrow(0, 0, n), both.narrow(0, n, n), config.cfg_scale);
      } else {
        logits = model->forward(c, lab);
      }
      auto flat = logits.reshape({n * T, V});
      if (mask.defined()) flat = mask_to_members(flat, mask.index_select(0, c.reshape({-1})));
      out.narrow(0, b0, n).copy_(sample_tokens(flat, config, gen).view({n, T}));
    }
  } catch (...) {
    model->train(was_training);
    throw;
  }
  model->train(was_training);
  return out;
}

}  // namespace ctfgen::sampling
