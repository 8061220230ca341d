// NumPy .npy files (format versions 1.0, 2.0 and 3.0), little-endian C-order arrays of
//   <f8 <f4 <f2 <i8 <i4 <i2 |i1 |u1 |b1   ('<u1', '<i1', '<b1' are accepted spellings too).
// Layout: "\x93NUMPY", major, minor (0), header length (u16 LE for 1.0, u32 LE for 2.0/3.0),
// header text = a Python dict literal {'descr': ..., 'fortran_order': False, 'shape': (..)}
// padded with spaces and ending in '\n', then the raw data.
// The reader parses the dict strictly (exactly those three keys, once each, Python literal
// syntax, optional trailing comma, only spaces/newlines after it), rejects fortran_order True,
// big-endian and other dtypes, caps the header at kMaxNpyHeader bytes, uses checked arithmetic
// and requires the exact file length. Bool arrays must hold only 0 and 1 bytes.
// The writer emits version 1.0 (2.0 when the header needs it) with the header padded so the data
// starts at a multiple of 64 bytes, as NumPy does.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ctfgen::io {

constexpr size_t kMaxNpyHeader = size_t{1} << 20;

/// Parses a complete .npy image held in memory; errors name `source`. Returns an owned CPU tensor.
at::Tensor parse_npy(const uint8_t* data, size_t size, const std::string& source);
at::Tensor load_npy(const std::string& path);

/// .npy bytes of t (any device; copied to contiguous CPU). Throws for unsupported dtypes (BF16...).
std::vector<uint8_t> serialize_npy(const at::Tensor& t);
/// Writes atomically (temporary file, fsync, rename).
void save_npy(const std::string& path, const at::Tensor& t);

}  // namespace ctfgen::io
