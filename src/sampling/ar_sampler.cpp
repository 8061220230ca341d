#include "sampling/ar_sampler.h"

#include <torch/torch.h>

#include "core/device.h"
#include "core/error.h"
#include "core/shape.h"
#include "sampling/logits_ops.h"

namespace ctfgen::sampling {
namespace {
/// Puts a module in eval mode and restores its training flag on scope exit.
struct EvalScope {
  torch::nn::Module& m;
  bool was_training;
  explicit EvalScope(torch::nn::Module& mod) : m(mod), was_training(mod.is_training()) { m.eval(); }
  ~EvalScope() { m.train(was_training); }
};
}  // namespace

at::Tensor sample_ar(models::GPT& model, const at::Tensor& labels, const SamplingConfig& config,
                     at::Generator& gen, const StepCallback& progress) {
  config.validate();
  const auto& mc = model->config();
  CTFGEN_CHECK(labels.dim() == 1 && labels.size(0) >= 1, "sample_ar: labels must be [B], got ",
               shape_str(labels.sizes()));
  c10::InferenceMode inference;
  EvalScope eval(*model);
  const int64_t B = labels.size(0), T = mc.block_size;
  const bool cfg = config.guidance();
  auto lab = labels.to(module_device(*model), torch::kLong);
  if (cfg) lab = torch::cat({lab, torch::full({B}, mc.num_classes, lab.options())});
  model->setup_cache(lab.size(0), model->param_dtype());

  // No host read inside the loop, so that a GPU never waits for the host between steps: the
  // uniform numbers of every step are drawn before it (the same numbers in the same order as
  // one draw per step: the CPU generator fills serially, and nothing else draws meanwhile) and
  // moved to the device once; each step's finite-row check stays on the device and is read
  // once at the end; the tokens fed back are the sampler's own, in [0, V) by construction, so
  // decode skips its range check.
  const auto dev = lab.device();
  const at::Tensor uniforms =
      config.argmax ? at::Tensor() : torch::rand({T, B}, gen, torch::kFloat32).to(dev);
  auto finite = torch::ones({B}, lab.options().dtype(torch::kBool));
  auto choose = [&](const at::Tensor& logits, int64_t t) {  // logits [rows, V] -> [B]
    at::Tensor l = logits;
    if (cfg) {
      auto cond = logits.narrow(0, 0, B);
      l = config.guidance_at(t) ? cfg_mix(cond, logits.narrow(0, B, B), config.cfg_scale) : cond;
    }
    at::Tensor ok;
    auto tok = sample_tokens_from_uniforms(l, config, config.argmax ? at::Tensor() : uniforms[t],
                                           &ok);
    finite.logical_and_(ok);
    return tok;
  };

  auto out = torch::empty({B, T}, lab.options());
  auto tok = choose(model->prefill(lab), 0);
  out.select(1, 0).copy_(tok);
  if (progress) progress(1, T);
  for (int64_t t = 1; t < T; ++t) {
    auto in = cfg ? torch::cat({tok, tok}) : tok;
    tok = choose(model->decode_step(in, t, /*check_range=*/false), t);
    out.select(1, t).copy_(tok);
    if (progress) progress(t + 1, T);
  }
  check_finite_rows(finite);
  return out;
}

}  // namespace ctfgen::sampling
