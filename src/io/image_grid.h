// Image grids for sample sheets: images laid out nrow per row with padding, optional captions
// under each image and optional labels left of each row, drawn with the built-in bitmap font.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ctfgen::io {

struct GridOptions {
  int64_t nrow = 8;                     // images per grid row (>= 1)
  int64_t padding = 2;                  // pixels between images and around the border (>= 0)
  uint8_t pad_value = 255;              // background grey level; text is black on light, white on dark
  std::vector<std::string> captions;    // empty, or one per image (drawn under it, cut to fit)
  std::vector<std::string> row_labels;  // empty, or one per grid row (drawn left of the row)
  int64_t text_scale = 1;               // font magnification (1 = 5x7 glyphs in 6x9 cells)
};

/// images: [B, C, H, W] float in [-1, 1] (converted with to_uint8) or uint8, C = 1 or 3
///   -> uint8 [H', W', 3] ready for write_png (grey is replicated to RGB).
/// Layout: label column of width max(label width) + padding when row_labels is given; each
/// image cell is W x (H + caption strip of 9 * text_scale pixels when captions are given);
/// `padding` pixels between cells and at every border.
at::Tensor make_grid(const at::Tensor& images, const GridOptions& opts = {});

/// Draws `text` into uint8 [H, W, 3] at (x, y) (top-left of the first cell), clipped to the image.
void draw_text(at::Tensor& hwc, const std::string& text, int64_t x, int64_t y, uint8_t value,
               int64_t scale = 1);

}  // namespace ctfgen::io
