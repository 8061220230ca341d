#include "train_flags.h"

#include <algorithm>

#include "core/error.h"
#include "core/log.h"

namespace ctfgen::cli {

std::shared_ptr<train::DistContext> start_distributed() {
  auto config = train::dist_config_from_env();
  if (config.rank != 0) {  // before joining, so that rank 0 alone reports the group
    log::set_verbosity(std::min(log::verbosity(), 0));
    log::set_prefix(str_cat("rank ", config.rank, ": "));
  }
  return std::make_shared<train::DistContext>(config);
}

void refuse_distributed(const std::string& command, const std::string& why) {
  auto config = train::dist_config_from_env();
  CTFGEN_CHECK_USAGE(config.world_size == 1, command,
                     " does not support data-parallel training yet (", why,
                     "); run it as one process (unset RANK/WORLD_SIZE and SLURM_NTASKS), got a "
                     "world size of ", config.world_size);
}

void add_allow_steps_change_flag(CLI::App& app, train::TrainerConfig& t) {
  app.add_flag("--allow-steps-change", t.allow_steps_change,
               "Resume a run whose checkpoint has another --steps (the learning-rate schedule then "
               "follows the new total; docs/architecture.md, resume)");
}

void add_training_flags(CLI::App& app, train::OptimConfig& o, train::TrainerConfig& t) {
  app.add_option("--steps", t.steps, "Total optimisation steps")->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->capture_default_str();
  add_allow_steps_change_flag(app, t);
  app.add_option("--lr", o.lr, "Peak learning rate")->check(CLI::Range(1e-9, 10.0))->capture_default_str();
  app.add_option("--optimizer", o.name, "adamw (decoupled weight decay) or adam (none)")
      ->check(CLI::IsMember({"adamw", "adam"}))->capture_default_str();
  app.add_option("--beta1", o.beta1, "Adam beta1")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--beta2", o.beta2, "Adam beta2")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay on matrices and embeddings")
      ->check(CLI::Range(0.0, 0.999))->capture_default_str();
  app.add_option("--grad-clip", o.grad_clip, "Max global gradient norm (0 = off)")->check(CLI::Range(0.0, 1e6))->capture_default_str();
  app.add_option("--warmup", o.warmup_steps, "Linear warm-up steps")->check(CLI::Range(int64_t{0}, int64_t{1} << 40))->capture_default_str();
  app.add_option("--schedule", o.schedule, "Learning-rate schedule after warm-up")
      ->check(CLI::IsMember({"constant", "cosine"}))->capture_default_str();
  app.add_option("--min-lr-ratio", o.min_lr_ratio, "Cosine floor as a fraction of --lr")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--checkpoint-every", t.checkpoint_every, "Steps between periodic checkpoints (0 = end only)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))->capture_default_str();
  app.add_option("--log-every", t.log_every, "Steps between lines in <out>/log.jsonl")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->capture_default_str();
  app.add_option("--max-nonfinite", t.max_nonfinite_in_a_row,
                 "Stop after this many non-finite losses or gradients in a row")->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--seed", t.seed, "Seed of every random choice (init, data order, dropout)")->capture_default_str();
}

}  // namespace ctfgen::cli
