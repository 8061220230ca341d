// Component files: every model ctfgen saves is one safetensors file whose __metadata__ holds
//   "format": "ctfgen", "format_version": "1", "kind": "vq" | "gpt" | "aux" | "clusters" | ...,
//   "config": <the component's config as JSON>, "meta": <JSON: step, seed, inputs' hashes, ...>.
// Module tensors are stored under their registered names (LlamaGen's names where one exists).
// Training checkpoints use the same container with prefixes "model.", "optim.", "ema.", "rng.".
#pragma once
#include <torch/nn/module.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "io/safetensors.h"

namespace ctfgen::io {

constexpr int kFormatVersion = 1;

struct Component {
  std::string path;
  std::string kind;
  nlohmann::json config;
  nlohmann::json meta;
  SafetensorsFile file;
};

/// Parameters then buffers of `module`, named as named_parameters()/named_buffers() give them,
/// each prefixed with `prefix`.
NamedTensors module_tensors(const torch::nn::Module& module, const std::string& prefix = "");

/// Writes a component file atomically.
void save_component(const std::string& path, const std::string& kind,
                    const nlohmann::json& config, const NamedTensors& tensors,
                    const nlohmann::json& meta = nlohmann::json::object());

/// Reads and checks a component file. expected_kind "" accepts any kind. Throws Error naming the
/// file when it is not a ctfgen component, has a newer format version or another kind.
Component load_component(const std::string& path, const std::string& expected_kind = "");

/// Copies tensors named `prefix + name` into the module's parameters and buffers. Strict: one
/// Error lists every missing, unexpected (under the prefix, minus `ignore`) and mis-shaped
/// tensor; a floating-point tensor holding NaN or Inf is refused. dtypes are converted to the
/// module's.
void load_module_strict(torch::nn::Module& module, const SafetensorsFile& file,
                        const std::string& prefix = "",
                        const std::set<std::string>& ignore = {});

}  // namespace ctfgen::io
