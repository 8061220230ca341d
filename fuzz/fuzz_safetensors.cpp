// libFuzzer target: arbitrary bytes into the safetensors parser. Any outcome other than success
// or ctfgen::Error (a crash, a sanitizer report, another exception type) is a finding.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = ctfgen::io::parse_safetensors(data, size, "fuzz.safetensors");
    // Whatever parses must serialise and parse back to the same tensors.
    auto bytes = ctfgen::io::serialize_safetensors(f.tensors, f.metadata);
    auto g = ctfgen::io::parse_safetensors(bytes.data(), bytes.size(), "fuzz-roundtrip");
    if (g.tensors.size() != f.tensors.size() || g.metadata != f.metadata) __builtin_trap();
  } catch (const ctfgen::Error&) {
  }
  return 0;
}
