#include "vq/vq_train.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include "core/device.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/shape.h"
#include "core/timer.h"
#include "eval/image_metrics.h"
#include "io/image_grid.h"
#include "io/image_io.h"
#include "vq/discriminator.h"

namespace ctfgen::vq {

nlohmann::json VQTrainConfig::to_json() const { return fields_to_json(*this); }

VQTrainConfig VQTrainConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<VQTrainConfig>(j, "VQ training config");
}

void VQTrainConfig::validate() const {
  model.validate();
  optim.validate();
  trainer.validate();
  CTFGEN_CHECK_USAGE(batch_size >= 1 && batch_size <= 65536,
                     "VQ training: batch_size must be in [1, 65536], got ", batch_size);
  CTFGEN_CHECK_USAGE(recon_loss == "l2" || recon_loss == "l1",
                     "VQ training: recon_loss must be 'l2' or 'l1', got '", recon_loss, "'");
  CTFGEN_CHECK_USAGE(restart_stop_fraction >= 0.0 && restart_stop_fraction <= 1.0,
                     "VQ training: restart_stop_fraction must be in [0, 1], got ",
                     restart_stop_fraction);
  CTFGEN_CHECK_USAGE(disc_weight >= 0.0, "VQ training: disc_weight must be >= 0, got ",
                     disc_weight);
  CTFGEN_CHECK_USAGE(disc_start >= 0, "VQ training: disc_start must be >= 0, got ", disc_start);
  CTFGEN_CHECK_USAGE(disc_ndf >= 1 && disc_ndf <= 1024,
                     "VQ training: disc_ndf must be in [1, 1024], got ", disc_ndf);
  CTFGEN_CHECK_USAGE(disc_layers >= 1 && disc_layers <= 6,
                     "VQ training: disc_layers must be in [1, 6], got ", disc_layers);
  CTFGEN_CHECK_USAGE(sample_every >= 0, "VQ training: sample_every must be >= 0, got ",
                     sample_every);
  CTFGEN_CHECK_USAGE(sample_count >= 1 && sample_count <= 1024,
                     "VQ training: sample_count must be in [1, 1024], got ", sample_count);
  CTFGEN_CHECK_USAGE(eval_batch >= 1, "VQ training: eval_batch must be >= 1, got ", eval_batch);
  CTFGEN_CHECK_USAGE(eval_limit >= 0, "VQ training: eval_limit must be >= 0, got ", eval_limit);
}

nlohmann::json VQEvalResult::to_json() const {
  auto num = [](double v) -> nlohmann::json {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  };
  return {{"images", images},      {"psnr", num(psnr)},       {"ssim", num(ssim)},
          {"usage", usage},        {"used", used},            {"perplexity", perplexity},
          {"recon_mse", num(recon_mse)}};
}

nlohmann::json VQTrainResult::to_json() const {
  return {{"eval", eval.to_json()},
          {"steps", steps},
          {"train_seconds", train_seconds},
          {"seconds_per_step", seconds_per_step},
          {"resumed", resumed},
          {"model_path", model_path}};
}

VQEvalResult evaluate_vq(VQModel& model, const at::Tensor& images, int64_t batch_size) {
  CTFGEN_CHECK_SHAPE(images, {-1, model->config.in_channels, -1, -1}, "evaluate_vq images");
  CTFGEN_CHECK(images.size(0) > 0, "evaluate_vq: no images");
  CTFGEN_CHECK(batch_size >= 1, "evaluate_vq: batch_size must be >= 1, got ", batch_size);
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  const bool ssim_ok = images.size(2) >= 11 && images.size(3) >= 11;
  auto counts = torch::zeros({model->config.codebook_size}, torch::kLong);
  const c10::Device device = module_device(*model);
  double psnr_sum = 0, ssim_sum = 0, mse_sum = 0;
  for (int64_t i = 0; i < n; i += batch_size) {
    auto x = images.slice(0, i, std::min(n, i + batch_size)).to(device, torch::kFloat);
    auto out = model(x);
    counts += eval::code_counts(out.indices, model->config.codebook_size).cpu();
    auto a = io::to_uint8(x), b = io::to_uint8(out.recon);
    psnr_sum += eval::psnr_per_image(a, b).sum().item<double>();
    if (ssim_ok) ssim_sum += eval::ssim_per_image(a, b).sum().item<double>();
    mse_sum += (out.recon - x).pow(2).flatten(1).mean(1).sum().item<double>();
  }
  model->train(was_training);
  VQEvalResult r;
  r.images = n;
  r.psnr = psnr_sum / n;
  r.ssim = ssim_ok ? ssim_sum / n : std::numeric_limits<double>::quiet_NaN();
  r.recon_mse = mse_sum / n;
  auto s = eval::codebook_stats(counts);
  r.usage = s.usage;
  r.used = s.used;
  r.perplexity = s.perplexity;
  return r;
}

