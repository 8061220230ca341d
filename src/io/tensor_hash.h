// Content hashes of named tensors: SHA-256 over (name, dtype, shape, raw bytes) in name order.
// Used as the tokenizer identity that token directories and cluster files record, so the same
// weights hash the same whether they came from a .pt import or a safetensors file.
#pragma once
#include <set>
#include <string>

#include "io/safetensors.h"

namespace ctfgen::io {

std::string hash_tensors(const NamedTensors& tensors, const std::set<std::string>& exclude = {});

/// The tokenizer hash: hash_tensors over a VQ model's tensors without "quantize.codebook_used".
std::string tokenizer_hash(const NamedTensors& vq_tensors);

}  // namespace ctfgen::io
