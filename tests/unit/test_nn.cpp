// src/nn: RMSNorm, SwiGLU width, 2D RoPE layout, attention vs an explicit loop, static KV cache.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "nn/autocast.h"
#include "nn/decode_kernels.h"
#include "nn/layers.h"
#include "nn/rope.h"
#include "test_util.h"

namespace ctfgen::test {
using namespace ctfgen::nn;

TEST(NnSwiglu, HiddenWidthMatchesLlamaGen) {
  EXPECT_EQ(swiglu_hidden_dim(768, 256), 2048);
  EXPECT_EQ(swiglu_hidden_dim(1024, 256), 2816);
  EXPECT_EQ(swiglu_hidden_dim(1280, 256), 3584);
  EXPECT_EQ(swiglu_hidden_dim(1536, 256), 4096);
  EXPECT_EQ(swiglu_hidden_dim(3200, 256), 8704);
  EXPECT_EQ(swiglu_hidden_dim(32, 16), 96);                // int(256/3) = 85 -> 96
  EXPECT_EQ(swiglu_hidden_dim(768, 256, 1.5), 3072);       // int(1.5 * 2048)
}

TEST(NnRmsNorm, NormalisesInFp32AndScales) {
  torch::manual_seed(0);
  RMSNorm norm(8, 1e-5);
  {
    torch::NoGradGuard g;
    norm->weight.copy_(torch::arange(1, 9, torch::kFloat32));
  }
  auto x = torch::randn({3, 8});
  auto expect = x / torch::sqrt((x * x).mean(-1, true) + 1e-5) * torch::arange(1, 9, torch::kFloat32);
  EXPECT_TRUE(all_close(norm(x), expect, 1e-5, 1e-6));
  // bf16 input: normalised in fp32, cast back to bf16, then times the weight.
  auto xb = x.to(torch::kBFloat16);
  auto out = norm->forward(xb);
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);  // bf16 * fp32 weight promotes, as in PyTorch
  auto xf = xb.to(torch::kFloat32);
  auto ref = (xf * torch::rsqrt((xf * xf).mean(-1, true) + 1e-5)).to(torch::kBFloat16).to(torch::kFloat32) *
             torch::arange(1, 9, torch::kFloat32);
  EXPECT_TRUE(out.equal(ref));
}

TEST(NnRope, TableLayoutClassRowZeroThenRowColumnHalves) {
  const int64_t grid = 4, hd = 16;
  auto t = rope_table_2d(grid, hd, 10000.0, 1);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{1 + grid * grid, hd / 2, 2}));
  EXPECT_EQ(t[0].abs().max().item<float>(), 0.0f);  // class row: cos = sin = 0
  const int64_t quarter = hd / 4, half = hd / 2;
  for (int64_t r = 0; r < grid; ++r)
    for (int64_t c = 0; c < grid; ++c)
      for (int64_t j = 0; j < half; ++j) {
        const int64_t k = j % quarter;
        const double theta = 1.0 / std::pow(10000.0, (2.0 * k) / half);
        const double angle = (j < quarter ? r : c) * theta;
        auto row = t[1 + r * grid + c][j];
        EXPECT_NEAR(row[0].item<float>(), std::cos(angle), 1e-5) << r << "," << c << "," << j;
        EXPECT_NEAR(row[1].item<float>(), std::sin(angle), 1e-5) << r << "," << c << "," << j;
      }
}

TEST(NnRope, HeadDim100Has25Frequencies) {
  auto t = rope_table_2d(2, 100, 10000.0, 1);
  EXPECT_EQ(t.size(1), 50);
  // Cell (1, 0): first 25 pairs rotate by theta_k, last 25 by 0.
  auto cell = t[1 + 2];
  EXPECT_NEAR(cell[24][1].item<float>(), std::sin(1.0 / std::pow(10000.0, 48.0 / 50)), 1e-6);
  EXPECT_NEAR(cell[25][0].item<float>(), 1.0, 1e-7);
  EXPECT_THROW(rope_table_2d(2, 6), Error);
}

