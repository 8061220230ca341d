#include "pipeline/train_generator.h"

#include <torch/torch.h>

#include <set>

#include <chrono>

#include "core/device.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/timer.h"
#include "io/checkpoint.h"
#include "io/tensor_hash.h"
#include "models/aux_model.h"
#include "models/gpt.h"
#include "nn/autocast.h"

namespace ctfgen::pipeline {

std::string to_string(GeneratorStage s) {
  switch (s) {
    case GeneratorStage::Coarse: return "coarse";
    case GeneratorStage::Baseline: return "baseline";
    case GeneratorStage::Aux: return "aux";
  }
  return "?";
}

GeneratorStage parse_generator_stage(const std::string& s) {
  if (s == "coarse") return GeneratorStage::Coarse;
  if (s == "baseline") return GeneratorStage::Baseline;
  if (s == "aux") return GeneratorStage::Aux;
  throw UsageError(str_cat("stage must be 'coarse', 'baseline' or 'aux', got '", s, "'"));
}

void to_json(nlohmann::json& j, GeneratorStage s) { j = to_string(s); }

void from_json(const nlohmann::json& j, GeneratorStage& s) {
  CTFGEN_CHECK_USAGE(j.is_string(), "stage must be a string, got ", j.dump());
  s = parse_generator_stage(j.get<std::string>());
}

nlohmann::json GeneratorTrainConfig::to_json() const { return fields_to_json(*this); }

GeneratorTrainConfig GeneratorTrainConfig::from_json(const nlohmann::json& j) {
  auto c = fields_from_json<GeneratorTrainConfig>(j, "generator training config");
  c.validate();
  return c;
}

void GeneratorTrainConfig::validate() const {
  CTFGEN_CHECK_USAGE(batch_size >= 1 && batch_size <= 65536, "batch_size must be in [1, 65536], got ",
                     batch_size);
  CTFGEN_CHECK_USAGE(model_overrides.is_object(), "model_overrides must be a JSON object");
  CTFGEN_CHECK_USAGE(ema_decay == 0.0 || (ema_decay > 0.0 && ema_decay < 1.0),
                     "ema_decay must be 0 (off) or in (0, 1), got ", ema_decay);
  CTFGEN_CHECK_USAGE(val_batches >= 0, "val_batches must be >= 0, got ", val_batches);
  CTFGEN_CHECK_USAGE(val_every >= 0, "val_every must be >= 0, got ", val_every);
  CTFGEN_CHECK_USAGE(coarse_noise >= 0.0 && coarse_noise < 1.0,
                     "coarse_noise must be in [0, 1), got ", coarse_noise);
  CTFGEN_CHECK_USAGE(stage == GeneratorStage::Aux || coarse_noise == 0.0,
                     "coarse_noise applies to the aux stage only");
  // fp16 autocast underflows small gradients unless the loss is scaled, which this trainer
  // does not do; bf16 has fp32's range and needs no scaling.
  CTFGEN_CHECK_USAGE(nn::parse_amp(amp) != at::kHalf,
                     "amp 'fp16' needs loss scaling, which ctfgen's trainer does not do; use "
                     "'bf16' (cpu and cuda)");
  for (size_t i = 0; i < snapshot_steps.size(); ++i) {
    const int64_t st = snapshot_steps[i];
    CTFGEN_CHECK_USAGE(st >= 1 && st <= trainer.steps, "snapshot_steps: ", st,
                       " is not a step of this run (1 .. ", trainer.steps, ")");
    CTFGEN_CHECK_USAGE(i == 0 || st > snapshot_steps[i - 1],
                       "snapshot_steps must increase, got ", snapshot_steps[i - 1], " then ", st);
  }
  optim.validate();
  trainer.validate();
}

namespace {

// Applies `overrides` (trunk fields) on top of a preset's JSON.
template <typename Config>
Config configured(const std::string& preset, const nlohmann::json& overrides,
                  const nlohmann::json& forced) {
  nlohmann::json j = Config::preset(preset).to_json();
  for (auto it = overrides.begin(); it != overrides.end(); ++it) {
    CTFGEN_CHECK_USAGE(j.contains(it.key()), "model override: unknown field '", it.key(), "'");
    j[it.key()] = it.value();
  }
  for (auto it = forced.begin(); it != forced.end(); ++it) j[it.key()] = it.value();
  return Config::from_json(j);
}

struct Batches {
  at::Tensor inputs;   // [N, T] int64: what the model reads (coarse labels for aux)
  at::Tensor targets;  // [N, T] int64: what it predicts
  at::Tensor labels;   // [N] int64
};

Batches prepare(const data::TokenSet& set, GeneratorStage stage, const cluster::CoarseMap* clusters) {
  auto fine = set.codes.to(torch::kLong).flatten(1);
  Batches b;
  b.labels = set.labels.to(torch::kLong);
  switch (stage) {
    case GeneratorStage::Baseline:
      b.inputs = b.targets = fine;
      break;
    case GeneratorStage::Coarse:
      b.inputs = b.targets = clusters->to_coarse(fine);
      break;
    case GeneratorStage::Aux:
      b.inputs = clusters->to_coarse(fine);
      b.targets = fine;
      break;
  }
  return b;
}

int64_t num_classes_of(const data::TokenSet& set) {
  if (set.meta.contains("num_classes")) return set.meta["num_classes"].get<int64_t>();
  return set.labels.max().item<int64_t>() + 1;
}

// The model and its loss behind one interface, so the loop is written once.
struct Net {
  std::shared_ptr<torch::nn::Module> module;
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)> loss;
  nlohmann::json config;
  int64_t num_params = 0;
};

Net build_net(GeneratorStage stage, const nlohmann::json& config, uint64_t seed) {
  Net n;
  n.config = config;
  if (stage == GeneratorStage::Aux) {
    models::Aux m(models::AuxConfig::from_json(config), seed);
    m->to(default_device());  // before the optimiser takes the parameters
    n.module = m.ptr();
    n.loss = [m](const at::Tensor& in, const at::Tensor& tgt, const at::Tensor& y) mutable {
      return models::aux_loss(m, in, tgt, y);
    };
  } else {
    models::GPT m(models::GPTConfig::from_json(config), seed);
    m->to(default_device());
    n.module = m.ptr();
    n.loss = [m](const at::Tensor& in, const at::Tensor& tgt, const at::Tensor& y) mutable {
      (void)tgt;  // causal LM: the targets are the inputs
      return models::gpt_loss(m, in, y);
    };
  }
  for (const auto& p : n.module->parameters()) n.num_params += p.numel();
  return n;
}

double validation_loss(Net& net, const Batches& val, int64_t batch, int64_t max_batches) {
  torch::NoGradGuard no_grad;
  bool was_training = net.module->is_training();
  net.module->eval();
  int64_t n = val.inputs.size(0);
  double total = 0;
  int64_t count = 0;
  for (int64_t start = 0; start < n && count < max_batches; start += batch, ++count) {
    int64_t end = std::min(n, start + batch);
    total += net.loss(val.inputs.slice(0, start, end), val.targets.slice(0, start, end),
                      val.labels.slice(0, start, end)).item<double>() * (end - start);
  }
  net.module->train(was_training);
  int64_t seen = std::min(n, batch * max_batches);
  return seen > 0 ? total / seen : -1.0;
}

}  // namespace

