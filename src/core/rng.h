// The only source of randomness: an explicit seeded CPU generator passed to everything random.
// Its draws are made on the CPU and copied to the device that needs them (core/device.h), so a
// seed means the same numbers on every device. Dropout inside libtorch modules uses the global
// default generator (the CPU's, and the CUDA device's when the process runs on CUDA), so
// seed_global() also seeds those, and RngState captures them for exact resume.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ctfgen {

/// A fresh CPU generator seeded with `seed`.
at::Generator make_generator(uint64_t seed);

/// Seeds libtorch's global CPU generator (used by dropout and other module-internal randomness)
/// and, when default_device() is CUDA, that device's default generator.
void seed_global(uint64_t seed);

/// Byte tensors holding the state of `gen` and of the global generators: `global` is the CPU
/// generator's state followed, on a CUDA run, by the CUDA device generator's.
struct RngState {
  at::Tensor generator;
  at::Tensor global;
};
RngState capture_rng(at::Generator& gen);
void restore_rng(at::Generator& gen, const RngState& state);

/// A deterministic permutation of [0, n) for (seed, epoch): the data order of one epoch.
at::Tensor epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace ctfgen
