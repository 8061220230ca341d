// Image files and pixel conversions.
//
// Layouts: image files are read to and written from uint8 tensors [H, W, C] (C = 1, 3 or 4,
// row-major, channels interleaved as in the file). Model-side images are float [C, H, W] or
// [B, C, H, W] in [-1, 1] (LlamaGen's convention); to_uint8/from_uint8 convert between the two
// value ranges without changing the layout.
//
// Decoding uses Debian's precompiled stb_image and accepts PNG and JPEG only (checked by magic
// bytes before stb sees the data); images larger than kMaxImageSide per side or kMaxImagePixels
// in total are rejected before any pixel buffer is allocated.
#pragma once
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ctfgen::io {

constexpr int64_t kMaxImageSide = 16384;
constexpr int64_t kMaxImagePixels = 64 * 1024 * 1024;

/// Decodes a PNG or JPEG held in memory to uint8 [H, W, channels]; channels is 1, 3 or 4 (stb
/// converts: grey is replicated, alpha is dropped or set to 255). Throws Error naming `source`
/// and stb's failure reason.
at::Tensor decode_image(const uint8_t* data, size_t size, const std::string& source, int channels);
/// Reads a PNG or JPEG file: uint8 [H, W, channels].
at::Tensor read_image(const std::string& path, int channels);

/// PNG bytes of a uint8 [H, W, C] image (C in {1, 2, 3, 4}).
std::vector<uint8_t> encode_png(const at::Tensor& hwc);
/// Writes a uint8 [H, W, C] image as PNG, atomically.
void write_png(const std::string& path, const at::Tensor& hwc);

/// float in [-1, 1] -> uint8: clamp(127.5 * x + 128, 0, 255), truncated (LlamaGen's rule).
/// Any layout ([C, H, W] or [B, C, H, W] typically); the layout is unchanged.
at::Tensor to_uint8(const at::Tensor& x);
/// uint8 -> float32 in [-1, 1]: (u / 255 - 0.5) / 0.5. Layout unchanged.
at::Tensor from_uint8(const at::Tensor& u);

/// [H, W, C] <-> [C, H, W] (contiguous copies).
at::Tensor hwc_to_chw(const at::Tensor& hwc);
at::Tensor chw_to_hwc(const at::Tensor& chw);

/// Bicubic (Catmull-Rom, a = -0.5 as PIL's BICUBIC) resize of uint8 [H, W, C] to [out_h, out_w, C].
at::Tensor resize_bicubic(const at::Tensor& hwc, int64_t out_h, int64_t out_w);
/// Box-filter downscale of uint8 [H, W, C] to [H / 2, W / 2, C] (integer division).
at::Tensor halve_box(const at::Tensor& hwc);
/// ADM / LlamaGen centre crop: while min(H, W) >= 2 * size halve with a box filter; then
/// bicubic-resize so the short side is `size` (each side round-half-even(side * size / short), as Python round()); then crop
/// the centre size x size square (offset (side - size) / 2, rounded down). uint8 [H, W, C] ->
/// [size, size, C].
at::Tensor center_crop_adm(const at::Tensor& hwc, int64_t size);

/// Composites uint8 [H, W, 4] (straight alpha) onto a solid background: uint8 [H, W, 3],
/// out = round((c * a + bg * (255 - a)) / 255).
at::Tensor composite_alpha(const at::Tensor& rgba, std::array<uint8_t, 3> background = {255, 255, 255});

}  // namespace ctfgen::io