TEST(NnRope, ApplyRotatesInterleavedPairs) {
  torch::manual_seed(1);
  auto table = rope_table_2d(2, 8);  // 5 rows
  auto x = torch::randn({2, 5, 3, 8});
  auto y = apply_rope(x, table);
  for (int64_t s = 0; s < 5; ++s)
    for (int64_t j = 0; j < 4; ++j) {
      const float c = table[s][j][0].item<float>(), sn = table[s][j][1].item<float>();
      auto a = x.select(1, s).select(-1, 2 * j), b = x.select(1, s).select(-1, 2 * j + 1);
      EXPECT_TRUE(all_close(y.select(1, s).select(-1, 2 * j), a * c - b * sn, 1e-5, 1e-6));
      EXPECT_TRUE(all_close(y.select(1, s).select(-1, 2 * j + 1), b * c + a * sn, 1e-5, 1e-6));
    }
  EXPECT_EQ(y.select(1, 0).abs().max().item<float>(), 0.0f);  // class position zeroed
}

TEST(NnAttention, MatchesExplicitLoopCausalAndBidirectional) {
  torch::manual_seed(2);
  const int64_t B = 2, S = 5, D = 16, H = 2, hd = 8;
  Attention attn(D, H, 0.0);
  attn->eval();
  auto x = torch::randn({B, S, D});
  auto rope = rope_table_2d(2, hd).narrow(0, 0, S);
  // Reference: project by hand, loop attention, project out.
  auto qkv = torch::matmul(x, attn->wqkv->weight.t()).split(D, -1);
  auto q = apply_rope(qkv[0].view({B, S, H, hd}), rope).transpose(1, 2);
  auto k = apply_rope(qkv[1].view({B, S, H, hd}), rope).transpose(1, 2);
  auto v = qkv[2].view({B, S, H, hd}).transpose(1, 2);
  for (bool causal : {true, false}) {
    auto mask = causal ? causal_mask(S) : at::Tensor();
    auto ref = attention_reference(q, k, v, mask).transpose(1, 2).reshape({B, S, D});
    ref = torch::matmul(ref, attn->wo->weight.t());
    EXPECT_TRUE(all_close(attn->forward(x, rope, mask), ref, 1e-4, 1e-6)) << causal;
  }
  // The loop reference itself: causal position 0 sees only key 0 -> output = v0.
  auto out0 = attention_reference(q, k, v, causal_mask(S)).select(2, 0);
  EXPECT_TRUE(all_close(out0, v.select(2, 0), 1e-6, 1e-7));
}

TEST(NnKvCache, RoundsToMultipleOf8AndCachedEqualsFull) {
  auto cache = KVCache::allocate(1, 3, 2, 257, 8, torch::kFloat32);
  EXPECT_EQ(cache.max_seq, 264);
  EXPECT_EQ(KVCache::allocate(1, 1, 1, 577, 4, torch::kFloat32).max_seq, 584);
  EXPECT_EQ(cache.layers[0].k.sizes(), (std::vector<int64_t>{3, 2, 264, 8}));

  torch::manual_seed(3);
  const int64_t B = 2, S = 6, D = 16;
  Attention attn(D, 2, 0.0);
  attn->eval();
  torch::NoGradGuard g;
  auto x = torch::randn({B, S, D});
  auto rope = rope_table_2d(3, 8);  // 10 rows
  auto full = attn->forward(x, rope.narrow(0, 0, S), causal_mask(S));
  auto kv = KVCache::allocate(1, B + 1, 2, S, 8, torch::kFloat32);
  const void* kptr = kv.layers[0].k.data_ptr();
  // Prefill two positions at once, then one at a time.
  auto y01 = attn->forward_cached(x.narrow(1, 0, 2), rope.narrow(0, 0, 2), kv.layers[0], 0);
  EXPECT_TRUE(all_close(y01, full.narrow(1, 0, 2), 1e-5, 1e-6));
  for (int64_t p = 2; p < S; ++p) {
    auto y = attn->forward_cached(x.narrow(1, p, 1), rope.narrow(0, p, 1), kv.layers[0], p);
    EXPECT_TRUE(all_close(y, full.narrow(1, p, 1), 1e-5, 1e-6)) << p;
  }
  EXPECT_EQ(kv.layers[0].k.data_ptr(), kptr);  // written in place
  EXPECT_THROW(attn->forward_cached(x.narrow(1, 0, 1), rope.narrow(0, 0, 1), kv.layers[0], 8),
               Error);
}

