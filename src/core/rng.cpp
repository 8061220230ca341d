#include "core/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <mutex>

namespace ctfgen {

at::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

void seed_global(uint64_t seed) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
}

RngState capture_rng(at::Generator& gen) {
  RngState s;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    s.generator = gen.get_state();
  }
  auto global = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(global.mutex());
  s.global = global.get_state();
  return s;
}

void restore_rng(at::Generator& gen, const RngState& state) {
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.generator);
  }
  auto global = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(global.mutex());
  global.set_state(state.global);
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
