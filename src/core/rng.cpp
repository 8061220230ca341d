#include "core/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <mutex>
#include <vector>

#include "core/device.h"
#include "core/error.h"

namespace ctfgen {
namespace {
// Dropout on a CUDA device draws from that device's default generator, not the CPU's: the
// global state then holds both (CPU bytes first), so a resumed CUDA run draws the same numbers
// (its arithmetic may still differ in the last bits: some CUDA backward kernels add atomically).
bool device_generator_in_use() { return default_device().is_cuda(); }
at::Generator device_generator() { return at::globalContext().defaultGenerator(default_device()); }

at::Tensor state_of(at::Generator gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}
}  // namespace

at::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

void seed_global(uint64_t seed) {
  std::vector<at::Generator> gens{at::detail::getDefaultCPUGenerator()};
  if (device_generator_in_use()) gens.push_back(device_generator());
  for (auto& gen : gens) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
  }
}

RngState capture_rng(at::Generator& gen) {
  RngState s;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    s.generator = gen.get_state();
  }
  s.global = state_of(at::detail::getDefaultCPUGenerator());
  if (device_generator_in_use()) s.global = torch::cat({s.global, state_of(device_generator())});
  return s;
}

void restore_rng(at::Generator& gen, const RngState& state) {
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.generator);
  }
  auto cpu = at::detail::getDefaultCPUGenerator();
  const int64_t cpu_bytes = state_of(cpu).numel();
  CTFGEN_CHECK(state.global.dim() == 1 && state.global.numel() >= cpu_bytes,
               "generator state: expected at least ", cpu_bytes, " bytes, got ",
               state.global.numel());
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu.set_state(state.global.narrow(0, 0, cpu_bytes).contiguous());
  }
  // A state saved on a CUDA run carries the device generator after the CPU bytes; restored when
  // this run is on CUDA too (a CPU run ignores it; a CUDA run resuming a CPU state keeps its seed).
  if (device_generator_in_use() && state.global.numel() > cpu_bytes) {
    auto dev = device_generator();
    std::lock_guard<std::mutex> lock(dev.mutex());
    dev.set_state(state.global.narrow(0, cpu_bytes, state.global.numel() - cpu_bytes).contiguous());
  }
}

at::Tensor epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  // Mix seed and epoch with splitmix64 so neighbouring epochs get unrelated orders.
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(epoch + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  auto gen = make_generator(z);
  return torch::randperm(n, gen, torch::kLong);
}

}  // namespace ctfgen