// The decode-step kernel (one query per (b, h)) against the loop reference, on views into a
// larger cache as the decode step passes them; head dims with and without a tail of 8.
TEST(NnDecodeAttention, SingleQueryMatchesReferenceOnCacheViews) {
  auto gen = make_generator(11);
  for (auto [B, H, t, hd] : std::vector<std::array<int64_t, 4>>{
           {1, 1, 1, 8}, {2, 3, 5, 16}, {3, 2, 40, 100}, {64, 4, 17, 12}}) {
    auto cache_k = torch::randn({B + 1, H, t + 9, hd}, gen);
    auto cache_v = torch::randn({B + 1, H, t + 9, hd}, gen);
    auto k = cache_k.narrow(0, 0, B).narrow(2, 0, t);
    auto v = cache_v.narrow(0, 0, B).narrow(2, 0, t);
    auto q = torch::randn({B, 1, H, hd}, gen).transpose(1, 2);  // non-contiguous, as in decode
    ASSERT_TRUE(single_query_attention_supported(q, k, v));
    auto got = single_query_attention(q, k, v, 1.0 / std::sqrt(double(hd)));
    EXPECT_EQ(got.sizes(), (std::vector<int64_t>{B, H, 1, hd}));
    EXPECT_TRUE(all_close(got, attention_reference(q, k, v, at::Tensor()), 1e-5, 1e-6))
        << B << " " << H << " " << t << " " << hd;
  }
  auto q = torch::randn({1, 2, 1, 8});
  auto k = torch::randn({1, 2, 3, 8});
  EXPECT_FALSE(single_query_attention_supported(q.to(torch::kBFloat16), k, k));
  EXPECT_FALSE(single_query_attention_supported(torch::randn({1, 2, 2, 8}), k, k));
  EXPECT_THROW(single_query_attention(q, k.to(torch::kDouble), k, 1.0), Error);
}

