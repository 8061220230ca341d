// Process-level runtime setup: BLAS kernel selection, threads, and a description of what the
// process runs on (for `ctfgen info`, benchmark output and logs).
#pragma once
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>
#include <string>

namespace ctfgen::runtime {

/// Must be the first call in main(). If OpenBLAS is the loaded BLAS and the kernel type it will
/// pick is not the best safe one for this CPU (OpenBLAS 0.3.21 misdetects new CPUs and reads
/// OPENBLAS_CORETYPE only at load time), re-executes the program once with OPENBLAS_CORETYPE
/// set from the CPU flags. Set CTFGEN_KEEP_OPENBLAS_CORETYPE=1 to keep a preset value.
/// Returns normally when no re-exec is needed or possible.
void prepare_process(int argc, char** argv);

/// Keeps freed tensor memory in the process instead of handing it back to the kernel after
/// every operator: glibc serves every block from its heap (M_MMAP_MAX = 0), with a 1 GiB trim
/// threshold and a 64 MiB top pad. With glibc's defaults every large activation was a fresh
/// mmap whose pages faulted in again on each batch (20-30 % of the time of encoding and
/// training; 2.2x training throughput, docs/performance.md). Called by prepare_process(), so by
/// `ctfgen` and the test programs. Does nothing when the user set MALLOC_MMAP_THRESHOLD_,
/// MALLOC_MMAP_MAX_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or CTFGEN_KEEP_MALLOC.
/// Returns whether the settings are in effect (idempotent).
bool tune_allocator();

/// The OpenBLAS core type that suits this CPU ("SKYLAKEX", "HASWELL") or "" if none is known.
std::string best_openblas_coretype();

/// Number of CPUs this process may run on (sched_getaffinity), at least 1.
int available_cpus();

/// Sets intra-op threads for libtorch (and thereby OpenBLAS-openmp). n <= 0 means available_cpus().
void set_threads(int n);
int threads();

/// Threads an at::parallel_for in ctfgen's own code really spreads over (at most threads()):
/// 1 when ctfgen was compiled without OpenMP, whose loop template then runs the body inline
/// (cmake/OpenMP.cmake). `ctfgen info` reports it; a test checks it with 2 threads.
int parallel_loop_threads();

struct BlasInfo {
  std::string library;   // resolved path of the BLAS shared object in this process
  std::string name;      // "openblas", "blis", "reference", "mkl" or "unknown"
  std::string coretype;  // OpenBLAS kernel core (openblas_get_corename), else ""
  std::string config;    // OpenBLAS build config string, else ""
};
BlasInfo blas_info();

/// Measures n x n x n matmul throughput in GFLOP/s (best of `reps` after two untimed products),
/// on the CPU in fp32 by default, or on `device` in `dtype` (the timer waits for the device).
double measure_gemm_gflops(int n = 1024, int reps = 10, c10::Device device = c10::Device(c10::kCPU),
                           c10::ScalarType dtype = c10::kFloat);

/// Everything `ctfgen info` prints. with_gemm adds a measured GEMM figure.
nlohmann::json describe(bool with_gemm);

}  // namespace ctfgen::runtime
