#include "nn/decode_kernels.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CTFGEN_X86_KERNELS 1
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/shape.h"

// GCC 12's own _mm512_reduce_add_ps reads an intentionally undefined register and warns
// (-Wmaybe-uninitialized) where it is inlined; silenced for this file only (unity builds).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace ctfgen::nn {
namespace decode_kernels_impl {

std::atomic<bool> kernels_on{true};

bool cpu_autocast_on() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(c10::DeviceType::CPU);
#else
  return at::autocast::is_cpu_enabled();
#endif
}

struct Args {
  const float* q;   // [B*H, hd] contiguous
  const float* k;   // strides below
  const float* v;
  float* out;       // [B*H, hd] contiguous
  int64_t H, t, hd;
  int64_t ks0, ks1, ks2, vs0, vs1, vs2;
  float scale;
};

// One (b, h) pair per iteration: scores, max-subtracted softmax, weighted sum of values.
// The dot products keep 8 partial sums so the compiler can vectorise without reassociating.
// Compiled for AVX-512, AVX2 and baseline x86-64; the loader picks the best clone (ifunc).
// (A split version calling libtorch's vectorised softmax between two loops measured slower at
// batch 1 and no faster at batch 64: the cost is in reading the cache, not in exp.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void attend_range(const Args& a, int64_t begin, int64_t end, float* w) {
  const int64_t hd = a.hd, hd8 = hd / 8 * 8;
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / a.H, h = bh % a.H;
    const float* q = a.q + bh * hd;
    const float* kb = a.k + b * a.ks0 + h * a.ks1;
    const float* vb = a.v + b * a.vs0 + h * a.vs1;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < a.t; ++j) {
      const float* kr = kb + j * a.ks2;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t d = 0; d < hd8; d += 8)
        for (int i = 0; i < 8; ++i) acc[i] += q[d + i] * kr[d + i];
      float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (int64_t d = hd8; d < hd; ++d) s += q[d] * kr[d];
      s *= a.scale;
      w[j] = s;
      mx = std::max(mx, s);
    }
    float z = 0;
    for (int64_t j = 0; j < a.t; ++j) {
      w[j] = std::exp(w[j] - mx);
      z += w[j];
    }
    const float inv = 1.0f / z;
    float* o = a.out + bh * hd;
    for (int64_t d = 0; d < hd; ++d) o[d] = 0;
    for (int64_t j = 0; j < a.t; ++j) {
      const float p = w[j] * inv;
      const float* vr = vb + j * a.vs2;
      for (int64_t d = 0; d < hd; ++d) o[d] += p * vr[d];
    }
  }
}

#if CTFGEN_X86_KERNELS
// y[r, n] = sum_k x[r, k] W[n, k] for rows r < R and outputs n in [n0, n1): each weight row is
// loaded once and multiplied with all R input rows (which stay in L1/L2), so the kernel streams
// the weights at memory speed. Horizontal sums at the end of each output.
template <int R>
__attribute__((target("avx512f"))) void rows_avx512(const float* x, int64_t K, const float* W,
                                                   float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t K16 = K & ~int64_t{15};
  for (int64_t n = n0; n < n1; ++n) {
    const float* w = W + n * K;
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K16; k += 16) {
      const __m512 wv = _mm512_loadu_ps(w + k);
      for (int r = 0; r < R; ++r)
        acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * K + k), wv, acc[r]);
    }
    for (int r = 0; r < R; ++r) {
      float s = _mm512_reduce_add_ps(acc[r]);
      for (int64_t k = K16; k < K; ++k) s += x[r * K + k] * w[k];
      y[r * N + n] = s;
    }
  }
}

template <int R>
__attribute__((target("avx2,fma"))) void rows_avx2(const float* x, int64_t K, const float* W,
                                                  float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t K8 = K & ~int64_t{7};
  for (int64_t n = n0; n < n1; ++n) {
    const float* w = W + n * K;
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) {
      const __m256 wv = _mm256_loadu_ps(w + k);
      for (int r = 0; r < R; ++r)
        acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * K + k), wv, acc[r]);
    }
    for (int r = 0; r < R; ++r) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, acc[r]);
      float s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
      for (int64_t k = K8; k < K; ++k) s += x[r * K + k] * w[k];
      y[r * N + n] = s;
    }
  }
}

