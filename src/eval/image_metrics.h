// Reconstruction metrics on uint8 images (LlamaGen's pixel convention: clamp(127.5 x + 128)) and
// codebook statistics from index counts.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ctfgen::eval {

/// Per-image PSNR in dB with peak 255. a, b: [N, C, H, W] (uint8 or float on the 0..255 scale).
/// Identical images give 100 dB (the value is capped there so that means stay finite). -> [N] double.
at::Tensor psnr_per_image(const at::Tensor& a, const at::Tensor& b);
/// Mean of psnr_per_image.
double psnr(const at::Tensor& a, const at::Tensor& b);

/// Per-image SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), K1 0.01,
/// K2 0.03, L 255, over the "valid" region (no padding), averaged over positions and channels.
/// a, b: [N, C, H, W] with H, W >= 11 (uint8 or float on the 0..255 scale). -> [N] double.
at::Tensor ssim_per_image(const at::Tensor& a, const at::Tensor& b);
/// Mean of ssim_per_image.
double ssim(const at::Tensor& a, const at::Tensor& b);

/// Histogram of code indices: indices (any shape, integer, values in [0, V)) -> [V] int64.
at::Tensor code_counts(const at::Tensor& indices, int64_t codebook_size);

struct CodebookStats {
  double usage = 0;       // fraction of codes with a nonzero count
  int64_t used = 0;       // number of codes with a nonzero count
  double perplexity = 0;  // exp(entropy of the empirical code distribution), in [1, V]
};
/// counts: [V] non-negative with a positive sum.
CodebookStats codebook_stats(const at::Tensor& counts);

}  // namespace ctfgen::eval