// The thin-product kernel of the decode step against torch::linear, for every row count it
// takes, widths with and without a SIMD tail, and leading shapes [R, K] and [B, 1, K]; then the
// cases it must refuse (so linear_no_bias falls back).
TEST(NnDecodeAttention, SmallRowsLinearMatchesTorchLinear) {
  auto gen = make_generator(12);
  auto w0 = torch::randn({5, 8}, gen);
  if (!small_rows_linear_supported(torch::randn({1, 8}, gen), w0))
    GTEST_SKIP() << "no AVX2/AVX-512 on this CPU: the kernel is never used";
  // Both variants on an AVX-512 CPU (the AVX2 one through limit_kernels_to_avx2). Widths cover
  // the unrolled main loop (64 floats a step for AVX-512, 16 for AVX2), the single-vector loop
  // and the scalar tail; N 2000 with 2 threads splits the outputs over both.
  for (bool avx2 : {false, true}) {
    ASSERT_TRUE(limit_kernels_to_avx2(avx2));
    for (int64_t K : {8, 16, 37, 96, 130, 200})
      for (int64_t N : {1, 7, 64, 2000})
        for (int64_t R = 1; R <= kSmallLinearMaxRows; ++R) {
          auto w = torch::randn({N, K}, gen);
          auto x = torch::randn({R, 1, K}, gen);
          ASSERT_TRUE(small_rows_linear_supported(x, w));
          auto got = small_rows_linear(x, w);
          EXPECT_EQ(got.sizes(), (std::vector<int64_t>{R, 1, N}));
          // Against the product in double: fp32 sums of K terms of size ~1 drift by ~K * 1e-7.
          auto exact = torch::linear(x.to(torch::kDouble), w.to(torch::kDouble)).to(torch::kFloat);
          const double atol = 1e-6 * static_cast<double>(K);
          EXPECT_TRUE(all_close(got, exact, 1e-5, atol))
              << K << " " << N << " " << R << " avx2 " << avx2;
          EXPECT_TRUE(all_close(linear_no_bias(x.view({R, K}), w), exact.view({R, N}), 1e-5, atol));
        }
  }
  limit_kernels_to_avx2(false);
  auto x = torch::randn({5, 8}, gen);
  EXPECT_FALSE(small_rows_linear_supported(x, w0));                       // 5 rows
  EXPECT_TRUE(all_close(linear_no_bias(x, w0), torch::linear(x, w0), 1e-6, 1e-6));
  auto x2 = torch::randn({2, 8}, gen);
  EXPECT_FALSE(small_rows_linear_supported(x2, w0.t().contiguous().t()));  // strided weight
  EXPECT_FALSE(small_rows_linear_supported(x2.to(torch::kDouble), w0.to(torch::kDouble)));
  auto wg = w0.clone().requires_grad_(true);
  EXPECT_FALSE(small_rows_linear_supported(x2, wg));  // training: autograd needs torch::linear
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(small_rows_linear_supported(x2, wg));
  }
  {
    AutocastGuard amp(torch::kCPU, at::kBFloat16);
    EXPECT_FALSE(small_rows_linear_supported(x2, w0));
  }
  set_decode_kernels_enabled(false);
  EXPECT_FALSE(small_rows_linear_supported(x2, w0));
  EXPECT_FALSE(single_query_attention_supported(torch::randn({1, 2, 1, 8}),
                                                torch::randn({1, 2, 3, 8}),
                                                torch::randn({1, 2, 3, 8})));
  set_decode_kernels_enabled(true);
  EXPECT_THROW(small_rows_linear(x, w0), Error);
}

// Steps a cached layer (attention or transformer block) through positions 0 .. S-1 of x
// [B, S <= 10, D], once with the decode-step kernels and once on the plain libtorch path:
// {kernel outputs, plain outputs}, one [B, 1, D] tensor per position.
template <typename Layer>
std::array<std::vector<at::Tensor>, 2> step_kernels_and_plain(Layer& layer, const at::Tensor& x,
                                                              int64_t n_head, int64_t head_dim) {
  torch::NoGradGuard g;
  const int64_t B = x.size(0), S = x.size(1);
  auto rope = rope_table_2d(3, head_dim);
  std::array<std::vector<at::Tensor>, 2> outs;
  for (int plain = 0; plain < 2; ++plain) {
    set_decode_kernels_enabled(plain == 0);
    auto kv = KVCache::allocate(1, B, n_head, S, head_dim, torch::kFloat32);
    for (int64_t p = 0; p < S; ++p)
      outs[plain].push_back(
          layer->forward_cached(x.narrow(1, p, 1), rope.narrow(0, p, 1), kv.layers[0], p));
  }
  set_decode_kernels_enabled(true);
  return outs;
}