enum class Isa { None, Avx2, Avx512 };

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
  return Isa::None;
}

std::atomic<bool> avx2_only{false};  // limit_kernels_to_avx2 (tests)

Isa isa() {
  static const Isa detected = detect_isa();
  return detected == Isa::Avx512 && avx2_only ? Isa::Avx2 : detected;
}

template <int R>
void rows_dispatch(const float* x, int64_t K, const float* W, float* y, int64_t N, int64_t n0,
                   int64_t n1) {
  if (isa() == Isa::Avx512)
    rows_avx512<R>(x, K, W, y, N, n0, n1);
  else
    rows_avx2<R>(x, K, W, y, N, n0, n1);
}
#endif


// RMSNorm of rows [r0, r1) of x [rows, D]: y = (x * inv_rms) * w, as the libtorch path orders it.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void rms_norm_rows(const float* x, const float* w, float* y, int64_t D, float eps, int64_t r0,
                   int64_t r1) {
  const int64_t D8 = D / 8 * 8;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * D;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t d = 0; d < D8; d += 8)
      for (int i = 0; i < 8; ++i) acc[i] += xr[d + i] * xr[d + i];
    float ss = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (int64_t d = D8; d < D; ++d) ss += xr[d] * xr[d];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
    float* yr = y + r * D;
    for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] * inv) * w[d];
  }
}

struct RopeArgs {
  const float* x;  // [B, S, H, hd] with strides xs0..xs2 (last dimension contiguous)
  const float* table;  // [S, hd/2, 2] contiguous
  float* y;  // [B, S, H, hd] contiguous
  int64_t S, H, hd, xs0, xs1, xs2;
};

// Rows [i0, i1) of the flattened (b, s, h) index.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void rope_rows(const RopeArgs& a, int64_t i0, int64_t i1) {
  const int64_t half = a.hd / 2;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t h = i % a.H, s = (i / a.H) % a.S, b = i / (a.H * a.S);
    const float* xr = a.x + b * a.xs0 + s * a.xs1 + h * a.xs2;
    const float* t = a.table + s * a.hd;
    float* yr = a.y + i * a.hd;
    for (int64_t j = 0; j < half; ++j) {
      const float x0 = xr[2 * j], x1 = xr[2 * j + 1], c = t[2 * j], sn = t[2 * j + 1];
      yr[2 * j] = x0 * c - x1 * sn;
      yr[2 * j + 1] = x1 * c + x0 * sn;
    }
  }
}

void silu_mul_range(const float* a, const float* b, float* y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

// True when no input needs a gradient (the kernels have no backward).
bool no_grad_needed(std::initializer_list<const at::Tensor*> ts) {
  if (!at::GradMode::is_enabled()) return true;
  for (const auto* t : ts)
    if (t->requires_grad()) return false;
  return true;
}

bool cpu_float(const at::Tensor& t) {
  return t.defined() && t.scalar_type() == at::kFloat && t.device().is_cpu();
}

// Work items of about 32K floats per task: decode-sized inputs stay on the calling thread.
int64_t grain_for(int64_t floats_per_item) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, floats_per_item));
}

}  // namespace decode_kernels_impl

void set_decode_kernels_enabled(bool on) { decode_kernels_impl::kernels_on = on; }

bool limit_kernels_to_avx2(bool on) {
#if CTFGEN_X86_KERNELS
  decode_kernels_impl::avx2_only = false;
  if (decode_kernels_impl::isa() == decode_kernels_impl::Isa::None) return false;
  decode_kernels_impl::avx2_only = on;
  return true;
#else
  return false;
#endif
}
bool decode_kernels_enabled() { return decode_kernels_impl::kernels_on; }

