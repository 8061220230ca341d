// libFuzzer target: arbitrary bytes into the .npy parser; parsed arrays must round-trip.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto t = ctfgen::io::parse_npy(data, size, "fuzz.npy");
    auto bytes = ctfgen::io::serialize_npy(t);
    auto u = ctfgen::io::parse_npy(bytes.data(), bytes.size(), "fuzz-roundtrip");
    if (u.sizes() != t.sizes() || u.scalar_type() != t.scalar_type()) __builtin_trap();
  } catch (const ctfgen::Error&) {
  }
  return 0;
}
