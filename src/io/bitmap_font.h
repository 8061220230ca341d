// A small built-in 5x7 bitmap font (printable ASCII 32..126) for captions on image grids.
// Each glyph occupies a 6x9 cell (one column and two rows of spacing). Characters outside the
// table render as '?'.
#pragma once
#include <cstdint>
#include <string>

namespace ctfgen::io::font {

constexpr int kGlyphW = 5, kGlyphH = 7;  // glyph bitmap size
constexpr int kCellW = 6, kCellH = 9;    // advance per character and line height

/// Row r (0 = top) of glyph `c`: bit 4 is the leftmost column, bit 0 the rightmost.
uint8_t glyph_row(char c, int r);
/// True when pixel (x, y) of glyph `c` is set (0 <= x < 5, 0 <= y < 7).
inline bool glyph_pixel(char c, int x, int y) { return (glyph_row(c, y) >> (kGlyphW - 1 - x)) & 1; }
/// Width in pixels of `text` drawn on one line (kCellW per character).
inline int text_width(const std::string& text) { return static_cast<int>(text.size()) * kCellW; }

}  // namespace ctfgen::io::font
