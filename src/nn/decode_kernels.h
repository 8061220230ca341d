// Kernels of the decode step (one new position per sequence), where libtorch's general paths
// waste most of the time (docs/performance.md, "ctfgen bench"):
//  - attention of ONE query per (batch, head) over a KV cache: libtorch's batched matmul runs
//    [B, H, 1, hd] x [B, H, hd, t] as B*H separate BLAS calls once t*hd >= 400 (about 6 us each
//    here), 1024 calls per product at batch 64 with guidance. One parallel loop instead reads each
//    cached key and value row once.
//  - linear layers on at most 4 rows (batch 1 or 2 with guidance): OpenBLAS's sgemm reaches
//    about 40 % of the memory bandwidth for such thin products; a weight-streaming kernel
//    (AVX-512 or AVX2, chosen at run time) reads every weight once at close to full bandwidth.
//  - RMSNorm, RoPE and SwiGLU's silu(a) * b: libtorch runs them as 4-14 separate element-wise
//    ops (each with its dispatch, allocation and TensorIterator set-up, a few microseconds), on
//    vectors of a few hundred floats at decode time; one loop each instead. They also take the
//    inference forward of many rows (no autograd), where they save memory passes.
#pragma once
#include <ATen/core/Tensor.h>

namespace ctfgen::nn {

/// Process-wide switch of the decode-step kernels below (default on). Off, the model takes the
/// plain libtorch path everywhere (torch::linear, matmul attention): `ctfgen bench
/// --plain-kernels` measures the difference, and tests compare the two paths.
void set_decode_kernels_enabled(bool on);
bool decode_kernels_enabled();

/// For tests: make small_rows_linear use its AVX2 variant on an AVX-512 CPU (on = true), or the
/// best variant again (false). Returns false, changing nothing, on a CPU without AVX2 + FMA.
bool limit_kernels_to_avx2(bool on);

/// softmax(q k^T * scale) v for a single query per (b, h).
/// q: [B, H, 1, hd]; k, v: [B, H, t, hd] (t >= 1; views into a cache are fine: the last
/// dimension must be contiguous); all float32 -> [B, H, 1, hd] float32 (new tensor).
/// Throws Error for other dtypes or shapes; callers fall back to the matmul path.
at::Tensor single_query_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  double scale);

/// True when single_query_attention accepts these tensors (float32, one query, unit stride on
/// the head dimension) and decode_kernels_enabled().
bool single_query_attention_supported(const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v);

/// Most rows small_rows_linear takes (rows = product of the leading dimensions of x).
constexpr int64_t kSmallLinearMaxRows = 4;

/// True when small_rows_linear can run x W^T: float32 CPU tensors, W [N, K] contiguous, x [..., K]
/// with 1 .. kSmallLinearMaxRows rows, no gradient required (autograd is not supported), CPU
/// autocast off (torch::linear would compute in the autocast dtype), a CPU with AVX-512 F or
/// AVX2 + FMA, and decode_kernels_enabled().
bool small_rows_linear_supported(const at::Tensor& x, const at::Tensor& weight);

/// x W^T without bias. x: [..., K], weight: [N, K] -> [..., N]. Throws Error when
/// small_rows_linear_supported is false.
at::Tensor small_rows_linear(const at::Tensor& x, const at::Tensor& weight);

/// small_rows_linear when supported, else torch::linear(x, weight) (training, many rows, bf16).
at::Tensor linear_no_bias(const at::Tensor& x, const at::Tensor& weight);

/// True when rms_norm_fused can run: float32 CPU x [..., D] contiguous, float32 CPU weight [D]
/// contiguous, no gradient required, decode_kernels_enabled().
bool rms_norm_fused_supported(const at::Tensor& x, const at::Tensor& weight);

/// x * rsqrt(mean(x^2 over the last dimension) + eps) * weight, one pass per row.
/// x: [..., D], weight: [D] -> [..., D] float32 (new tensor). Throws Error when unsupported.
at::Tensor rms_norm_fused(const at::Tensor& x, const at::Tensor& weight, double eps);

/// True when rope_fused can run: float32 CPU x [B, S, H, hd] with a contiguous last dimension
/// (any other strides, e.g. a split of the fused QKV product), hd even, float32 CPU table rows
/// [S, hd/2, 2] contiguous, no gradient required, decode_kernels_enabled().
bool rope_fused_supported(const at::Tensor& x, const at::Tensor& table_rows);

/// apply_rope (nn/rope.h) in one loop: pair j of (b, s, h) becomes (x0 c - x1 s, x1 c + x0 s)
/// with (c, s) = table_rows[s][j]. -> [B, S, H, hd] float32, contiguous (new tensor).
at::Tensor rope_fused(const at::Tensor& x, const at::Tensor& table_rows);

/// True when silu_mul can run: a and b float32 CPU, same shape, both contiguous, no gradient
/// required, decode_kernels_enabled().
bool silu_mul_supported(const at::Tensor& a, const at::Tensor& b);

/// silu(a) * b = a / (1 + exp(-a)) * b element-wise -> new float32 tensor of a's shape.
at::Tensor silu_mul(const at::Tensor& a, const at::Tensor& b);

}  // namespace ctfgen::nn
