// libFuzzer target: arbitrary bytes as JSON into DatasetConfig::from_json + validate().
// JSON syntax errors are the JSON library's business and are skipped; everything that parses must
// either give a config or a ctfgen::Error (UsageError), and a valid config must round-trip.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    auto c = ctfgen::data::DatasetConfig::from_json(j);
    c.validate();
    auto back = ctfgen::data::DatasetConfig::from_json(c.to_json());
    if (back.to_json() != c.to_json()) __builtin_trap();
  } catch (const ctfgen::Error&) {
  }
  return 0;
}
