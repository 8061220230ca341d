#include "bench_support/cases.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "nn/decode_kernels.h"
#include "sampling/ar_sampler.h"
#include "sampling/fine_sampler.h"
#include "train/optim.h"

namespace ctfgen::bench {
namespace cases_impl {

using Clock = std::chrono::steady_clock;

// Seconds since t0 once the device's queued work is done (CUDA runs asynchronously).
double since(Clock::time_point t0) {
  synchronize(default_device());
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A model of a timed case on the process's device in the bench's weight dtype.
template <typename Holder>
Holder placed(Holder m, const BenchConfig& c) {
  m->to(default_device(), c.weight_dtype());
  return m;
}

at::TensorOptions on_device(at::ScalarType dtype) {
  return at::TensorOptions().dtype(dtype).device(default_device());
}

// Matrix-product peak of the device: on a GPU in the weights' dtype with larger matrices (1024^3
// is launch-bound there).
double device_gemm_gflops(at::ScalarType dtype) {
  return default_device().is_cuda() ? runtime::measure_gemm_gflops(8192, 10, default_device(), dtype)
                                    : runtime::measure_gemm_gflops(1024, 10);
}

double median(std::vector<double> v) {
  CTFGEN_CHECK(!v.empty(), "median of nothing");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

at::Tensor random_labels(int64_t n, int64_t num_classes, at::Generator& gen) {
  return torch::randint(0, num_classes, {n}, gen, torch::kLong);
}

// Untimed decode steps at the case's batch before timing: allocates the KV cache, starts the
// OpenMP pool and warms the allocator with the same shapes as the timed run.
void warm_up_ar(models::GPT& gpt, const at::Tensor& labels, bool guidance, int steps) {
  c10::InferenceMode guard;
  gpt->eval();
  auto lab = labels.to(default_device());
  if (guidance) lab = torch::cat({lab, torch::full_like(lab, gpt->config().num_classes)});
  gpt->setup_cache(lab.size(0), gpt->param_dtype());
  gpt->prefill(lab);
  const int64_t n = std::min<int64_t>(steps, gpt->config().block_size);
  auto tok = torch::zeros({lab.size(0)}, lab.options());
  for (int64_t t = 1; t <= n; ++t) gpt->decode_step(tok, t);
}

nlohmann::json base_result(const CaseSpec& s) {
  return {{"case", s.name},
          {"preset", s.preset},
          {"threads", runtime::threads()},
          {"device", default_device().str()},
          {"dtype", s.config.dtype}};
}

void finish_result(nlohmann::json& r) { r["peak_rss_kib"] = memory::peak_rss_kib(); }

// sample: {seconds, stage1_s, stage2_s, images_per_s, params_stage1, params_stage2}
nlohmann::json case_sample(const CaseSpec& s) {
  const auto& c = s.config;
  const bool ctf = s.method == "ctf";
  auto gen = make_generator(c.seed + 1);
  models::GPT gpt = placed(
      !s.model_file.empty()
          ? load_gpt(s.model_file)
          : random_gpt(gpt_config(c, s.preset, ctf ? c.coarse_vocab : c.vocab), c.seed),
      c);
  models::Aux aux{nullptr};
  if (ctf) aux = placed(random_aux(aux_config(c, s.preset), c.seed + 7), c);
  auto labels = random_labels(s.batch, gpt->config().num_classes, gen).to(default_device());
  const auto ar = c.ar_sampling(), fine = c.aux_sampling();
  warm_up_ar(gpt, labels, ar.guidance(), c.warmup_steps);
  if (ctf && c.warmup_steps > 0) {  // one image through stage 2
    auto coarse = torch::zeros({1, gpt->config().block_size}, on_device(torch::kLong));
    sampling::sample_fine(aux, coarse, labels.narrow(0, 0, 1), fine, gen);
  }
  auto t0 = Clock::now();
  auto tokens = sampling::sample_ar(gpt, labels, ar, gen);
  const double stage1 = since(t0);
  double stage2 = 0;
  if (ctf) {
    auto t1 = Clock::now();
    tokens = sampling::sample_fine(aux, tokens, labels, fine, gen);
    stage2 = since(t1);
  }
  const double total = stage1 + stage2;
  auto r = base_result(s);
  r["method"] = s.method;
  r["batch"] = s.batch;
  r["seconds"] = total;
  r["stage1_s"] = stage1;
  r["stage2_s"] = stage2;
  r["images_per_s"] = static_cast<double>(s.batch) / total;
  r["params_stage1"] = gpt->count_params();
  r["params_stage2"] = ctf ? aux->count_params() : 0;
  r["tokens_checksum"] = tokens.sum().item<int64_t>();
  finish_result(r);
  return r;
}

// export: {model_file, check_file, labels, num_params}
nlohmann::json case_export(const CaseSpec& s) {
  const auto& c = s.config;
  auto cfg = gpt_config(c, s.preset, c.vocab);
  auto gpt = random_gpt(cfg, c.seed);
  const std::string model_file = s.out_dir + "/gpt_" + s.preset + ".safetensors";
  const std::string check_file = s.out_dir + "/check_" + s.preset + ".safetensors";
  io::save_component(model_file, "gpt", cfg.to_json(), io::module_tensors(*gpt),
                     {{"written_by", "ctfgen bench"}, {"seed", c.seed}});
  auto gen = make_generator(c.seed + 3);
  auto tokens = torch::randint(0, cfg.vocab_size, {2, cfg.block_size}, gen, torch::kLong);
  auto labels = random_labels(2, cfg.num_classes, gen);
  at::Tensor logits;
  {
    c10::InferenceMode guard;
    logits = gpt->forward_train(tokens, labels);
  }
  auto greedy = c.ar_sampling();
  greedy.argmax = true;
  greedy.temperature = 1.0;
  greedy.top_k = 0;
  auto greedy_tokens = sampling::sample_ar(gpt, labels, greedy, gen);
  io::save_safetensors(check_file, {{"input.tokens", tokens},
                                    {"input.labels", labels},
                                    {"logits", logits},
                                    {"greedy.tokens", greedy_tokens}},
                       {});
  auto r = base_result(s);
  r["model_file"] = model_file;
  r["check_file"] = check_file;
  r["labels"] = std::vector<int64_t>{labels[0].item<int64_t>(), labels[1].item<int64_t>()};
  r["num_params"] = gpt->count_params();
  finish_result(r);
  return r;
}

// train: {method, batch, tokens_per_step, seconds (list), tokens_per_s, loss}
nlohmann::json case_train(const CaseSpec& s) {
  const auto& c = s.config;
  models::GPT gpt = !s.model_file.empty() ? load_gpt(s.model_file)
                                          : random_gpt(gpt_config(c, s.preset, c.vocab), c.seed);
  gpt->to(default_device());  // training stays fp32 whatever the bench's dtype
  const auto& cfg = gpt->config();
  gpt->train();
  seed_global(c.seed);  // dropout draws
  auto gen = make_generator(c.seed + 5);
  const int64_t B = c.train_batch, T = cfg.block_size;
  auto tokens = torch::randint(0, cfg.vocab_size, {B, T}, gen, torch::kLong).to(default_device());
  auto labels = random_labels(B, cfg.num_classes, gen).to(default_device());
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& p : gpt->named_parameters()) params.emplace_back(p.key(), p.value());
  train::OptimConfig oc;  // AdamW lr 1e-4, betas (0.9, 0.95), decay 0.05 on dim >= 2, clip 1.0
  train::AdamW opt(params, oc);
  auto step = [&] {
    opt.zero_grad();
    at::Tensor loss;
    if (s.method == "plain-head") {
      auto logits = gpt->forward_train(tokens, labels);  // [B, T, V] float32, kept for backward
      loss = torch::nn::functional::cross_entropy(logits.reshape({B * T, -1}), tokens.reshape({-1}));
    } else {
      loss = models::gpt_loss(gpt, tokens, labels);
    }
    loss.backward();
    opt.step(oc.lr);
    return loss.item<double>();
  };
  step();  // untimed
  std::vector<double> times;
  double loss = 0;
  for (int i = 0; i < c.train_iters; ++i) {
    auto t0 = Clock::now();
    loss = step();
    times.push_back(since(t0));
  }
  auto r = base_result(s);
  r["method"] = s.method;
  r["batch"] = B;
  r["tokens_per_step"] = B * T;
  r["seconds"] = times;
  r["tokens_per_s"] = static_cast<double>(B * T) / *std::min_element(times.begin(), times.end());
  r["loss"] = loss;
  finish_result(r);
  return r;
}

// decode: {bandwidth: {read_gbs, copy_gbs, bytes}, rows, weight_bytes, positions: [{pos,
// median_ms, min_ms, kv_bytes, floor_ms, ratio}]}
nlohmann::json case_decode(const CaseSpec& s) {
  const auto& c = s.config;
  // The bandwidth of the memory the weights live in (a GPU's when the bench runs on one).
  auto bw = memory::measure_bandwidth(c.bandwidth_mib << 20, 5, default_device());
  auto cfg = gpt_config(c, s.preset, c.vocab);
  auto gpt = placed(random_gpt(cfg, c.seed), c);
  const int64_t rows = (c.ar_sampling().guidance() ? 2 : 1) * s.batch;  // batch images
  std::vector<int64_t> positions = c.positions;
  std::sort(positions.begin(), positions.end());
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
  std::vector<std::vector<double>> ms(positions.size());
  c10::InferenceMode guard;
  gpt->setup_cache(rows, gpt->param_dtype());
  auto labels = torch::zeros({rows}, on_device(torch::kLong));
  auto tok = torch::ones({rows}, on_device(torch::kLong));
  warm_up_ar(gpt, labels.narrow(0, 0, s.batch), rows > s.batch, c.warmup_steps);
  // Rounds interleave the positions, so drifting machine load hits them alike. Each round fills
  // the cache up to a position with one chunked pass, then times decode steps there (each step
  // rewrites that position in place).
  for (int round = 0; round < c.repeats; ++round) {
    gpt->prefill(labels);
    int64_t filled = 1;
    for (size_t i = 0; i < positions.size(); ++i) {
      const int64_t p = positions[i];
      if (p > filled) gpt->extend(torch::zeros({rows, p - filled}, on_device(torch::kLong)), filled);
      for (int k = 0; k < c.decode_iters; ++k) {
        auto t0 = Clock::now();
        auto logits = gpt->decode_step(tok, p, /*check_range=*/false);  // as sample_ar runs it
        ms[i].push_back(since(t0) * 1e3);
      }
      filled = p + 1;
    }
  }
  const int64_t wbytes = decode_weight_bytes(gpt, rows);
  const int64_t elem = c10::elementSize(gpt->param_dtype());
  nlohmann::json pos = nlohmann::json::array();
  for (size_t i = 0; i < positions.size(); ++i) {
    const int64_t kv = decode_kv_bytes(cfg, rows, positions[i], elem);
    const double floor_ms = static_cast<double>(wbytes + kv) / (bw.read_gbs * 1e9) * 1e3;
    const double med = median(ms[i]);
    pos.push_back({{"pos", positions[i]},
                   {"median_ms", med},
                   {"min_ms", *std::min_element(ms[i].begin(), ms[i].end())},
                   {"samples", ms[i].size()},
                   {"kv_bytes", kv},
                   {"floor_ms", floor_ms},
                   {"ratio", med / floor_ms}});
  }
  auto r = base_result(s);
  r["bandwidth"] = {{"read_gbs", bw.read_gbs}, {"copy_gbs", bw.copy_gbs}, {"bytes", bw.bytes}};
  r["rows"] = rows;
  r["weight_bytes"] = wbytes;
  r["weight_dtype"] = c10::toString(gpt->param_dtype());
  r["num_params"] = gpt->count_params();
  r["positions"] = pos;
  finish_result(r);
  return r;
}

// forward: {batch, seq, gflop, seconds (list), gflops (best), gemm_peak_gflops, fraction}
nlohmann::json case_forward(const CaseSpec& s) {
  const auto& c = s.config;
  const double peak = device_gemm_gflops(c.weight_dtype());
  auto cfg = gpt_config(c, s.preset, c.vocab);
  auto gpt = placed(random_gpt(cfg, c.seed), c);
  auto gen = make_generator(c.seed + 9);
  const int64_t B = c.forward_batch, n = cfg.block_size - 1;
  auto tokens = torch::randint(0, cfg.vocab_size, {B, n}, gen, torch::kLong).to(default_device());
  auto labels = random_labels(B, cfg.num_classes, gen).to(default_device());
  c10::InferenceMode guard;
  gpt->forward_full(tokens.narrow(0, 0, 1), labels.narrow(0, 0, 1));  // warm-up, small
  std::vector<double> times;
  for (int i = 0; i < c.repeats; ++i) {
    auto t0 = Clock::now();
    auto logits = gpt->forward_full(tokens, labels);
    times.push_back(since(t0));
  }
  const double flops = forward_flops(cfg, B, n + 1);
  const double best = *std::min_element(times.begin(), times.end());
  auto r = base_result(s);
  r["batch"] = B;
  r["seq"] = n + 1;
  r["gflop"] = flops / 1e9;
  r["seconds"] = times;
  r["gflops"] = flops / best / 1e9;
  r["gemm_peak_gflops"] = peak;
  r["fraction"] = flops / best / 1e9 / peak;
  r["num_params"] = gpt->count_params();
  finish_result(r);
  return r;
}

}  // namespace cases_impl
using namespace cases_impl;

models::GPTConfig gpt_config(const BenchConfig& config, const std::string& preset, int64_t vocab) {
  auto c = models::GPTConfig::preset(preset);
  c.vocab_size = vocab;
  c.block_size = config.tokens();
  c.validate();
  return c;
}

models::AuxConfig aux_config(const BenchConfig& config, const std::string& preset) {
  const auto gpt = gpt_config(config, preset, config.coarse_vocab);
  auto c = models::AuxConfig::preset(config.aux_preset == "same" ? preset : config.aux_preset);
  c.coarse_vocab = config.coarse_vocab;
  c.fine_vocab = config.vocab;
  c.block_size = gpt.block_size;
  c.num_classes = gpt.num_classes;
  c.validate();
  return c;
}

namespace cases_impl {
/// Shared by random_gpt and random_aux: both module holders have a config-and-seed constructor
/// and a zero-initialised `output` head.
template <typename Holder, typename Config>
Holder random_model(const Config& config, uint64_t seed) {
  Holder m(config, seed);
  torch::NoGradGuard no_grad;
  auto gen = make_generator(seed + 1000);
  m->output->weight.normal_(0.0, config.initializer_range, gen);
  m->eval();
  return m;
}
}  // namespace cases_impl

models::GPT random_gpt(const models::GPTConfig& config, uint64_t seed) {
  return random_model<models::GPT>(config, seed);
}

models::Aux random_aux(const models::AuxConfig& config, uint64_t seed) {
  return random_model<models::Aux>(config, seed);
}

models::GPT load_gpt(const std::string& path) {
  auto comp = io::load_component(path, "gpt");
  models::GPT m(models::GPTConfig::from_json(comp.config), 0);
  io::load_module_strict(*m, comp.file);
  m->eval();
  return m;
}

int64_t matmul_params(const models::TrunkConfig& t, int64_t out_vocab) {
  return t.n_layer * (4 * t.dim * t.dim + 3 * t.dim * t.ffn_hidden()) + t.dim * out_vocab;
}

int64_t decode_weight_bytes(const models::GPT& model, int64_t rows) {
  int64_t bytes = 0;
  for (const auto& p : model->named_parameters()) {
    const auto& name = p.key();
    const auto& w = p.value();
    if (name.rfind("tok_embeddings.", 0) == 0)  // one looked-up row per sequence
      bytes += rows * w.size(1) * static_cast<int64_t>(w.element_size());
    else if (name.rfind("cls_embedding.", 0) == 0)  // read by the prefill only
      continue;
    else
      bytes += static_cast<int64_t>(w.nbytes());
  }
  return bytes;
}

int64_t decode_kv_bytes(const models::GPTConfig& config, int64_t rows, int64_t pos,
                        int64_t elem_bytes) {
  return rows * config.n_layer * 2 * (pos + 1) * config.dim * elem_bytes;
}

double forward_flops(const models::GPTConfig& c, int64_t B, int64_t S) {
  const double tokens = static_cast<double>(B) * S;
  return 2.0 * static_cast<double>(matmul_params(c, c.vocab_size)) * tokens +
         4.0 * c.n_layer * tokens * S * c.dim;
}

nlohmann::json run_case(const CaseSpec& spec) {
  spec.validate();
  nn::set_decode_kernels_enabled(!spec.config.plain_kernels);
  if (spec.name == "sample") return case_sample(spec);
  if (spec.name == "export") return case_export(spec);
  if (spec.name == "train") return case_train(spec);
  if (spec.name == "decode") return case_decode(spec);
  return case_forward(spec);
}

}  // namespace ctfgen::bench