// The fused element-wise kernels against the libtorch expressions they replace: decode-sized
// inputs (one thread) and inputs large enough to be split over threads, widths with and
// without a tail of 8; then the inputs each one must refuse, so the plain path runs.
TEST(NnDecodeKernels, FusedNormRopeSiluMatchLibtorch) {
  auto gen = make_generator(13);
  torch::NoGradGuard no_grad;
  for (auto [rows, D] : std::vector<std::array<int64_t, 2>>{{1, 8}, {2, 128}, {3, 37}, {700, 96}}) {
    auto x = torch::randn({rows, 1, D}, gen) * 3;
    auto w = torch::randn({D}, gen);
    ASSERT_TRUE(rms_norm_fused_supported(x, w));
    auto expect = x * torch::rsqrt((x * x).mean(-1, true) + 1e-5) * w;
    EXPECT_TRUE(all_close(rms_norm_fused(x, w, 1e-5), expect, 1e-5, 1e-6)) << rows << " " << D;
    auto a = torch::randn({rows, D}, gen) * 4, b = torch::randn({rows, D}, gen);
    ASSERT_TRUE(silu_mul_supported(a, b));
    EXPECT_TRUE(all_close(silu_mul(a, b), torch::silu(a) * b, 1e-5, 1e-6)) << rows << " " << D;
  }
  // RoPE on the q part of a fused QKV product (a strided view), as the attention layer passes it.
  auto table = rope_table_2d(4, 16);  // 17 rows
  for (auto [B, S, H] : std::vector<std::array<int64_t, 3>>{{2, 1, 3}, {1, 17, 2}, {40, 17, 4}}) {
    const int64_t hd = 16, D = H * hd;
    auto qkv = torch::randn({B, S, 3 * D}, gen);
    auto q = qkv.narrow(-1, 0, D).view({B, S, H, hd});
    auto rows = table.narrow(0, 0, S);
    ASSERT_TRUE(rope_fused_supported(q, rows));
    auto got = rope_fused(q, rows);
    EXPECT_TRUE(got.is_contiguous());
    set_decode_kernels_enabled(false);
    auto expect = apply_rope(q, rows);  // the plain libtorch expression
    set_decode_kernels_enabled(true);
    EXPECT_TRUE(all_close(got, expect, 1e-5, 1e-6)) << B << " " << S << " " << H;
    EXPECT_TRUE(all_close(apply_rope(q, rows), expect, 1e-5, 1e-6));  // dispatches to the kernel
  }
  auto x = torch::randn({2, 8}, gen), w = torch::ones({8});
  EXPECT_FALSE(rms_norm_fused_supported(x.to(torch::kDouble), w.to(torch::kDouble)));
  EXPECT_FALSE(rms_norm_fused_supported(x.t(), torch::ones({2})));  // not contiguous
  EXPECT_FALSE(rms_norm_fused_supported(x, torch::ones({7})));
  EXPECT_FALSE(silu_mul_supported(x, torch::randn({8, 2}, gen)));
  EXPECT_FALSE(rope_fused_supported(torch::randn({1, 2, 1, 8}, gen), table.narrow(0, 0, 1)));
  EXPECT_THROW(rms_norm_fused(x, torch::ones({7}), 1e-5), Error);
  EXPECT_THROW(silu_mul(x, torch::randn({8, 2}, gen)), Error);
  {
    torch::GradMode::set_enabled(true);
    auto wg = w.clone().requires_grad_(true);
    EXPECT_FALSE(rms_norm_fused_supported(x, wg));  // training: autograd needs the plain path
    EXPECT_FALSE(silu_mul_supported(x.clone().requires_grad_(true), x));
    torch::GradMode::set_enabled(false);
  }
  set_decode_kernels_enabled(false);
  EXPECT_FALSE(rms_norm_fused_supported(x, w));
  EXPECT_FALSE(silu_mul_supported(x, x));
  set_decode_kernels_enabled(true);
}

// A whole transformer block (RMSNorm, fused QKV, RoPE, cache, attention, SwiGLU) stepping
// through positions gives the same outputs with every decode-step kernel on as with the plain
// libtorch path, and its training forward (autograd on) is untouched by the switch.
TEST(NnDecodeKernels, BlockStepsAndTrainingForwardAgreeWithPlainPath) {
  torch::manual_seed(6);
  const int64_t B = 2, S = 9, D = 64;
  TransformerBlock block(D, 4, swiglu_hidden_dim(D, 32), 1e-5, 0.0, 0.0);
  block->eval();
  auto x = torch::randn({B, S, D});
  auto outs = step_kernels_and_plain(block, x, 4, 16);
  for (int64_t p = 0; p < S; ++p)
    EXPECT_TRUE(all_close(outs[0][p], outs[1][p], 1e-5, 1e-5)) << p;
  auto mask = torch::ones({S, S}, torch::kBool).tril();
  auto y = block->forward(x, rope_table_2d(3, 16).narrow(0, 0, S), mask);
  EXPECT_TRUE(y.requires_grad());  // the plain, differentiable path ran
  y.sum().backward();
}

