// `ctfgen train-vq`: trains a VQ tokenizer on a dataset and reports held-out PSNR/SSIM/usage.
#include <cstdio>
#include <memory>

#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/dataset.h"
#include "train_flags.h"
#include "vq/vq_train.h"

namespace ctfgen::cmd_train_vq {

struct TrainVQOptions {
  ctfgen::data::DatasetConfig data;
  std::string eval_split = "test";
  int64_t train_limit = 0;
  std::string preset = "fmnist";
  std::string config_path;
  std::string out;
  int64_t steps = 2000;
  int64_t batch = 32;
  double lr = 2e-3;
  std::string optim = "adam";
  double weight_decay = 0.05;
  double beta1 = 0.9, beta2 = 0.95;
  double grad_clip = 1.0;
  int64_t warmup = 100;
  std::string schedule = "cosine";
  double min_lr_ratio = 0.1;
  std::string recon_loss = "l2";
  bool hflip = false;
  double disc_weight = 0.0;
  int64_t disc_start = 0;
  int64_t checkpoint_every = 500;
  int64_t log_every = 50;
  int64_t sample_every = 0;
  int64_t eval_limit = 0;
  int64_t restart_every = -1;
  uint64_t seed = 0;
  bool allow_steps_change = false;
  bool json = false;
};

ctfgen::cli::Action setup_train_vq(CLI::App& app) {
  auto o = std::make_shared<TrainVQOptions>();
  app.add_option("--dataset", o->data.name, "Dataset: fashion-mnist | imagefolder | emoji")
      ->capture_default_str();
  app.add_option("--data-path", o->data.path, "Dataset location (default: the dataset's own)");
  app.add_option("--alpha-background", o->data.alpha_background,
                 "Transparent pixels are composited onto: white, black or R,G,B")
      ->capture_default_str();
  app.add_flag("--skip-bad", o->data.skip_bad,
               "Skip unreadable or corrupt images (their count is reported) instead of failing");
  app.add_option("--image-size", o->data.image_size, "Image size (0 = native)")
      ->check(CLI::Range(int64_t{0}, int64_t{4096}))
      ->capture_default_str();
  app.add_option("--eval-split", o->eval_split, "Held-out split for the final metrics")
      ->check(CLI::IsMember({"train", "test"}))
      ->capture_default_str();
  app.add_option("--train-limit", o->train_limit, "Use at most this many training images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--preset", o->preset, "VQ preset: VQ-16 | VQ-8 | fmnist | emoji32 | emoji64")
      ->capture_default_str();
  app.add_option("--config", o->config_path,
                 "VQ config JSON file (fields of VQConfig; overrides --preset)");
  app.add_option("--out", o->out, "Run directory (checkpoint, vq.safetensors, metrics.json)")
      ->required();
  app.add_option("--steps", o->steps, "Optimisation steps")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_flag("--allow-steps-change", o->allow_steps_change,
               "Resume a run whose checkpoint has another --steps (the learning-rate schedule then "
               "follows the new total)");
  app.add_option("--batch", o->batch, "Images per step")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}))
      ->capture_default_str();
  app.add_option("--lr", o->lr, "Peak learning rate")->check(CLI::Range(0.0, 10.0))->capture_default_str();
  app.add_option("--optim", o->optim, "adam (no weight decay, LlamaGen) | adamw")
      ->check(CLI::IsMember({"adam", "adamw"}))
      ->capture_default_str();
  app.add_option("--weight-decay", o->weight_decay, "AdamW weight decay")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  app.add_option("--beta1", o->beta1, "Adam beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--beta2", o->beta2, "Adam beta2")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--grad-clip", o->grad_clip, "Max global gradient norm (0 = off)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--warmup", o->warmup, "Linear warm-up steps")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--schedule", o->schedule, "LR schedule: constant | cosine")
      ->check(CLI::IsMember({"constant", "cosine"}))
      ->capture_default_str();
  app.add_option("--min-lr-ratio", o->min_lr_ratio, "Cosine floor as a fraction of --lr")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--recon-loss", o->recon_loss, "Reconstruction loss: l2 | l1")
      ->check(CLI::IsMember({"l2", "l1"}))
      ->capture_default_str();
  app.add_flag("--hflip", o->hflip, "Random horizontal flips of training images");
  app.add_option("--disc-weight", o->disc_weight, "PatchGAN generator-loss weight (0 = no GAN)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  app.add_option("--disc-start", o->disc_start, "First step with GAN losses")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--restart-every", o->restart_every,
                 "Dead-code restart interval in steps (0 = off; -1 = the config's value)")
      ->check(CLI::Range(int64_t{-1}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--checkpoint-every", o->checkpoint_every, "Steps between checkpoints (0 = end only)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--log-every", o->log_every, "Steps between log lines")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--sample-every", o->sample_every,
                 "Steps between reconstruction grids recon_<step>.png (0 = off)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--eval-limit", o->eval_limit, "Evaluate on at most this many held-out images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--seed", o->seed, "Seed for initialisation, data order and restarts")
      ->capture_default_str();
  app.add_flag("--json", o->json, "Print the result as JSON");
  return [o] {
    using namespace ctfgen;
    cli::refuse_distributed("train-vq",
                            "dead-code restarts and codebook-usage statistics are per process");
    vq::VQTrainConfig cfg;
    cfg.model = o->config_path.empty()
                    ? vq::VQConfig::preset(o->preset)
                    : vq::VQConfig::from_json(fs::read_json(o->config_path));
    if (o->restart_every >= 0) cfg.model.dead_code_restart_every = o->restart_every;
    cfg.optim.name = o->optim;
    cfg.optim.lr = o->lr;
    cfg.optim.beta1 = o->beta1;
    cfg.optim.beta2 = o->beta2;
    cfg.optim.weight_decay = o->optim == "adam" ? 0.0 : o->weight_decay;
    cfg.optim.grad_clip = o->grad_clip;
    cfg.optim.warmup_steps = o->warmup;
    cfg.optim.schedule = o->schedule;
    cfg.optim.min_lr_ratio = o->min_lr_ratio;
    cfg.trainer.steps = o->steps;
    cfg.trainer.checkpoint_every = o->checkpoint_every;
    cfg.trainer.log_every = o->log_every;
    cfg.trainer.seed = o->seed;
    cfg.trainer.allow_steps_change = o->allow_steps_change;
    cfg.batch_size = o->batch;
    cfg.recon_loss = o->recon_loss;
    cfg.hflip = o->hflip;
    cfg.disc_weight = o->disc_weight;
    cfg.disc_start = o->disc_start;
    cfg.sample_every = o->sample_every;
    cfg.eval_limit = o->eval_limit;
    if (o->data.image_size == 0 && o->data.name == "fashion-mnist")
      o->data.image_size = cfg.model.image_size;
    cfg.validate();

    auto train_cfg = o->data;
    train_cfg.split = "train";
    train_cfg.limit = o->train_limit;
    auto eval_cfg = o->data;
    eval_cfg.split = o->eval_split;
    auto train = data::load_dataset(train_cfg);
    auto held = data::load_dataset(eval_cfg);
    log::info("train-vq: ", train.name, " train ", train.size(), " images, ", o->eval_split, " ",
              held.size(), " images");
    nlohmann::json meta{{"dataset", train_cfg.to_json()}, {"eval_split", o->eval_split}};
    auto r = vq::train_vq(cfg, train.images, held.images, o->out, meta);
    if (o->json) {
      cli::print_json(r.to_json().dump(2));
      return;
    }
    std::printf("model      %s\n", r.model_path.c_str());
    std::printf("steps      %lld (%.3f s/step)\n", static_cast<long long>(r.steps),
                r.seconds_per_step);
    std::printf("%s split: %lld images\n", o->eval_split.c_str(),
                static_cast<long long>(r.eval.images));
    std::printf("PSNR       %.3f dB\n", r.eval.psnr);
    std::printf("SSIM       %.4f\n", r.eval.ssim);
    std::printf("usage      %.4f (%lld of %lld codes)\n", r.eval.usage,
                static_cast<long long>(r.eval.used), static_cast<long long>(cfg.model.codebook_size));
    std::printf("perplexity %.1f\n", r.eval.perplexity);
  };
}

CTFGEN_COMMAND("train-vq", "Train a VQ tokenizer and report held-out PSNR, SSIM and codebook usage",
               setup_train_vq);

}  // namespace ctfgen::cmd_train_vq
