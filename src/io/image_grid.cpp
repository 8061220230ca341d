#include "io/image_grid.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/error.h"
#include "core/shape.h"
#include "io/bitmap_font.h"
#include "io/image_io.h"

namespace ctfgen::io {

void draw_text(at::Tensor& hwc, const std::string& text, int64_t x, int64_t y, uint8_t value,
               int64_t scale) {
  CTFGEN_CHECK(hwc.dim() == 3 && hwc.scalar_type() == at::kByte && hwc.is_contiguous(),
               "draw_text: expected a contiguous uint8 [H, W, C] image");
  CTFGEN_CHECK(scale >= 1 && scale <= 16, "draw_text: bad text scale ", scale);
  const int64_t H = hwc.size(0), W = hwc.size(1), C = hwc.size(2);
  uint8_t* p = hwc.data_ptr<uint8_t>();
  for (size_t i = 0; i < text.size(); ++i) {
    const int64_t x0 = x + static_cast<int64_t>(i) * font::kCellW * scale;
    for (int gy = 0; gy < font::kGlyphH; ++gy)
      for (int gx = 0; gx < font::kGlyphW; ++gx) {
        if (!font::glyph_pixel(text[i], gx, gy)) continue;
        for (int64_t sy = 0; sy < scale; ++sy)
          for (int64_t sx = 0; sx < scale; ++sx) {
            const int64_t py = y + gy * scale + sy, px = x0 + gx * scale + sx;
            if (py < 0 || py >= H || px < 0 || px >= W) continue;
            for (int64_t c = 0; c < C; ++c) p[(py * W + px) * C + c] = value;
          }
      }
  }
}

at::Tensor make_grid(const at::Tensor& images, const GridOptions& o) {
  CTFGEN_CHECK(images.defined() && images.dim() == 4, "make_grid: expected [B, C, H, W], got ",
               images.defined() ? shape_str(images.sizes()) : "undefined");
  CTFGEN_CHECK(images.size(1) == 1 || images.size(1) == 3, "make_grid: C must be 1 or 3, got ",
               images.size(1));
  CTFGEN_CHECK(images.size(0) >= 1, "make_grid: no images");
  CTFGEN_CHECK(o.nrow >= 1, "make_grid: nrow must be >= 1, got ", o.nrow);
  CTFGEN_CHECK(o.padding >= 0 && o.padding <= 1024, "make_grid: bad padding ", o.padding);
  CTFGEN_CHECK(o.text_scale >= 1 && o.text_scale <= 16, "make_grid: bad text_scale ", o.text_scale);
  const int64_t B = images.size(0), H = images.size(2), W = images.size(3);
  const int64_t ncol = std::min(o.nrow, B), nrows = (B + o.nrow - 1) / o.nrow;
  CTFGEN_CHECK(o.captions.empty() || static_cast<int64_t>(o.captions.size()) == B,
               "make_grid: ", o.captions.size(), " captions for ", B, " images");
  CTFGEN_CHECK(o.row_labels.empty() || static_cast<int64_t>(o.row_labels.size()) == nrows,
               "make_grid: ", o.row_labels.size(), " row labels for ", nrows, " rows");

  at::Tensor u8 = images.scalar_type() == at::kByte ? images : to_uint8(images);
  u8 = u8.to(torch::kCPU);
  if (u8.size(1) == 1) u8 = u8.expand({B, 3, H, W});
  u8 = u8.permute({0, 2, 3, 1}).contiguous();  // [B, H, W, 3]

  const int64_t s = o.text_scale, pad = o.padding;
  const int64_t caption_h = o.captions.empty() ? 0 : font::kCellH * s;
  int64_t label_w = 0;
  for (const auto& l : o.row_labels) label_w = std::max<int64_t>(label_w, font::text_width(l) * s);
  if (!o.row_labels.empty()) label_w += pad;
  const int64_t cell_h = H + caption_h, out_h = pad + nrows * (cell_h + pad);
  const int64_t out_w = label_w + pad + ncol * (W + pad);
  auto out = torch::full({out_h, out_w, 3}, static_cast<int64_t>(o.pad_value), torch::kUInt8);
  const uint8_t ink = o.pad_value >= 128 ? 0 : 255;
  const int64_t max_chars = std::max<int64_t>(1, (W + pad) / (font::kCellW * s));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t r = b / o.nrow, c = b % o.nrow;
    const int64_t y = pad + r * (cell_h + pad), x = label_w + pad + c * (W + pad);
    out.slice(0, y, y + H).slice(1, x, x + W).copy_(u8[b]);
    if (!o.captions.empty()) {
      std::string text = o.captions[b].substr(0, static_cast<size_t>(max_chars));
      draw_text(out, text, x, y + H + s, ink, s);
    }
  }
  for (int64_t r = 0; r < static_cast<int64_t>(o.row_labels.size()); ++r) {
    const int64_t y = pad + r * (cell_h + pad) + std::max<int64_t>(0, (H - font::kGlyphH * s) / 2);
    draw_text(out, o.row_labels[r], pad, y, ink, s);
  }
  return out;
}

}  // namespace ctfgen::io
