#include "eval/image_metrics.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "core/shape.h"

namespace ctfgen::eval {

namespace {
void check_pair(const at::Tensor& a, const at::Tensor& b, const char* what) {
  CTFGEN_CHECK(a.dim() == 4, what, ": images must be [N, C, H, W], got ", shape_str(a.sizes()));
  CTFGEN_CHECK(a.sizes().equals(b.sizes()), what, ": shapes differ: ", shape_str(a.sizes()),
               " vs ", shape_str(b.sizes()));
}

at::Tensor gaussian_window(int64_t size, double sigma) {
  auto x = torch::arange(size, torch::kDouble) - static_cast<double>(size - 1) / 2.0;
  auto g = torch::exp(-(x * x) / (2.0 * sigma * sigma));
  g = g / g.sum();
  return torch::outer(g, g);  // [size, size], sums to 1
}
}  // namespace

at::Tensor psnr_per_image(const at::Tensor& a, const at::Tensor& b) {
  check_pair(a, b, "psnr");
  auto d = a.to(torch::kDouble) - b.to(torch::kDouble);
  auto mse = (d * d).flatten(1).mean(1);
  auto p = 10.0 * torch::log10(255.0 * 255.0 / mse);
  return torch::clamp_max(p, 100.0);  // mse 0 -> +inf -> 100
}

double psnr(const at::Tensor& a, const at::Tensor& b) {
  return psnr_per_image(a, b).mean().item<double>();
}

at::Tensor ssim_per_image(const at::Tensor& a, const at::Tensor& b) {
  check_pair(a, b, "ssim");
  constexpr int64_t kWin = 11;
  CTFGEN_CHECK(a.size(2) >= kWin && a.size(3) >= kWin, "ssim: images must be at least 11x11, got ",
               shape_str(a.sizes()));
  const double L = 255.0, C1 = (0.01 * L) * (0.01 * L), C2 = (0.03 * L) * (0.03 * L);
  const int64_t N = a.size(0), C = a.size(1);
  // Each channel is filtered independently: fold channels into the batch.
  auto x = a.to(torch::kDouble).reshape({N * C, 1, a.size(2), a.size(3)});
  auto y = b.to(torch::kDouble).reshape({N * C, 1, a.size(2), a.size(3)});
  auto w = gaussian_window(kWin, 1.5).to(a.device()).reshape({1, 1, kWin, kWin});
  auto filt = [&](const at::Tensor& t) { return torch::conv2d(t, w); };
  auto mu_x = filt(x), mu_y = filt(y);
  auto sxx = filt(x * x) - mu_x * mu_x;
  auto syy = filt(y * y) - mu_y * mu_y;
  auto sxy = filt(x * y) - mu_x * mu_y;
  auto map = ((2.0 * mu_x * mu_y + C1) * (2.0 * sxy + C2)) /
             ((mu_x * mu_x + mu_y * mu_y + C1) * (sxx + syy + C2));
  return map.reshape({N, C, -1}).mean(2).mean(1);
}

double ssim(const at::Tensor& a, const at::Tensor& b) {
  return ssim_per_image(a, b).mean().item<double>();
}

at::Tensor code_counts(const at::Tensor& indices, int64_t codebook_size) {
  CTFGEN_CHECK(codebook_size >= 1, "code_counts: codebook_size must be >= 1, got ", codebook_size);
  auto flat = indices.reshape({-1}).to(torch::kLong);
  if (flat.numel() > 0) {
    const auto [lo, hi] = int_range(flat);
    CTFGEN_CHECK(lo >= 0 && hi < codebook_size, "code_counts: indices must be in [0, ",
                 codebook_size, "), got range [", lo, ", ", hi, "]");
  }
  return torch::bincount(flat, /*weights=*/{}, codebook_size);
}

CodebookStats codebook_stats(const at::Tensor& counts) {
  CTFGEN_CHECK(counts.dim() == 1 && counts.numel() > 0, "codebook_stats: counts must be [V], got ",
               shape_str(counts.sizes()));
  auto c = counts.to(torch::kDouble);
  CTFGEN_CHECK(c.min().item<double>() >= 0.0, "codebook_stats: counts must be non-negative");
  const double total = c.sum().item<double>();
  CTFGEN_CHECK(total > 0.0, "codebook_stats: counts sum to zero");
  CodebookStats s;
  s.used = (c > 0).sum().item<int64_t>();
  s.usage = static_cast<double>(s.used) / static_cast<double>(c.numel());
  auto p = c / total;
  auto nz = p.masked_select(p > 0);
  s.perplexity = std::exp(-(nz * nz.log()).sum().item<double>());
  return s;
}

}  // namespace ctfgen::eval
