#include "core/device.h"

#include <torch/cuda.h>

#include <ATen/Context.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace ctfgen {
namespace {
std::atomic<int> g_type{static_cast<int>(c10::DeviceType::CPU)};
std::atomic<int> g_index{-1};

// A device index as written in "cuda:N" or LOCAL_RANK: 1 to 4 decimal digits.
bool is_index(const std::string& s) {
  return !s.empty() && s.size() <= 4 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  });
}
}  // namespace

c10::Device parse_device(const std::string& text) {
  if (text == "cpu") return c10::Device(c10::kCPU);
  const std::string prefix = "cuda";
  CTFGEN_CHECK_USAGE(text.compare(0, prefix.size(), prefix) == 0,
                     "device '", text, "': expected cpu, cuda or cuda:N");
  int64_t index = 0;
  // A plain "cuda" in a data-parallel run (torchrun sets LOCAL_RANK) means this rank's GPU.
  if (const char* lr = std::getenv("LOCAL_RANK"); text == prefix && lr && *lr) {
    const std::string v = lr;
    CTFGEN_CHECK_USAGE(is_index(v), "LOCAL_RANK='", v, "' is not a rank number");
    index = std::stoll(v);
  }
  if (text.size() > prefix.size()) {
    const std::string digits = text.substr(prefix.size() + 1);
    CTFGEN_CHECK_USAGE(text[prefix.size()] == ':' && is_index(digits), "device '", text,
                       "': expected cpu, cuda or cuda:N");
    index = std::stoll(digits);
  }
  CTFGEN_CHECK_USAGE(torch::cuda::is_available(), "device '", text,
                     "': this libtorch has no usable CUDA device (built without CUDA, or no GPU "
                     "or driver); use --device cpu, or build ctfgen against a CUDA-enabled "
                     "libtorch (docs/performance.md, GPU)");
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  CTFGEN_CHECK_USAGE(index < count, "device '", text, "': there are ", count,
                     " CUDA device(s) (cuda:0 to cuda:", count - 1, ")");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

c10::Device default_device() {
  return c10::Device(static_cast<c10::DeviceType>(g_type.load()),
                     static_cast<c10::DeviceIndex>(g_index.load()));
}

void set_default_device(c10::Device device) {
  g_type = static_cast<int>(device.type());
  g_index = device.index();
  if (device.is_cuda()) {
    // Results that match the CPU's within fp32 rounding and repeat run to run: no TF32 in
    // matrix products or convolutions, deterministic cuDNN algorithms, no autotuning. (Some
    // backward kernels still add with atomics, so training is not bitwise repeatable on CUDA.)
    auto& ctx = at::globalContext();
    ctx.setAllowTF32CuBLAS(false);
    ctx.setAllowTF32CuDNN(false);
    ctx.setDeterministicCuDNN(true);
    ctx.setBenchmarkCuDNN(false);
  }
}

c10::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  for (const auto& b : module.buffers()) return b.device();
  return c10::Device(c10::kCPU);
}

void synchronize(c10::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

}  // namespace ctfgen
