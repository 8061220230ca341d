// Clustering kernels on random unit vectors (D = 8, the VQ-16 codeword dimension):
// k-means (one restart, bounded iterations), balanced k-means and exact average linkage.
// The V = 16384 agglomerative figure in docs/clustering.md comes from
//   build/bench/ctfgen_bench_kernels --benchmark_filter='Agglomerative/16384'  (1 thread)
// (main() is in bench_main.cpp, shared by every bench_*.cpp.)
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include "cluster/agglomerative.h"
#include "cluster/kmeans.h"
#include "core/rng.h"

namespace {

at::Tensor unit_vectors(int64_t n, int64_t d) {
  auto gen = ctfgen::make_generator(0);
  return ctfgen::cluster::l2_normalize_rows(
      at::randn({n, d}, gen, at::TensorOptions().dtype(at::kFloat)));
}

void BM_KMeans(benchmark::State& state) {
  auto x = unit_vectors(state.range(0), 8);
  ctfgen::cluster::KMeansConfig c;
  c.k = state.range(1);
  c.restarts = 1;
  c.max_iter = 20;
  for (auto _ : state) benchmark::DoNotOptimize(ctfgen::cluster::kmeans(x, c).objective);
  state.counters["iterations_per_run"] = static_cast<double>(c.max_iter);
}
BENCHMARK(BM_KMeans)->Args({16384, 512})->Unit(benchmark::kMillisecond);

void BM_BalancedKMeans(benchmark::State& state) {
  auto x = unit_vectors(state.range(0), 8);
  ctfgen::cluster::KMeansConfig c;
  c.k = state.range(1);
  c.restarts = 1;
  c.max_iter = 5;
  for (auto _ : state) benchmark::DoNotOptimize(ctfgen::cluster::balanced_kmeans(x, c).objective);
}
BENCHMARK(BM_BalancedKMeans)->Args({16384, 512})->Unit(benchmark::kMillisecond);

void BM_Agglomerative(benchmark::State& state) {
  auto x = unit_vectors(state.range(0), 8);
  for (auto _ : state)
    benchmark::DoNotOptimize(ctfgen::cluster::average_linkage(x, {512}).cut_height);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  state.counters["peak_rss_MiB"] = static_cast<double>(ru.ru_maxrss) / 1024.0;  // whole process
}
BENCHMARK(BM_Agglomerative)->Arg(4096)->Arg(16384)->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace
