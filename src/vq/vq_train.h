// Tokenizer training (`ctfgen train-vq`) as a library function, plus held-out evaluation.
// The loss follows LlamaGen's vq_loss.py without LPIPS (no VGG weights are available offline):
//   recon (L2 or L1) + codebook + commit_beta * commitment [+ entropy]
//   [+ disc_weight * hinge generator loss once step >= disc_start]
// and, with the discriminator on, a hinge discriminator step on detached reconstructions.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "train/optim.h"
#include "train/trainer.h"
#include "vq/vq_model.h"

namespace ctfgen::vq {

struct VQTrainConfig {
  VQConfig model;                  // architecture and quantiser
  train::OptimConfig optim;        // generator (and discriminator) optimiser and LR schedule
  train::TrainerConfig trainer;    // steps, checkpoint cadence, logging, seed
  int64_t batch_size = 64;         // images per step
  std::string recon_loss = "l2";   // "l2" (MSE, LlamaGen default) or "l1"
  bool hflip = false;              // random horizontal flips of training images
  double restart_stop_fraction = 0.9;  // no dead-code restarts after this fraction of the steps
  // PatchGAN (off when disc_weight == 0).
  double disc_weight = 0.0;        // weight of the hinge generator loss
  int64_t disc_start = 0;          // first step with GAN terms (LlamaGen: 20000)
  int64_t disc_ndf = 64;           // discriminator width
  int64_t disc_layers = 3;         // discriminator depth
  // Outputs.
  int64_t sample_every = 0;        // steps between reconstruction grids (recon_<step>.png); 0 = off
  int64_t sample_count = 16;       // held-out images in each reconstruction grid
  int64_t eval_batch = 256;        // batch size of the final evaluation
  int64_t eval_limit = 0;          // evaluate on at most this many held-out images; 0 = all

  nlohmann::json to_json() const;
  static VQTrainConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("model", self.model);
    visit("optim", self.optim);
    visit("trainer", self.trainer);
    visit("batch_size", self.batch_size);
    visit("recon_loss", self.recon_loss);
    visit("hflip", self.hflip);
    visit("restart_stop_fraction", self.restart_stop_fraction);
    visit("disc_weight", self.disc_weight);
    visit("disc_start", self.disc_start);
    visit("disc_ndf", self.disc_ndf);
    visit("disc_layers", self.disc_layers);
    visit("sample_every", self.sample_every);
    visit("sample_count", self.sample_count);
    visit("eval_batch", self.eval_batch);
    visit("eval_limit", self.eval_limit);
  }
  void validate() const;  // throws UsageError naming the field
};

/// Reconstruction and codebook quality on a set of images.
struct VQEvalResult {
  int64_t images = 0;
  double psnr = 0;        // dB, mean over images, on uint8 images (LlamaGen conversion)
  double ssim = 0;        // mean over images and channels
  double usage = 0;       // fraction of codes used by the images' tokens
  int64_t used = 0;       // number of codes used
  double perplexity = 0;  // exp(entropy) of the code histogram
  double recon_mse = 0;   // mean squared error in [-1, 1] units (before uint8 conversion)
  nlohmann::json to_json() const;
};

/// images: [N, C, H, W] float in [-1, 1]. Runs in eval mode without autograd (restores the
/// model's training flag afterwards). Images smaller than 11x11 get ssim = NaN.
VQEvalResult evaluate_vq(VQModel& model, const at::Tensor& images, int64_t batch_size = 256);

struct VQTrainResult {
  VQEvalResult eval;          // on the held-out images
  int64_t steps = 0;          // steps completed (== config.trainer.steps unless stopped)
  double train_seconds = 0;   // wall time of the steps run in this process
  double seconds_per_step = 0;
  bool resumed = false;
  std::string model_path;     // <out_dir>/vq.safetensors
  nlohmann::json to_json() const;
};

/// Trains a VQ tokenizer on `train_images` ([N, C, H, W] float in [-1, 1]), resuming from
/// <out_dir>/checkpoint.safetensors when present, and writes <out_dir>/vq.safetensors and
/// <out_dir>/metrics.json (evaluation on `eval_images`). `meta` is stored in the component file
/// (for example the dataset description). Throws UsageError on bad settings.
VQTrainResult train_vq(const VQTrainConfig& config, const at::Tensor& train_images,
                       const at::Tensor& eval_images, const std::string& out_dir,
                       const nlohmann::json& meta = nlohmann::json::object());

}  // namespace ctfgen::vq
