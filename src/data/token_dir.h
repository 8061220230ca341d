// Token directories written by `ctfgen encode` and read by clustering and GPT training:
//   codes.npy   [N, h, w] int32, raster order (index h*w_grid + w as in LlamaGen)
//   labels.npy  [N] int64
//   meta.json   {tokenizer_hash, codebook_size, grid_h, grid_w, num_classes, class_names,
//                dataset, split, flipped, ...}
// NumPy reads the arrays directly (np.load).
#pragma once
#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>

namespace ctfgen::data {

struct TokenSet {
  at::Tensor codes;     // [N, h, w] int32 (int64 accepted on save)
  at::Tensor labels;    // [N] int64
  nlohmann::json meta;  // must hold at least codebook_size, grid_h, grid_w, tokenizer_hash
};

/// Checks a token set: codes [N, h, w] integer with values in [0, codebook_size), labels [N]
/// integer in [0, num_classes) when num_classes is given, grid_h/grid_w equal to h/w. `source`
/// names the directory or file in error messages. Throws Error.
void validate_token_set(const TokenSet& set, const std::string& source);

/// Reads <dir>/codes.npy, labels.npy and meta.json and validates them (errors name the file).
/// codes come back int32, labels int64.
TokenSet load_token_dir(const std::string& dir);

/// Validates, then writes the three files atomically (creating the directory).
void save_token_dir(const std::string& dir, const TokenSet& set);

}  // namespace ctfgen::data
