#include "io/image_io.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>
#include <torch/torch.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/fs.h"
#include "core/shape.h"

namespace ctfgen::io {
namespace {

bool is_png(const uint8_t* d, size_t n) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  return n >= 8 && std::memcmp(d, sig, 8) == 0;
}

bool is_jpeg(const uint8_t* d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

const char* stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown reason";
}

void check_hwc_u8(const at::Tensor& t, const char* what) {
  CTFGEN_CHECK(t.defined() && t.dim() == 3 && t.scalar_type() == at::kByte, what,
               ": expected a uint8 [H, W, C] image, got ",
               t.defined() ? str_cat(c10::toString(t.scalar_type()), " ", shape_str(t.sizes())) : "undefined");
  CTFGEN_CHECK(t.size(2) >= 1 && t.size(2) <= 4, what, ": channel count must be 1..4, got ", t.size(2));
  CTFGEN_CHECK(t.size(0) > 0 && t.size(1) > 0, what, ": empty image ", shape_str(t.sizes()));
  CTFGEN_CHECK(t.size(0) <= kMaxImageSide && t.size(1) <= kMaxImageSide, what, ": image ",
               shape_str(t.sizes()), " exceeds ", kMaxImageSide, " pixels per side");
}

}  // namespace

at::Tensor decode_image(const uint8_t* data, size_t size, const std::string& source, int channels) {
  CTFGEN_CHECK(channels == 1 || channels == 3 || channels == 4, source,
               ": requested channel count must be 1, 3 or 4, got ", channels);
  CTFGEN_CHECK(is_png(data, size) || is_jpeg(data, size), source,
               ": not a PNG or JPEG file (unrecognised signature)");
  CTFGEN_CHECK(size <= static_cast<size_t>(INT_MAX), source, ": image file too large (", size, " bytes)");
  int w = 0, h = 0, c = 0;
  const int len = static_cast<int>(size);
  const bool png = is_png(data, size);
  const char* format = png ? "PNG" : "JPEG";
  if (png) {
    // Read the size from IHDR ourselves: stb tries every format's probe in turn, so its failure
    // reason for a PNG is often another format's ("no SOI", "unknown image type").
    CTFGEN_CHECK(size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0, source,
                 ": truncated or corrupt PNG header (no IHDR chunk)");
    auto be32 = [&](size_t at) {
      return (uint32_t{data[at]} << 24) | (uint32_t{data[at + 1]} << 16) |
             (uint32_t{data[at + 2]} << 8) | uint32_t{data[at + 3]};
    };
    const uint32_t pw = be32(16), ph = be32(20);
    CTFGEN_CHECK(pw > 0 && ph > 0 && pw <= kMaxImageSide && ph <= kMaxImageSide &&
                     uint64_t{pw} * ph <= static_cast<uint64_t>(kMaxImagePixels),
                 source, ": image size ", pw, "x", ph, " exceeds the limit (", kMaxImageSide,
                 " per side, ", kMaxImagePixels, " pixels)");
  }
  CTFGEN_CHECK(stbi_info_from_memory(data, len, &w, &h, &c), source, ": cannot decode ", format,
               " image: corrupt or truncated data", png ? "" : str_cat(" (", stb_reason(), ")"));
  CTFGEN_CHECK(w > 0 && h > 0 && w <= kMaxImageSide && h <= kMaxImageSide &&
                   int64_t{w} * h <= kMaxImagePixels,
               source, ": image size ", w, "x", h, " exceeds the limit (", kMaxImageSide,
               " per side, ", kMaxImagePixels, " pixels)");
  std::unique_ptr<stbi_uc, void (*)(void*)> pix(stbi_load_from_memory(data, len, &w, &h, &c, channels),
                                                &stbi_image_free);
  CTFGEN_CHECK(pix, source, ": cannot decode ", format, " image: corrupt or truncated data",
               png ? "" : str_cat(" (", stb_reason(), ")"));
  auto out = torch::empty({h, w, channels}, torch::kUInt8);
  std::memcpy(out.data_ptr<uint8_t>(), pix.get(), static_cast<size_t>(h) * w * channels);
  return out;
}

at::Tensor read_image(const std::string& path, int channels) {
  auto bytes = fs::read_file(path);
  return decode_image(bytes.data(), bytes.size(), path, channels);
}

std::vector<uint8_t> encode_png(const at::Tensor& hwc_in) {
  check_hwc_u8(hwc_in, "encode_png");
  auto hwc = hwc_in.to(torch::kCPU).contiguous();
  const int h = static_cast<int>(hwc.size(0)), w = static_cast<int>(hwc.size(1)),
            c = static_cast<int>(hwc.size(2));
  std::vector<uint8_t> out;
  auto append = [](void* ctx, void* data, int size) {
    auto* v = static_cast<std::vector<uint8_t>*>(ctx);
    v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  int ok = stbi_write_png_to_func(append, &out, w, h, c, hwc.data_ptr<uint8_t>(), w * c);
  CTFGEN_CHECK(ok && !out.empty(), "encode_png: PNG encoding of a ", shape_str(hwc.sizes()), " image failed");
  return out;
}

void write_png(const std::string& path, const at::Tensor& hwc) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(hwc);
  } catch (const Error& e) {
    throw Error(str_cat(path, ": ", e.what()));
  }
  fs::atomic_write(path, bytes.data(), bytes.size());
}

