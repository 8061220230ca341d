// `ctfgen train-ar` (CTF stage 1 with --clusters, plain LlamaGen baseline without) and
// `ctfgen train-aux` (CTF stage 2): train on token directories written by `ctfgen encode`.
// Data-parallel when launched as several processes (torchrun/Slurm variables, docs/distributed.md).
#include <cstdio>

#include "command.h"
#include "core/error.h"
#include "data/token_dir.h"
#include "models/model_config.h"
#include "pipeline/train_generator.h"
#include "train_flags.h"

namespace ctfgen::cmd_train_generator {

using ctfgen::pipeline::GeneratorStage;

struct Options {
  std::string tokens, val_tokens, clusters, out;
  int64_t dim = 0, layers = 0, heads = 0;
  std::vector<std::string> overrides;  // FIELD=VALUE
  bool json = false;
  ctfgen::pipeline::GeneratorTrainConfig config;
};

ctfgen::cli::Action setup(CLI::App& app, bool aux) {
  auto o = std::make_shared<Options>();
  o->config.stage = aux ? GeneratorStage::Aux : GeneratorStage::Coarse;
  o->config.optim.lr = 3e-4;
  o->config.optim.warmup_steps = 100;
  o->config.optim.schedule = "cosine";
  o->config.trainer.steps = 2000;
  app.add_option("--tokens", o->tokens, "Training token directory (ctfgen encode)")->required();
  app.add_option("--val-tokens", o->val_tokens, "Validation token directory (optional)");
  app.add_option("--clusters", o->clusters,
                 aux ? "Cluster file (ctfgen cluster)"
                     : "Cluster file: train the CTF stage-1 coarse model; omit for the LlamaGen baseline");
  if (aux) app.get_option("--clusters")->required();
  app.add_option("--out", o->out, "Run directory (checkpoint.safetensors, log.jsonl, model.safetensors)")->required();
  std::string presets;
  for (const auto& p : ctfgen::models::preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  app.add_option("--preset", o->config.preset, "Model size preset: " + presets)->capture_default_str();
  app.add_option("--dim", o->dim, "Override the preset's width (0 = keep)")->check(CLI::Range(int64_t{0}, int64_t{65536}));
  app.add_option("--layers", o->layers, "Override the preset's layer count (0 = keep)")->check(CLI::Range(int64_t{0}, int64_t{1024}));
  app.add_option("--heads", o->heads, "Override the preset's head count (0 = keep)")->check(CLI::Range(int64_t{0}, int64_t{1024}));
  app.add_option("--model-override", o->overrides,
                 "Set a model config field, FIELD=VALUE with a JSON value (repeatable), e.g. "
                 "resid_dropout_p=0");
  app.add_option("--batch", o->config.batch_size,
                 "Sequences per step and process (global batch: processes x this)")->check(CLI::Range(int64_t{1}, int64_t{65536}))->capture_default_str();
  app.add_option("--ema", o->config.ema_decay, "EMA decay of the sampling weights (0 = off)")->check(CLI::Range(0.0, 0.999999999))->capture_default_str();
  app.add_option("--val-batches", o->config.val_batches, "Validation batches per evaluation")->check(CLI::Range(int64_t{0}, int64_t{1} << 30))->capture_default_str();
  app.add_option("--val-every", o->config.val_every, "Steps between validation losses (0 = end only)")->check(CLI::Range(int64_t{0}, int64_t{1} << 40))->capture_default_str();
  app.add_option("--snapshot-steps", o->config.snapshot_steps,
                 "Also write the model after these steps to <out>/snapshots/step<N>.safetensors "
                 "(comma-separated, increasing)")
      ->delimiter(',');
  if (aux)
    app.add_option("--coarse-noise", o->config.coarse_noise,
                   "Probability of corrupting an input coarse label (mimics stage-1 errors)")->check(CLI::Range(0.0, 0.99))->capture_default_str();
  app.add_option("--amp", o->config.amp, "Mixed-precision forward: off | bf16 (cpu, cuda)")
      ->check(CLI::IsMember({"off", "bf16"}))
      ->capture_default_str();
  app.add_flag("--json", o->json, "Print the result as JSON");
  ctfgen::cli::add_training_flags(app, o->config.optim, o->config.trainer);
  return [o, aux] {
    auto& c = o->config;
    if (!aux && o->clusters.empty()) c.stage = GeneratorStage::Baseline;
    if (o->dim) c.model_overrides["dim"] = o->dim;
    if (o->layers) c.model_overrides["n_layer"] = o->layers;
    if (o->heads) c.model_overrides["n_head"] = o->heads;
    for (const auto& kv : o->overrides) {
      auto eq = kv.find('=');
      CTFGEN_CHECK_USAGE(eq != std::string::npos && eq > 0,
                         "--model-override: expected FIELD=VALUE, got '", kv, "'");
      const std::string value = kv.substr(eq + 1);
      auto parsed = nlohmann::json::parse(value, nullptr, false);
      c.model_overrides[kv.substr(0, eq)] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
    }
    auto dist = ctfgen::cli::start_distributed();
    auto train = ctfgen::data::load_token_dir(o->tokens);
    std::optional<ctfgen::data::TokenSet> val;
    if (!o->val_tokens.empty()) {
      val = ctfgen::data::load_token_dir(o->val_tokens);
      const auto h = [](const ctfgen::data::TokenSet& s) {
        return s.meta.value("tokenizer_hash", std::string());
      };
      CTFGEN_CHECK(h(*val) == h(train), o->val_tokens, ": validation tokens come from tokenizer ",
                   h(*val).substr(0, 12), "..., the training tokens in ", o->tokens, " from ",
                   h(train).substr(0, 12), "...");
    }
    std::optional<ctfgen::cluster::CoarseMap> clusters;
    if (!o->clusters.empty()) clusters = ctfgen::cluster::CoarseMap::load(o->clusters);
    auto r = ctfgen::pipeline::train_generator(c, train, val ? &*val : nullptr,
                                               clusters ? &*clusters : nullptr, o->out, dist.get());
    if (!dist->is_main()) return;  // rank 0 reports
    nlohmann::json j = {{"model", r.model_path},      {"stage", to_string(c.stage)},
                        {"steps", r.steps},           {"num_params", r.num_params},
                        {"final_loss", r.final_loss}, {"val_loss", r.val_loss},
                        {"tokens_per_s", r.tokens_per_s}};
    if (o->json) {
      ctfgen::cli::print_json(j.dump(2));
    } else {
      std::printf("model       %s\nstage       %s\nparameters  %lld\nsteps       %lld\n"
                  "final loss  %.4f\nval loss    %.4f\ntokens/s    %.0f\n",
                  r.model_path.c_str(), to_string(c.stage).c_str(),
                  static_cast<long long>(r.num_params), static_cast<long long>(r.steps),
                  r.final_loss, r.val_loss, r.tokens_per_s);
    }
  };
}

CTFGEN_COMMAND("train-ar",
               "Train the autoregressive model: CTF stage 1 on coarse labels (--clusters) or the "
               "LlamaGen baseline on fine tokens",
               [](CLI::App& app) { return setup(app, false); });
CTFGEN_COMMAND("train-aux", "Train the CTF stage-2 auxiliary model (coarse labels -> fine tokens)",
               [](CLI::App& app) { return setup(app, true); });

}  // namespace ctfgen::cmd_train_generator
