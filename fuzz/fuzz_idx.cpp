// libFuzzer target: arbitrary bytes (raw IDX or gzip) into the IDX parser.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto t = ctfgen::io::parse_idx(data, size, "fuzz.idx");
    auto raw = ctfgen::io::serialize_idx(t);
    auto u = ctfgen::io::parse_idx(raw.data(), raw.size(), "fuzz-roundtrip");
    if (u.sizes() != t.sizes()) __builtin_trap();
  } catch (const ctfgen::Error&) {
  }
  return 0;
}
