// The one main() of ctfgen_bench_kernels (every bench/bench_*.cpp is linked into it).
// Threads: libtorch's intra-op pool defaults to all CPUs; set OMP_NUM_THREADS=1 for 1 thread.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
