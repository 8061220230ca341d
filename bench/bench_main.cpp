// The one main() of ctfgen_bench_kernels (every bench/bench_*.cpp is linked into it). It sets up
// the BLAS kernels like the ctfgen program does, then runs on 1 thread unless
// CTFGEN_BENCH_THREADS says otherwise, so figures are comparable on a shared machine.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "core/runtime.h"

int main(int argc, char** argv) {
  ctfgen::runtime::prepare_process(argc, argv);
  const char* t = std::getenv("CTFGEN_BENCH_THREADS");
  ctfgen::runtime::set_threads(t ? std::atoi(t) : 1);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
