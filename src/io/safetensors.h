// safetensors reader and writer, written to the format's rules:
//   [u64 little-endian N][N bytes of UTF-8 JSON header][raw little-endian C-order tensor data]
// Header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//          "__metadata__": {"key": "string value"}}.
// The reader validates everything before it copies a byte: header size cap (100 MB), checked
// arithmetic, offsets contiguous from 0, exact file length, dtype/shape/size agreement, no
// duplicate names or keys, no unknown fields. Every error names the source and the tensor.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ctfgen::io {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  Metadata metadata;
  NamedTensors tensors;  // in file order (sorted by data offset)
  bool has(const std::string& name) const;
  /// The tensor called `name`; throws Error naming `source` if absent.
  const at::Tensor& get(const std::string& name) const;
  std::string source;  // file name used in error messages
};

constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

/// Parses a complete safetensors image held in memory. Tensors are copied out (CPU, owned).
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& source);
SafetensorsFile load_safetensors(const std::string& path);

/// Serialises tensors (any device; converted to contiguous CPU) plus metadata.
std::vector<uint8_t> serialize_safetensors(const NamedTensors& tensors, const Metadata& metadata);
/// Writes atomically (temporary file, fsync, rename).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata);

/// "F32" <-> at::kFloat etc. Supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL.
std::string dtype_to_safetensors(at::ScalarType t);
at::ScalarType dtype_from_safetensors(const std::string& s, const std::string& context);

}  // namespace ctfgen::io
