#include "core/memory.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>

#include "core/device.h"
#include "core/error.h"

namespace ctfgen::memory {
namespace memory_impl {

// Value in KiB of a "Name:   123 kB" line of /proc/self/status, or -1.
int64_t status_field_kib(const std::string& name) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) != 0) continue;
    try {
      return std::stoll(line.substr(name.size() + 1));
    } catch (const std::exception&) {
      return -1;
    }
  }
  return -1;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace memory_impl
using namespace memory_impl;

int64_t peak_rss_kib() { return status_field_kib("VmHWM"); }
int64_t current_rss_kib() { return status_field_kib("VmRSS"); }

Bandwidth measure_bandwidth(int64_t bytes, int reps, c10::Device device) {
  CTFGEN_CHECK(bytes >= (int64_t{1} << 20), "measure_bandwidth: bytes must be >= 1 MiB, got ",
               bytes);
  CTFGEN_CHECK(reps >= 1, "measure_bandwidth: reps must be >= 1, got ", reps);
  c10::InferenceMode guard;
  const int64_t n = bytes / 4;
  // Filled (not just allocated) so every page is resident before timing.
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  auto src = torch::ones({n}, opts);
  auto dst = torch::empty({n}, opts);
  dst.zero_();
  Bandwidth r;
  r.bytes = n * 4;
  r.reps = reps;
  double best_read = 1e30, best_copy = 1e30;
  volatile float sink = src.sum().item<float>();  // untimed pass
  dst.copy_(src);
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    sink = src.sum().item<float>();
    best_read = std::min(best_read, seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    dst.copy_(src);
    synchronize(device);  // a GPU copy returns before it is done
    best_copy = std::min(best_copy, seconds_since(t0));
  }
  (void)sink;
  r.read_gbs = static_cast<double>(r.bytes) / best_read / 1e9;
  r.copy_gbs = 2.0 * static_cast<double>(r.bytes) / best_copy / 1e9;
  return r;
}

}  // namespace ctfgen::memory