at::Tensor to_uint8(const at::Tensor& x) {
  CTFGEN_CHECK(x.defined() && x.is_floating_point(), "to_uint8: expected a floating-point tensor");
  // Truncation after clamping to [0, 255] equals floor for non-negative values.
  return (x.to(torch::kFloat) * 127.5f + 128.0f).clamp(0.0, 255.0).to(torch::kUInt8);
}

at::Tensor from_uint8(const at::Tensor& u) {
  CTFGEN_CHECK(u.defined() && u.scalar_type() == at::kByte, "from_uint8: expected a uint8 tensor");
  // u / 127.5 - 1 equals (u / 255 - 0.5) / 0.5 bit for bit in float32 (scaling by 2 is exact);
  // in place, so a 60k-image dataset needs one float buffer, not four.
  return u.to(torch::kFloat).div_(127.5f).sub_(1.0f);
}

at::Tensor hwc_to_chw(const at::Tensor& hwc) {
  CTFGEN_CHECK(hwc.dim() == 3, "hwc_to_chw: expected [H, W, C], got ", shape_str(hwc.sizes()));
  return hwc.permute({2, 0, 1}).contiguous();
}

at::Tensor chw_to_hwc(const at::Tensor& chw) {
  CTFGEN_CHECK(chw.dim() == 3, "chw_to_hwc: expected [C, H, W], got ", shape_str(chw.sizes()));
  return chw.permute({1, 2, 0}).contiguous();
}

namespace {
at::Tensor stb_resize(const at::Tensor& hwc_in, int64_t out_h, int64_t out_w, stbir_filter filter,
                      const char* what) {
  check_hwc_u8(hwc_in, what);
  CTFGEN_CHECK(out_h > 0 && out_w > 0 && out_h <= kMaxImageSide && out_w <= kMaxImageSide, what,
               ": bad output size ", out_h, "x", out_w);
  auto hwc = hwc_in.to(torch::kCPU).contiguous();
  const int h = static_cast<int>(hwc.size(0)), w = static_cast<int>(hwc.size(1)),
            c = static_cast<int>(hwc.size(2));
  auto out = torch::empty({out_h, out_w, c}, torch::kUInt8);
  const int oh = static_cast<int>(out_h), ow = static_cast<int>(out_w);
  int ok = stbir_resize_uint8_generic(hwc.data_ptr<uint8_t>(), w, h, w * c, out.data_ptr<uint8_t>(),
                                      ow, oh, ow * c, c, STBIR_ALPHA_CHANNEL_NONE, 0,
                                      STBIR_EDGE_CLAMP, filter, STBIR_COLORSPACE_LINEAR, nullptr);
  CTFGEN_CHECK(ok, what, ": resize of ", shape_str(hwc.sizes()), " to ", out_h, "x", out_w, " failed");
  return out;
}
}  // namespace

at::Tensor resize_bicubic(const at::Tensor& hwc, int64_t out_h, int64_t out_w) {
  return stb_resize(hwc, out_h, out_w, STBIR_FILTER_CATMULLROM, "resize_bicubic");
}

at::Tensor halve_box(const at::Tensor& hwc) {
  check_hwc_u8(hwc, "halve_box");
  CTFGEN_CHECK(hwc.size(0) >= 2 && hwc.size(1) >= 2, "halve_box: image ", shape_str(hwc.sizes()),
               " is too small to halve");
  return stb_resize(hwc, hwc.size(0) / 2, hwc.size(1) / 2, STBIR_FILTER_BOX, "halve_box");
}

at::Tensor center_crop_adm(const at::Tensor& hwc_in, int64_t size) {
  check_hwc_u8(hwc_in, "center_crop_adm");
  CTFGEN_CHECK(size > 0 && size <= kMaxImageSide, "center_crop_adm: bad target size ", size);
  at::Tensor img = hwc_in;
  while (std::min(img.size(0), img.size(1)) >= 2 * size) img = halve_box(img);
  const double scale = static_cast<double>(size) / static_cast<double>(std::min(img.size(0), img.size(1)));
  int64_t nh = std::max<int64_t>(size, static_cast<int64_t>(std::nearbyint(img.size(0) * scale)));
  int64_t nw = std::max<int64_t>(size, static_cast<int64_t>(std::nearbyint(img.size(1) * scale)));
  if (nh != img.size(0) || nw != img.size(1)) img = resize_bicubic(img, nh, nw);
  const int64_t top = (nh - size) / 2, left = (nw - size) / 2;
  return img.slice(0, top, top + size).slice(1, left, left + size).contiguous();
}

at::Tensor composite_alpha(const at::Tensor& rgba, std::array<uint8_t, 3> background) {
  CTFGEN_CHECK(rgba.dim() == 3 && rgba.size(2) == 4 && rgba.scalar_type() == at::kByte,
               "composite_alpha: expected uint8 [H, W, 4], got ", shape_str(rgba.sizes()));
  auto src = rgba.to(torch::kCPU).to(torch::kInt32);
  auto a = src.slice(2, 3, 4);
  auto bg = torch::tensor({int{background[0]}, int{background[1]}, int{background[2]}}, torch::kInt32)
                .view({1, 1, 3});
  auto num = src.slice(2, 0, 3) * a + bg * (255 - a);
  return (num + 127).div(255, "floor").to(torch::kUInt8).contiguous();
}

}  // namespace ctfgen::io