bool single_query_attention_supported(const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v) {
  return decode_kernels_enabled() && q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.size(2) == 1 &&
         q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat &&
         v.scalar_type() == at::kFloat && k.sizes() == v.sizes() && k.size(2) >= 1 &&
         q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) &&
         k.stride(3) == 1 && v.stride(3) == 1 && q.device().is_cpu() && k.device().is_cpu() &&
         v.device().is_cpu();
}

at::Tensor single_query_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  double scale) {
  CTFGEN_CHECK(single_query_attention_supported(q, k, v),
               "single_query_attention: needs float32 CPU q [B, H, 1, hd] and k, v [B, H, t, hd] "
               "with a contiguous last dimension, got q ",
               shape_str(q.sizes()), " ", q.scalar_type(), ", k ", shape_str(k.sizes()), " ",
               k.scalar_type(), ", v ", shape_str(v.sizes()));
  const int64_t B = q.size(0), H = q.size(1), hd = q.size(3), t = k.size(2);
  auto qc = q.contiguous();
  auto out = at::empty({B, H, 1, hd}, q.options());
  decode_kernels_impl::Args a{qc.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>(),
                                out.data_ptr<float>(), H, t, hd,
                                k.stride(0), k.stride(1), k.stride(2),
                                v.stride(0), v.stride(1), v.stride(2),
                                static_cast<float>(scale)};
  // About 32K multiply-adds per task, so small batches stay on one thread (waking the pool costs
  // more than it saves) and large ones use every thread.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, 2 * t * hd));
  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> w(static_cast<size_t>(t));
    decode_kernels_impl::attend_range(a, begin, end, w.data());
  });
  return out;
}

bool small_rows_linear_supported(const at::Tensor& x, const at::Tensor& weight) {
#if CTFGEN_X86_KERNELS
  if (!decode_kernels_enabled()) return false;
  if (decode_kernels_impl::isa() == decode_kernels_impl::Isa::None) return false;
  if (decode_kernels_impl::cpu_autocast_on()) return false;
  if (!decode_kernels_impl::cpu_float(x) || !decode_kernels_impl::cpu_float(weight)) return false;
  if (weight.dim() != 2 || !weight.is_contiguous() || x.dim() < 1) return false;
  const int64_t K = weight.size(1);
  if (x.size(-1) != K || K < 1 || weight.size(0) < 1) return false;
  const int64_t rows = x.numel() / K;
  if (rows < 1 || rows > kSmallLinearMaxRows) return false;
  return decode_kernels_impl::no_grad_needed({&x, &weight});
#else
  return false;
#endif
}

at::Tensor small_rows_linear(const at::Tensor& x, const at::Tensor& weight) {
  CTFGEN_CHECK(small_rows_linear_supported(x, weight),
               "small_rows_linear: needs float32 CPU x [..., K] with at most ",
               kSmallLinearMaxRows, " rows, a contiguous weight [N, K], no autograd and AVX2 or "
               "AVX-512; got x ", shape_str(x.sizes()), " ", x.scalar_type(), ", weight ",
               shape_str(weight.sizes()), " ", weight.scalar_type());
#if CTFGEN_X86_KERNELS
  const int64_t K = weight.size(1), N = weight.size(0), rows = x.numel() / K;
  auto xc = x.contiguous();
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = N;
  auto y = at::empty(out_shape, x.options());
  const float* xp = xc.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // Tasks of about 64K weights: one thread for small matrices, all threads for large ones.
  const int64_t grain = std::max<int64_t>(1, 65536 / K);
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    using namespace decode_kernels_impl;
    switch (rows) {
      case 1: rows_dispatch<1>(xp, K, wp, yp, N, n0, n1); break;
      case 2: rows_dispatch<2>(xp, K, wp, yp, N, n0, n1); break;
      case 3: rows_dispatch<3>(xp, K, wp, yp, N, n0, n1); break;
      default: rows_dispatch<4>(xp, K, wp, yp, N, n0, n1); break;
    }
  });
  return y;
#else
  return at::Tensor();
#endif
}

at::Tensor linear_no_bias(const at::Tensor& x, const at::Tensor& weight) {
  if (small_rows_linear_supported(x, weight)) return small_rows_linear(x, weight);
  return torch::nn::functional::linear(x, weight);
}

