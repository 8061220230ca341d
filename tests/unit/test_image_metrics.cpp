// PSNR, SSIM and codebook statistics against hand-computed values and a naive SSIM loop.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "eval/image_metrics.h"
#include "io/image_io.h"
#include "test_util.h"

namespace ctfgen::test {

TEST(ImageMetrics, ToUint8UsesLlamaGenRule) {
  auto x = torch::tensor({-2.0f, -1.0f, 0.0f, 0.5f, 0.999f, 1.0f, 3.0f});
  auto u = io::to_uint8(x);
  // clamp(127.5 x + 128, 0, 255) truncated: -1 -> 0.5 -> 0; 0 -> 128; 0.5 -> 191.75 -> 191.
  std::vector<int> expect{0, 0, 128, 191, 255, 255, 255};
  for (size_t i = 0; i < expect.size(); ++i)
    EXPECT_EQ(u[static_cast<int64_t>(i)].item<int>(), expect[i]) << i;
  EXPECT_EQ(u.scalar_type(), torch::kUInt8);
}

TEST(ImageMetrics, PsnrHandValues) {
  auto a = torch::full({2, 1, 4, 4}, 100, torch::kUInt8);
  auto b = a.clone();
  b[0].add_(1);  // MSE 1 -> 10 log10(65025) = 48.1308 dB
  b[1].index_put_({0, 0, 0}, 116);  // one pixel off by 16: MSE 256/16 = 16 -> 36.0897 dB
  auto p = eval::psnr_per_image(a, b);
  EXPECT_NEAR(p[0].item<double>(), 10.0 * std::log10(65025.0), 1e-9);
  EXPECT_NEAR(p[1].item<double>(), 10.0 * std::log10(65025.0 / 16.0), 1e-9);
  EXPECT_NEAR(eval::psnr(a, b), (p[0].item<double>() + p[1].item<double>()) / 2, 1e-12);
  EXPECT_EQ(eval::psnr(a, a), 100.0);
  EXPECT_THROW(eval::psnr(a, b.slice(0, 0, 1)), Error);
}

TEST(ImageMetrics, SsimOfConstantImagesHasClosedForm) {
  // For constant images a and b the variances vanish: SSIM = (2ab + C1) / (a^2 + b^2 + C1).
  const double C1 = std::pow(0.01 * 255, 2);
  auto a = torch::full({1, 3, 16, 16}, 50.0);
  auto b = torch::full({1, 3, 16, 16}, 80.0);
  EXPECT_NEAR(eval::ssim(a, b), (2 * 50.0 * 80.0 + C1) / (50.0 * 50 + 80.0 * 80 + C1), 1e-9);
  EXPECT_NEAR(eval::ssim(a, a), 1.0, 1e-12);
}

TEST(ImageMetrics, SsimEqualsNaiveWindowLoop) {
  auto gen = make_generator(1);
  auto a = torch::randint(0, 256, {2, 2, 13, 12}, gen, torch::kLong).to(torch::kUInt8);
  auto noise = torch::randint(-40, 41, {2, 2, 13, 12}, gen, torch::kLong);
  auto b = (a.to(torch::kLong) + noise).clamp(0, 255).to(torch::kUInt8);
  // Naive: for each channel and every valid 11x11 window, Gaussian-weighted statistics.
  double g[11], gs = 0;
  for (int i = 0; i < 11; ++i) gs += g[i] = std::exp(-((i - 5.0) * (i - 5.0)) / (2 * 1.5 * 1.5));
  const double C1 = std::pow(0.01 * 255, 2), C2 = std::pow(0.03 * 255, 2);
  auto A = a.to(torch::kDouble), B = b.to(torch::kDouble);
  auto per = eval::ssim_per_image(a, b);
  for (int64_t n = 0; n < 2; ++n) {
    double total = 0;
    int count = 0;
    for (int64_t c = 0; c < 2; ++c) {
      auto ta = A[n][c].contiguous(), tb = B[n][c].contiguous();
      auto pa = ta.accessor<double, 2>();
      auto pb = tb.accessor<double, 2>();
      for (int64_t y = 0; y + 11 <= 13; ++y)
        for (int64_t x = 0; x + 11 <= 12; ++x) {
          double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
          for (int i = 0; i < 11; ++i)
            for (int j = 0; j < 11; ++j) {
              double w = g[i] * g[j] / (gs * gs);
              double u = pa[y + i][x + j], v = pb[y + i][x + j];
              mx += w * u, my += w * v, sxx += w * u * u, syy += w * v * v, sxy += w * u * v;
            }
          sxx -= mx * mx, syy -= my * my, sxy -= mx * my;
          total += ((2 * mx * my + C1) * (2 * sxy + C2)) /
                   ((mx * mx + my * my + C1) * (sxx + syy + C2));
          ++count;
        }
    }
    EXPECT_NEAR(per[n].item<double>(), total / count, 1e-9) << n;
  }
  EXPECT_LT(per[0].item<double>(), 0.99);
  EXPECT_THROW(eval::ssim(a.slice(2, 0, 10), b.slice(2, 0, 10)), Error);
}

TEST(ImageMetrics, CodebookStats) {
  auto idx = torch::tensor({0, 0, 1, 3}, torch::kLong);
  auto counts = eval::code_counts(idx, 8);
  EXPECT_TRUE(torch::equal(counts, torch::tensor({2, 1, 0, 1, 0, 0, 0, 0}, torch::kLong)));
  auto s = eval::codebook_stats(counts);
  EXPECT_EQ(s.used, 3);
  EXPECT_NEAR(s.usage, 3.0 / 8.0, 1e-12);
  // p = (1/2, 1/4, 1/4): entropy 1.5 ln 2 -> perplexity 2^1.5.
  EXPECT_NEAR(s.perplexity, std::pow(2.0, 1.5), 1e-9);
  auto uniform = eval::codebook_stats(torch::ones({16}, torch::kLong));
  EXPECT_NEAR(uniform.perplexity, 16.0, 1e-9);
  EXPECT_THROW(eval::code_counts(torch::tensor({8}, torch::kLong), 8), Error);
  EXPECT_THROW(eval::codebook_stats(torch::zeros({4})), Error);
}

}  // namespace ctfgen::test
