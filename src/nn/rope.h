// LlamaGen's 2D rotary position embedding (LlamaGen gpt.py: precompute_freqs_cis_2d,
// apply_rotary_emb).
//
// Table layout: [cls_token_num + grid*grid, head_dim/2, 2] float32 holding (cos, sin).
//   - Rows 0 .. cls_token_num-1 (class tokens) are all zero: cos = sin = 0, so the class token's
//     query and key become exactly zero (LlamaGen's quirk, reproduced on purpose).
//   - Row cls_token_num + r*grid + c is grid cell (row r, column c), row-major (VQ raster order).
//   - Of the head_dim/2 rotary pairs of a cell, the first head_dim/4 use angle r*theta_k and the
//     next head_dim/4 use c*theta_k, theta_k = base^(-2k/(head_dim/2)), k = 0 .. head_dim/4-1.
// Sequence position p uses row p. Pairs are interleaved: pair j is dims (2j, 2j+1).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ctfgen::nn {

/// The 2D RoPE table: [cls_token_num + grid^2, head_dim/2, 2] float32 (cos, sin).
/// head_dim must be a positive multiple of 4.
at::Tensor rope_table_2d(int64_t grid, int64_t head_dim, double base = 10000.0,
                         int64_t cls_token_num = 1);

/// Rotates interleaved pairs of x in float32 and casts back to x's dtype.
/// x: [B, S, H, hd], table rows: [S, hd/2, 2] -> [B, S, H, hd]
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& table_rows);

}  // namespace ctfgen::nn