// The kernels split their outputs over threads; every output is computed by one thread with
// the same arithmetic, so 2 threads give bit-identical results to 1 (test_main runs on 1).
TEST(NnDecodeKernels, TwoThreadsGiveBitIdenticalResults) {
  auto gen = make_generator(14);
  torch::NoGradGuard no_grad;
  auto w = torch::randn({4096, 128}, gen), x = torch::randn({2, 128}, gen);
  auto q = torch::randn({64, 4, 1, 32}, gen), k = torch::randn({64, 4, 40, 32}, gen),
       v = torch::randn({64, 4, 40, 32}, gen);
  auto h = torch::randn({600, 96}, gen), g = torch::ones({96});
  auto table = rope_table_2d(4, 16);
  auto r = torch::randn({40, 17, 4, 16}, gen);
  auto run = [&] {
    return std::vector<at::Tensor>{
        linear_no_bias(x, w), single_query_attention(q, k, v, 0.2), rms_norm_fused(h, g, 1e-5),
        rope_fused(r, table), silu_mul(h, h)};
  };
  auto one = run();
  runtime::set_threads(2);
  auto two = run();
  runtime::set_threads(1);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(one[i].equal(two[i])) << i;
}

// A cached attention layer stepping one position at a time gives the same outputs with the
// decode-step kernels as with the plain libtorch path (batch 2: thin products, one query).
TEST(NnDecodeAttention, KernelsOnAndOffGiveTheSameDecodeSteps) {
  torch::manual_seed(5);
  const int64_t B = 2, S = 9, D = 48;
  Attention attn(D, 3, 0.0);
  attn->eval();
  auto outs = step_kernels_and_plain(attn, torch::randn({B, S, D}), 3, 16);
  for (int64_t p = 0; p < S; ++p)
    EXPECT_TRUE(all_close(outs[0][p], outs[1][p], 1e-5, 1e-6)) << p;
}

TEST(NnLabelEmbedder, DropsLabelsToNullOnlyInTraining) {
  LabelEmbedder emb(10, 4, 0.5);
  seed_global(7);
  auto labels = torch::zeros({400}, torch::kLong);
  emb->eval();
  auto e_eval = emb(labels);
  EXPECT_TRUE(e_eval.select(1, 0).equal(emb->embedding_table->weight[0].expand({400, 4})));
  emb->train();
  auto e = emb(labels).select(1, 0);
  auto is_null = (e - emb->embedding_table->weight[10]).abs().sum(-1).eq(0);
  const double frac = is_null.to(torch::kDouble).mean().item<double>();
  EXPECT_GT(frac, 0.4);
  EXPECT_LT(frac, 0.6);
  EXPECT_THROW(emb(torch::full({1}, 11, torch::kLong)), Error);
}

TEST(Autocast, Bf16GuardCastsMatmulsAndRestoresState) {
  auto x = torch::randn({4, 8});
  torch::nn::Linear lin(8, 3);
  EXPECT_EQ(lin(x).scalar_type(), torch::kFloat);
  at::Tensor y;
  {
    AutocastGuard amp(torch::kCPU, parse_amp("bf16"));
    y = lin(x);
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    {
      AutocastGuard off(torch::kCPU, parse_amp("off"));  // a no-op guard keeps the outer state
      EXPECT_EQ(lin(x).scalar_type(), torch::kBFloat16);
    }
  }
  EXPECT_EQ(lin(x).scalar_type(), torch::kFloat);  // restored on exit
  EXPECT_TRUE(all_close(y.to(torch::kFloat), lin(x), 2e-2, 2e-2));
  EXPECT_THROW(parse_amp("fp8"), UsageError);
  EXPECT_THROW(AutocastGuard(torch::kCPU, parse_amp("fp16")), UsageError);
}

}  // namespace ctfgen::test
