// IDX files (the MNIST / Fashion-MNIST container), raw or gzip-compressed.
//   [0x00 0x00 type ndim][ndim big-endian u32 sizes][product(sizes) bytes, row-major]
// Only type 0x08 (unsigned byte) is accepted, with 1 to 4 dimensions (labels use 0x00000801,
// images 0x00000803). The reader checks the magic, the dimension count, the element count
// (checked multiplication, capped at kMaxIdxBytes) and the exact length: a truncated file or
// trailing bytes are errors. Gzip input (detected by its 1f 8b signature) is inflated with zlib,
// stopping as soon as the output would exceed what the header declares.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace ctfgen::io {

constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 30;  // 1 GiB of decompressed payload

/// Parses IDX bytes (raw or gzip) held in memory -> uint8 tensor with the declared sizes.
/// Errors name `source`.
at::Tensor parse_idx(const uint8_t* data, size_t size, const std::string& source);
/// Reads an IDX file (.gz or raw).
at::Tensor load_idx(const std::string& path);

/// Raw (uncompressed) IDX bytes of a uint8 tensor with 1..4 dimensions (for tests and tools).
std::vector<uint8_t> serialize_idx(const at::Tensor& t);

}  // namespace ctfgen::io
