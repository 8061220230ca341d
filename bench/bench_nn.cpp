// Google Benchmark kernels for the GPT / aux models on the CPU (1 thread unless
// CTFGEN_BENCH_THREADS is set). Times are per call; see docs/generators.md for recorded figures.
//   build/bench/ctfgen_bench_kernels --benchmark_filter='Gpt|Aux'
// Models are built once per (preset, dtype) with random weights (the output head randomised too).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "core/rng.h"
#include "models/aux_model.h"
#include "models/gpt.h"
#include "nn/decode_kernels.h"

namespace {
using ctfgen::models::Aux;
using ctfgen::models::AuxConfig;
using ctfgen::models::GPT;
using ctfgen::models::GPTConfig;

const char* kPresets[] = {"base", "GPT-B"};

void set_threads() {
  const char* env = std::getenv("CTFGEN_BENCH_THREADS");
  torch::set_num_threads(env ? std::atoi(env) : 1);
}

// preset 0 = "base" (V 1024), 1 = "GPT-B" (V 16384); dtype 0 = fp32, 1 = bf16 weights.
GPT& gpt_model(int preset, int dtype) {
  static std::map<std::pair<int, int>, std::unique_ptr<GPT>> cache;
  auto& slot = cache[{preset, dtype}];
  if (!slot) {
    auto c = GPTConfig::preset(kPresets[preset]);
    c.block_size = 256;
    slot = std::make_unique<GPT>(c, 0);
    torch::NoGradGuard g;
    auto gen = ctfgen::make_generator(1);
    (*slot)->output->weight.normal_(0.0, 0.02, gen);
    (*slot)->eval();
    if (dtype == 1) (*slot)->to(torch::kBFloat16);
  }
  return *slot;
}

// One decode step of `rows` sequences at sequence position `pos` (cache preallocated and
// filled up to pos). Args: preset, rows, pos, dtype.
void BM_GptDecodeStep(benchmark::State& state) {
  set_threads();
  const int preset = int(state.range(0)), dtype = int(state.range(3));
  const int64_t rows = state.range(1), pos = state.range(2);
  GPT& m = gpt_model(preset, dtype);
  c10::InferenceMode guard;
  m->setup_cache(rows, m->param_dtype());
  auto labels = torch::zeros({rows}, torch::kLong);
  m->prefill(labels);
  if (pos > 1) m->extend(torch::zeros({rows, pos - 1}, torch::kLong), 1);  // fill [1, pos)
  auto tok = torch::ones({rows}, torch::kLong);
  for (auto _ : state) {
    auto logits = m->decode_step(tok, pos);  // rewrites position pos in place each iteration
    benchmark::DoNotOptimize(logits.data_ptr());
  }
  state.counters["rows"] = double(rows);
  state.counters["pos"] = double(pos);
  state.SetLabel(std::string(kPresets[preset]) + (dtype ? " bf16" : " fp32"));
}
BENCHMARK(BM_GptDecodeStep)
    ->ArgNames({"preset", "rows", "pos", "bf16"})
    ->Args({0, 1, 1, 0})
    ->Args({0, 2, 1, 0})
    ->Args({0, 2, 255, 0})
    ->Args({0, 16, 1, 0})
    ->Args({0, 32, 1, 0})
    ->Args({1, 1, 1, 0})
    ->Args({1, 2, 1, 0})
    ->Args({1, 2, 255, 0})
    ->Args({1, 16, 1, 0})
    ->Args({1, 32, 1, 0})
    ->Args({1, 2, 1, 1})
    ->Args({1, 32, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

// One bidirectional aux pass over 256 tokens for `batch` images. Args: preset, batch.
void BM_AuxPass(benchmark::State& state) {
  set_threads();
  const int preset = int(state.range(0));
  const int64_t B = state.range(1);
  auto c = AuxConfig::preset(kPresets[preset]);
  c.block_size = 256;
  Aux m(c, 0);
  m->eval();
  c10::InferenceMode guard;
  auto coarse = torch::zeros({B, 256}, torch::kLong);
  auto labels = torch::zeros({B}, torch::kLong);
  for (auto _ : state) {
    auto logits = m->forward(coarse, labels);
    benchmark::DoNotOptimize(logits.data_ptr());
  }
  state.SetLabel(kPresets[preset]);
}
BENCHMARK(BM_AuxPass)
    ->ArgNames({"preset", "batch"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

// The thin product of a decode step, x [rows, K] W^T with W [N, K]: the weight-streaming kernel
// (path 0) against torch::linear (path 1). bytes_per_second counts the weight bytes once, so it
// compares with the memory bandwidth (ctfgen info). Args: N, K, rows, path.
void BM_SmallRowsLinear(benchmark::State& state) {
  set_threads();
  const int64_t N = state.range(0), K = state.range(1), rows = state.range(2);
  auto gen = ctfgen::make_generator(2);
  auto w = torch::randn({N, K}, gen);
  auto x = torch::randn({rows, K}, gen);
  c10::InferenceMode guard;
  const bool kernel = state.range(3) == 0;
  if (kernel && !ctfgen::nn::small_rows_linear_supported(x, w)) {
    state.SkipWithError("small_rows_linear is not supported on this CPU");
    return;
  }
  for (auto _ : state)
    benchmark::DoNotOptimize(kernel ? ctfgen::nn::small_rows_linear(x, w) : torch::linear(x, w));
  state.SetBytesProcessed(state.iterations() * N * K * static_cast<int64_t>(sizeof(float)));
  state.SetLabel(kernel ? "kernel" : "torch::linear");
}
BENCHMARK(BM_SmallRowsLinear)
    ->ArgNames({"N", "K", "rows", "path"})
    ->ArgsProduct({{384, 16384}, {128}, {2}, {0, 1}})
    ->ArgsProduct({{768, 16384}, {256}, {2}, {0, 1}})
    ->ArgsProduct({{2304, 16384}, {768}, {1, 2, 4}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