GeneratorTrainResult train_generator(const GeneratorTrainConfig& config,
                                     const data::TokenSet& train_set,
                                     const data::TokenSet* val_set,
                                     const cluster::CoarseMap* clusters,
                                     const std::string& run_dir, train::DistContext* dist) {
  config.validate();
  const std::string tok_hash = train_set.meta.value("tokenizer_hash", std::string());
  if (config.stage != GeneratorStage::Baseline) {
    CTFGEN_CHECK_USAGE(clusters, "the ", to_string(config.stage),
                       " stage needs a cluster file (--clusters)");
    clusters->check_tokenizer(tok_hash, "training tokens");
  }
  if (val_set)
    CTFGEN_CHECK(val_set->meta.value("tokenizer_hash", std::string()) == tok_hash,
                 "the validation tokens (tokenizer ",
                 val_set->meta.value("tokenizer_hash", std::string("?")).substr(0, 12),
                 "...) come from another tokenizer than the training tokens (", tok_hash.substr(0, 12),
                 "...)");
  const int64_t V = train_set.meta.at("codebook_size").get<int64_t>();
  const int64_t T = train_set.codes.size(1) * train_set.codes.size(2);
  const int64_t classes = std::max(num_classes_of(train_set), val_set ? num_classes_of(*val_set) : 0);
  nlohmann::json forced = {{"num_classes", classes}, {"block_size", T}};
  nlohmann::json model_config;
  if (config.stage == GeneratorStage::Aux) {
    forced["coarse_vocab"] = clusters->num_clusters();
    forced["fine_vocab"] = V;
    model_config = configured<models::AuxConfig>(config.preset, config.model_overrides, forced).to_json();
  } else {
    forced["vocab_size"] = config.stage == GeneratorStage::Coarse ? clusters->num_clusters() : V;
    model_config = configured<models::GPTConfig>(config.preset, config.model_overrides, forced).to_json();
  }

  Batches train = prepare(train_set, config.stage, clusters);
  std::optional<Batches> val;
  if (val_set && config.val_batches > 0) val = prepare(*val_set, config.stage, clusters);

  Net net = build_net(config.stage, model_config, config.trainer.seed);
  std::optional<Net> ema;
  if (config.ema_decay > 0) {
    ema = build_net(config.stage, model_config, config.trainer.seed);
    torch::NoGradGuard no_grad;
    auto src = net.module->parameters();
    auto dst = ema->module->parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
    ema->module->eval();
  }
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (auto& p : net.module->named_parameters()) params.emplace_back(p.key(), p.value());
  train::AdamW opt(params, config.optim);

  const std::string kind = config.stage == GeneratorStage::Aux ? "aux" : "gpt";
  nlohmann::json run_config = {{"stage", to_string(config.stage)}, {"model", model_config},
                               {"batch_size", config.batch_size}, {"optim", config.optim.to_json()},
                               {"ema_decay", config.ema_decay}, {"coarse_noise", config.coarse_noise}};
  train::Trainer trainer(config.trainer, run_dir, kind, run_config, dist);
  trainer.add_module("model", *net.module);
  if (ema) trainer.add_module("ema", *ema->module);
  trainer.add_optimizer("optim", opt);
  trainer.resume_if_present();

  log::info("training ", to_string(config.stage), " model (", net.num_params, " parameters, ",
            T, " tokens per image, ", train.inputs.size(0), " sequences) in ", run_dir);
  net.module->train();
  const int64_t N = train.inputs.size(0);
  const int64_t world = trainer.dist().world_size();
  const int64_t B = std::min(config.batch_size, N / world);  // per rank
  CTFGEN_CHECK(B >= 1, "training tokens: ", N, " sequences cannot feed ", world, " processes");
  const int64_t K = clusters ? clusters->num_clusters() : 0;
  const auto amp = nn::parse_amp(config.amp);
  // The sampling weights (the EMA when on) as a component file; only rank 0 writes.
  const auto save_model = [&](const std::string& path, int64_t steps, double val_loss) {
    nlohmann::json meta = {{"stage", to_string(config.stage)},
                           {"tokenizer_hash", tok_hash},
                           {"steps", steps},
                           {"seed", config.trainer.seed},
                           {"train_config", config.to_json()},
                           {"val_loss", val_loss},
                           {"ema", ema.has_value()}};
    if (clusters) meta["clusters_hash"] = io::hash_tensors({{"coarse_of", clusters->coarse_of()}});
    if (trainer.dist().is_main())
      io::save_component(path, kind, model_config, io::module_tensors(*(ema ? *ema : net).module),
                         meta);
  };
  std::set<int64_t> snapshots(config.snapshot_steps.begin(), config.snapshot_steps.end());
  auto t0 = std::chrono::steady_clock::now();
  int64_t steps_here = 0;
  double window_loss = 0;
  int64_t window_n = 0;
  double last_val = -1;
  while (!trainer.done()) {
    auto idx = trainer.next_batch(B, N);
    auto inputs = train.inputs.index_select(0, idx);
    if (config.coarse_noise > 0) {
      // Drawn for the global batch, then sharded: the same noise as one process would draw.
      const std::vector<int64_t> global_shape{world * B, inputs.size(1)};
      auto flip = trainer.shard(torch::rand(global_shape, trainer.generator()) < config.coarse_noise);
      auto noise = trainer.shard(torch::randint(K, global_shape, trainer.generator(), torch::kLong));
      inputs = torch::where(flip, noise, inputs);
    }
    at::Tensor loss;
    {
      // Batches stay on the CPU until here; the models move their inputs to their device.
      nn::AutocastGuard autocast(default_device().type(), amp);
      loss = net.loss(inputs, train.targets.index_select(0, idx), train.labels.index_select(0, idx));
    }
    opt.zero_grad();
    loss.backward();
    double lv = loss.item<double>();
    bool applied = trainer.step_optimizer(opt, lv);
    if (applied && ema) {
      torch::NoGradGuard no_grad;
      auto src = net.module->parameters();
      auto dst = ema->module->parameters();
      for (size_t i = 0; i < src.size(); ++i) dst[i].mul_(config.ema_decay).add_(src[i], 1.0 - config.ema_decay);
    }
    std::map<std::string, double> scalars{{"loss", lv}};
    const bool validate =
        val && config.val_every > 0 && (trainer.step() + 1) % config.val_every == 0;
    if (validate) {
      last_val = validation_loss(ema ? *ema : net, *val, B, config.val_batches);
      scalars["val_loss"] = last_val;
    }
    // Before end_step: a checkpoint written there at this step then always follows its snapshot.
    if (const int64_t done = trainer.step() + 1; snapshots.count(done)) {
      const std::string path = str_cat(run_dir, "/snapshots/step", done, ".safetensors");
      if (!fs::exists(path)) {
        const double v = val ? validation_loss(ema ? *ema : net, *val, B, config.val_batches) : -1.0;
        if (trainer.dist().is_main()) fs::ensure_dir(run_dir + "/snapshots");
        save_model(path, done, v);
        log::info("snapshot ", path, v >= 0 ? str_cat(" (val loss ", v, ")") : std::string());
      }
    }
    lv = trainer.end_step(scalars, /*always_log=*/validate).at("loss");  // mean over the ranks
    ++steps_here;
    window_loss += lv;
    ++window_n;
    if (window_n > 50) {
      window_loss = lv;
      window_n = 1;
    }
  }
  double secs = seconds_since(t0);
  trainer.finish();

  GeneratorTrainResult r;
  r.steps = trainer.step();
  r.num_params = net.num_params;
  r.final_loss = window_n ? window_loss / window_n : 0.0;
  r.tokens_per_s = secs > 0 ? steps_here * world * B * T / secs : 0.0;
  Net& final_net = ema ? *ema : net;
  if (val) r.val_loss = validation_loss(final_net, *val, B, config.val_batches);
  r.model_path = run_dir + "/model.safetensors";
  save_model(r.model_path, r.steps, r.val_loss);
  log::info("wrote ", r.model_path, " (", r.steps, " steps, final loss ", r.final_loss,
            r.val_loss >= 0 ? str_cat(", val loss ", r.val_loss) : std::string(), ")");
  return r;
}

}  // namespace ctfgen::pipeline
