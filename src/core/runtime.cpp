#include "core/runtime.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "core/device.h"
#include "core/log.h"

namespace ctfgen::runtime {
namespace {

std::set<std::string> cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      std::string w;
      while (words >> w) flags.insert(w);
      break;
    }
  }
  return flags;
}

// Path of the first mapped object whose file name contains `needle`.
std::string mapped_library(const std::string& needle) {
  std::ifstream in("/proc/self/maps");
  std::string line;
  while (std::getline(in, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    std::string base = path.substr(path.rfind('/') + 1);
    if (base.find(needle) != std::string::npos) return path;
  }
  return "";
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

bool coretype_needs_avx512(const std::string& t) {
  static const std::set<std::string> k = {"SKYLAKEX", "COOPERLAKE", "SAPPHIRERAPIDS"};
  return k.count(upper(t)) > 0;
}

}  // namespace

std::string best_openblas_coretype() {
  auto f = cpu_flags();
  if (f.count("avx512f") && f.count("avx512bw") && f.count("avx512vl") && f.count("avx512dq"))
    return "SKYLAKEX";
  if (f.count("avx2") && f.count("fma")) return "HASWELL";
  return "";
}

bool tune_allocator() {
  static const bool tuned = [] {
    for (const char* v : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_",
                          "MALLOC_TOP_PAD_", "CTFGEN_KEEP_MALLOC"})
      if (std::getenv(v)) return false;
    // No mmap for large blocks: glibc caps the mmap threshold at 32 MiB, and a training step's
    // logits alone are larger (3,136 x 4,096 fp32 = 51 MB), so only M_MMAP_MAX = 0 keeps them
    // on the heap. (glibc still falls back to mmap if the heap cannot grow.)
    bool ok = mallopt(M_MMAP_MAX, 0) == 1;
    ok = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 && ok;
    ok = mallopt(M_TOP_PAD, 64 << 20) == 1 && ok;
    return ok;
  }();
  return tuned;
}

void prepare_process(int argc, char** argv) {
  (void)argc;
  tune_allocator();
  if (std::getenv("CTFGEN_BLAS_PREPARED")) return;  // we are the re-executed child
  setenv("CTFGEN_BLAS_PREPARED", "1", 1);
  std::string lib = mapped_library("libblas");
  std::string openblas = mapped_library("openblas");
  bool is_openblas = !openblas.empty() || lib.find("openblas") != std::string::npos;
  if (!is_openblas) return;
  std::string want = best_openblas_coretype();
  const char* preset = std::getenv("OPENBLAS_CORETYPE");
  if (preset && std::getenv("CTFGEN_KEEP_OPENBLAS_CORETYPE") &&
      !(coretype_needs_avx512(preset) && want != "SKYLAKEX"))
    return;
  if (want.empty() || (preset && upper(preset) == want)) return;
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  execv("/proc/self/exe", argv);
  // execv only returns on failure: carry on with whatever kernels OpenBLAS chose.
}

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

void set_threads(int n) {
  if (n <= 0) n = available_cpus();
  at::set_num_threads(n);
}

int threads() { return at::get_num_threads(); }

BlasInfo blas_info() {
  BlasInfo b;
  b.library = mapped_library("libblas");
  if (b.library.empty()) b.library = mapped_library("openblas");
  if (b.library.empty()) b.library = mapped_library("blis");
  if (b.library.empty()) b.library = mapped_library("mkl");
  using NameFn = char* (*)();
  if (auto fn = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) {
    b.name = "openblas";
    b.coretype = fn();
    if (auto cfg = reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, "openblas_get_config")))
      b.config = cfg();
  } else if (b.library.find("blis") != std::string::npos) {
    b.name = "blis";
  } else if (b.library.find("mkl") != std::string::npos) {
    b.name = "mkl";
  } else if (b.library.find("/blas/") != std::string::npos) {
    b.name = "reference";
  } else {
    b.name = b.library.empty() ? "none" : "unknown";
  }
  return b;
}

double measure_gemm_gflops(int n, int reps, c10::Device device, c10::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  auto a = torch::randn({n, n}).to(device, dtype);
  auto b = torch::randn({n, n}).to(device, dtype);
  auto c = torch::mm(a, b);  // warm-up
  c = torch::mm(a, b);
  synchronize(device);
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    c = torch::mm(a, b);
    synchronize(device);  // a GPU product returns before it is done
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
  }
  return 2.0 * n * static_cast<double>(n) * n / best / 1e9;
}

int parallel_loop_threads() {
  const int n = std::max(1, at::get_num_threads());
  std::vector<char> seen(static_cast<size_t>(n), 0);
  // One item per thread, grain 1: an OpenMP build gives each thread its own item.
  at::parallel_for(0, n, 1, [&](int64_t, int64_t) {
    const int tid = at::get_thread_num();
    if (tid >= 0 && tid < n) seen[static_cast<size_t>(tid)] = 1;
  });
  return static_cast<int>(std::count(seen.begin(), seen.end(), 1));
}

nlohmann::json describe(bool with_gemm) {
  nlohmann::json j;
  j["ctfgen_version"] = CTFGEN_VERSION;
  j["libtorch_version"] = TORCH_VERSION;
  j["threads"] = threads();
  j["parallel_loop_threads"] = parallel_loop_threads();
  j["available_cpus"] = available_cpus();
  j["allocator_tuned"] = tune_allocator();
  nlohmann::json devices = nlohmann::json::array({"cpu"});
  bool cuda = torch::cuda::is_available();
  if (cuda)
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i)
      devices.push_back("cuda:" + std::to_string(i));
  j["devices"] = devices;
  j["cuda_available"] = cuda;
  auto b = blas_info();
  j["blas"] = {{"name", b.name}, {"library", b.library}, {"coretype", b.coretype},
               {"config", b.config}};
  const char* ct = std::getenv("OPENBLAS_CORETYPE");
  j["blas"]["openblas_coretype_env"] = ct ? ct : "";
  j["blas"]["best_coretype_for_cpu"] = best_openblas_coretype();
  if (with_gemm) {
    j["gemm_fp32_1024_gflops"] = measure_gemm_gflops(1024, 10);
  }
  return j;
}

}  // namespace ctfgen::runtime