bool rms_norm_fused_supported(const at::Tensor& x, const at::Tensor& weight) {
  using namespace decode_kernels_impl;
  return decode_kernels_enabled() && cpu_float(x) && cpu_float(weight) && x.dim() >= 1 &&
         weight.dim() == 1 && x.size(-1) == weight.size(0) && weight.size(0) >= 1 &&
         x.is_contiguous() && weight.is_contiguous() && no_grad_needed({&x, &weight});
}

at::Tensor rms_norm_fused(const at::Tensor& x, const at::Tensor& weight, double eps) {
  CTFGEN_CHECK(rms_norm_fused_supported(x, weight),
               "rms_norm_fused: needs contiguous float32 CPU x [..., D] and weight [D], no "
               "autograd; got x ", shape_str(x.sizes()), " ", x.scalar_type(), ", weight ",
               shape_str(weight.sizes()), " ", weight.scalar_type());
  const int64_t D = weight.size(0), rows = x.numel() / D;
  auto y = at::empty(x.sizes(), x.options());
  const float* xp = x.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float e = static_cast<float>(eps);
  at::parallel_for(0, rows, decode_kernels_impl::grain_for(D), [&](int64_t r0, int64_t r1) {
    decode_kernels_impl::rms_norm_rows(xp, wp, yp, D, e, r0, r1);
  });
  return y;
}

bool rope_fused_supported(const at::Tensor& x, const at::Tensor& table_rows) {
  using namespace decode_kernels_impl;
  return decode_kernels_enabled() && cpu_float(x) && cpu_float(table_rows) && x.dim() == 4 &&
         x.size(3) % 2 == 0 && x.stride(3) == 1 && table_rows.dim() == 3 &&
         table_rows.size(0) == x.size(1) && table_rows.size(1) * 2 == x.size(3) &&
         table_rows.size(2) == 2 && table_rows.is_contiguous() &&
         no_grad_needed({&x, &table_rows});
}

at::Tensor rope_fused(const at::Tensor& x, const at::Tensor& table_rows) {
  CTFGEN_CHECK(rope_fused_supported(x, table_rows),
               "rope_fused: needs float32 CPU x [B, S, H, hd] (hd even, last dimension "
               "contiguous) and table rows [S, hd/2, 2], no autograd; got x ",
               shape_str(x.sizes()), " ", x.scalar_type(), ", table ",
               shape_str(table_rows.sizes()), " ", table_rows.scalar_type());
  auto y = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t n = x.size(0) * x.size(1) * x.size(2);
  decode_kernels_impl::RopeArgs a{x.data_ptr<float>(), table_rows.data_ptr<float>(),
                                  y.data_ptr<float>(), x.size(1), x.size(2), x.size(3),
                                  x.stride(0), x.stride(1), x.stride(2)};
  at::parallel_for(0, n, decode_kernels_impl::grain_for(x.size(3)),
                   [&](int64_t i0, int64_t i1) { decode_kernels_impl::rope_rows(a, i0, i1); });
  return y;
}

bool silu_mul_supported(const at::Tensor& a, const at::Tensor& b) {
  using namespace decode_kernels_impl;
  return decode_kernels_enabled() && cpu_float(a) && cpu_float(b) && a.sizes() == b.sizes() &&
         a.is_contiguous() && b.is_contiguous() && no_grad_needed({&a, &b});
}

at::Tensor silu_mul(const at::Tensor& a, const at::Tensor& b) {
  CTFGEN_CHECK(silu_mul_supported(a, b),
               "silu_mul: needs contiguous float32 CPU tensors of one shape, no autograd; got ",
               shape_str(a.sizes()), " ", a.scalar_type(), " and ", shape_str(b.sizes()), " ",
               b.scalar_type());
  auto y = at::empty(a.sizes(), a.options());
  const float* ap = a.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, a.numel(), 32768, [&](int64_t i0, int64_t i1) {
    decode_kernels_impl::silu_mul_range(ap, bp, yp, i0, i1);
  });
  return y;
}

}  // namespace ctfgen::nn

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
