// libFuzzer target: arbitrary bytes into the PyTorch-checkpoint importer (ZIP reader + restricted
// unpickler + tensor materialisation) and, separately, straight into the unpickler. Any outcome
// other than success or ctfgen::Error (a crash, a sanitizer report, another exception type, a
// leak) is a finding. The first byte picks the mode so one corpus covers both:
//   even: the bytes are a .pt archive; odd: the remaining bytes are a data.pkl.
// Build and run: see docs/llamagen_import.md ("Fuzzing").
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/pickle_reader.h"
#include "io/torch_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // Small limits keep each input cheap; the checks are the same at any limit.
  ctfgen::io::TorchReadOptions opt;
  opt.limits.max_input_bytes = 1 << 20;
  opt.limits.max_stack = 10'000;
  opt.limits.max_memo = 10'000;
  opt.limits.max_values = 100'000;
  try {
    if (data[0] % 2 == 0) {
      auto sd = ctfgen::io::read_torch_state_dict_from_memory(data + 1, size - 1, "fuzz.pt", opt);
      for (const auto& [name, t] : sd.tensors)
        if (!t.is_contiguous()) __builtin_trap();  // the reader promises contiguous tensors
    } else {
      auto doc = ctfgen::io::pickle::parse(data + 1, size - 1, "fuzz.pkl", opt.limits);
      (void)doc.describe(doc.root);
    }
  } catch (const ctfgen::Error&) {
  }
  return 0;
}