namespace {

at::Tensor hflip_random(const at::Tensor& x, at::Generator& gen) {
  auto flip = (torch::rand({x.size(0)}, gen) < 0.5).to(x.device());
  auto flipped = x.flip({3});
  return torch::where(flip.view({-1, 1, 1, 1}), flipped, x);
}

// Writes <dir>/recon_<step>.png: originals in the first grid row, reconstructions below.
void write_recon_grid(VQModel& model, const at::Tensor& images, const std::string& dir,
                      int64_t step) {
  const bool was_training = model->is_training();
  model->eval();
  at::Tensor recon;
  {
    torch::NoGradGuard no_grad;
    recon = model(images.to(module_device(*model))).recon.cpu();
  }
  model->train(was_training);
  io::GridOptions g;
  g.nrow = images.size(0);
  g.row_labels = {"input", "recon"};
  char name[48];
  std::snprintf(name, sizeof name, "/recon_%08lld.png", static_cast<long long>(step));
  io::write_png(dir + name, io::make_grid(torch::cat({images, recon.clamp(-1, 1)}, 0), g));
}

}  // namespace

VQTrainResult train_vq(const VQTrainConfig& config, const at::Tensor& train_images,
                       const at::Tensor& eval_images, const std::string& out_dir,
                       const nlohmann::json& meta) {
  config.validate();
  const auto& mc = config.model;
  CTFGEN_CHECK_SHAPE(train_images, {-1, mc.in_channels, -1, -1}, "train-vq training images");
  CTFGEN_CHECK_SHAPE(eval_images, {-1, mc.in_channels, train_images.size(2), train_images.size(3)},
                     "train-vq held-out images");
  const int64_t n = train_images.size(0);
  CTFGEN_CHECK_USAGE(n > 0, "train-vq: the training set is empty");
  CTFGEN_CHECK_USAGE(eval_images.size(0) > 0, "train-vq: the held-out set is empty");
  auto [gh, gw] = mc.grid_size(train_images.size(2), train_images.size(3));
  fs::ensure_dir(out_dir);

  VQModel model(mc, config.trainer.seed);
  model->to(default_device());  // before the optimiser takes the parameters
  model->train();
  // What a resume must agree on: the model and every training setting except the step count,
  // the seed (both checked by the trainer) and the outputs' cadence.
  auto resume_key = config.to_json();
  for (const char* k : {"trainer", "sample_every", "sample_count", "eval_batch", "eval_limit"})
    resume_key.erase(k);
  train::Trainer trainer(config.trainer, out_dir, "vq", resume_key);
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (auto& p : model->named_parameters()) params.emplace_back(p.key(), p.value());
  train::AdamW opt(params, config.optim);
  trainer.add_module("model", *model);
  trainer.add_optimizer("optim", opt);

  const bool use_disc = config.disc_weight > 0.0;
  NLayerDiscriminator disc{nullptr};
  std::unique_ptr<train::AdamW> disc_opt;
  if (use_disc) {
    auto dgen = make_generator(config.trainer.seed ^ 0x9e3779b97f4a7c15ULL);
    disc = NLayerDiscriminator(mc.in_channels, config.disc_ndf, config.disc_layers, dgen);
    disc->to(default_device());
    disc->train();
    std::vector<std::pair<std::string, at::Tensor>> dparams;
    for (auto& p : disc->named_parameters()) dparams.emplace_back(p.key(), p.value());
    disc_opt = std::make_unique<train::AdamW>(dparams, config.optim);
    trainer.add_module("disc", *disc);
    trainer.add_optimizer("disc_optim", *disc_opt);
  }
  VQTrainResult result;
  result.resumed = trainer.resume_if_present();
  if (result.resumed) log::info("train-vq: resumed at step ", trainer.step());

  // A restart re-seeds the codes absent from the window entries written since the previous one.
  const int64_t restart_every = mc.dead_code_restart_every;
  const int64_t restart_recent = restart_every * config.batch_size * gh * gw;
  const auto restart_until =
      static_cast<int64_t>(config.restart_stop_fraction * static_cast<double>(config.trainer.steps));
  log::info("train-vq: ", n, " training images ", train_images.size(2), "x", train_images.size(3),
            ", grid ", gh, "x", gw, ", ", config.trainer.steps, " steps of batch ",
            config.batch_size, restart_every > 0 ? str_cat(", dead-code restarts every ",
                                                           restart_every, " steps") : "");

  auto sample_images =
      eval_images.slice(0, 0, std::min(config.sample_count, eval_images.size(0))).to(torch::kFloat);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first_step = trainer.step();
  while (!trainer.done()) {
    auto idx = trainer.cursor().next_batch(config.batch_size, n);
    auto x = train_images.index_select(0, idx).to(default_device(), torch::kFloat);
    if (config.hflip) x = hflip_random(x, trainer.generator());
    const int64_t step = trainer.step();
    const bool gan_on = use_disc && step >= config.disc_start;

    auto out = model(x);
    auto rec = config.recon_loss == "l2" ? (out.recon - x).pow(2).mean()
                                         : (out.recon - x).abs().mean();
    auto loss = rec + out.losses.total();
    at::Tensor g_loss;
    if (gan_on) {
      g_loss = hinge_g_loss(disc(out.recon));
      loss = loss + config.disc_weight * g_loss;
    }
    opt.zero_grad();
    loss.backward();
    std::map<std::string, double> scalars{{"loss", loss.item<double>()},
                                          {"recon", rec.item<double>()},
                                          {"codebook", out.losses.codebook.item<double>()},
                                          {"commit", out.losses.commit.item<double>()}};
    trainer.step_optimizer(opt, scalars["loss"]);
    if (gan_on) {
      disc_opt->zero_grad();
      auto d_loss = hinge_d_loss(disc(x), disc(out.recon.detach()));
      d_loss.backward();
      trainer.step_optimizer(*disc_opt, d_loss.item<double>());
      scalars["g_loss"] = g_loss.item<double>();
      scalars["d_loss"] = d_loss.item<double>();
    }
    if (restart_every > 0 && (step + 1) % restart_every == 0 && step < restart_until) {
      scalars["restarted"] =
          static_cast<double>(model->quantize->restart_dead_codes(out.z_flat, trainer.generator(), restart_recent));
      scalars["window_usage"] = model->quantize->window_usage();
    }
    trainer.end_step(scalars);
    if (config.sample_every > 0 && trainer.step() % config.sample_every == 0)
      write_recon_grid(model, sample_images, out_dir, trainer.step());
  }
  const double secs = seconds_since(t0);
  trainer.finish();
  result.steps = trainer.step();
  result.train_seconds = secs;
  const int64_t ran = result.steps - first_step;
  result.seconds_per_step = ran > 0 ? secs / static_cast<double>(ran) : 0.0;

  model->eval();
  auto held_out = config.eval_limit > 0 && config.eval_limit < eval_images.size(0)
                      ? eval_images.slice(0, 0, config.eval_limit)
                      : eval_images;
  result.eval = evaluate_vq(model, held_out, config.eval_batch);
  result.model_path = out_dir + "/vq.safetensors";
  nlohmann::json m = meta;
  m["step"] = result.steps;
  m["seed"] = config.trainer.seed;
  m["eval"] = result.eval.to_json();
  m["train_config"] = config.to_json();
  save_vq(result.model_path, model, m);
  fs::atomic_write_text(out_dir + "/metrics.json", result.to_json().dump(2) + "\n");
  return result;
}

}  // namespace ctfgen::vq
