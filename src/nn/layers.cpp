#include "nn/layers.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/shape.h"
#include "nn/decode_kernels.h"
#include "nn/rope.h"

namespace ctfgen::nn {

int64_t swiglu_hidden_dim(int64_t dim, int64_t multiple_of, double ffn_dim_multiplier) {
  CTFGEN_CHECK(dim >= 1 && multiple_of >= 1, "swiglu_hidden_dim: dim ", dim, ", multiple_of ",
               multiple_of, " must be >= 1");
  int64_t hidden = (2 * 4 * dim) / 3;  // int(2 * (4 * dim) / 3) for positive integers
  if (ffn_dim_multiplier > 0) hidden = static_cast<int64_t>(ffn_dim_multiplier * hidden);
  return (hidden + multiple_of - 1) / multiple_of * multiple_of;
}

// ---------------------------------------------------------------------------------------------
RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  if (rms_norm_fused_supported(x, weight)) return rms_norm_fused(x, weight, eps);
  auto xf = x.to(torch::kFloat32);
  auto normed = xf * torch::rsqrt((xf * xf).mean(-1, /*keepdim=*/true) + eps);
  return normed.to(x.scalar_type()) * weight;
}

// ---------------------------------------------------------------------------------------------
FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden, double p) {
  w1 = register_module("w1", torch::nn::Linear(torch::nn::LinearOptions(dim, hidden).bias(false)));
  w3 = register_module("w3", torch::nn::Linear(torch::nn::LinearOptions(dim, hidden).bias(false)));
  w2 = register_module("w2", torch::nn::Linear(torch::nn::LinearOptions(hidden, dim).bias(false)));
  ffn_dropout = register_module("ffn_dropout", torch::nn::Dropout(p));
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) {
  // linear_no_bias: the thin-product kernel at decode time, torch::linear otherwise.
  auto a = linear_no_bias(x, w1->weight), b = linear_no_bias(x, w3->weight);
  auto gated = silu_mul_supported(a, b) ? silu_mul(a, b) : torch::silu(a) * b;
  return ffn_dropout(linear_no_bias(gated, w2->weight));
}

// ---------------------------------------------------------------------------------------------
LabelEmbedderImpl::LabelEmbedderImpl(int64_t num_classes_, int64_t dim, double p)
    : num_classes(num_classes_), dropout_prob(p) {
  embedding_table = register_module("embedding_table", torch::nn::Embedding(num_classes + 1, dim));
}

at::Tensor LabelEmbedderImpl::forward(const at::Tensor& labels) {
  CTFGEN_CHECK(labels.dim() == 1, "LabelEmbedder: labels must be [B], got ",
               shape_str(labels.sizes()));
  auto lab = labels.to(torch::kLong);
  if (lab.numel() > 0) {
    const auto [lo, hi] = int_range(lab);
    CTFGEN_CHECK(lo >= 0 && hi <= num_classes, "LabelEmbedder: labels must be in [0, ",
                 num_classes, "] (", num_classes, " = null class), got range [", lo, ", ", hi,
                 "]");
  }
  if (is_training() && dropout_prob > 0) {
    // The device's global generator, like every dropout (core/rng.h).
    auto drop = torch::rand({lab.size(0)}, lab.options().dtype(torch::kFloat32)) < dropout_prob;
    lab = torch::where(drop, torch::full_like(lab, num_classes), lab);
  }
  return embedding_table(lab).unsqueeze(1);
}

// ---------------------------------------------------------------------------------------------
KVCache KVCache::allocate(int64_t n_layer, int64_t max_batch, int64_t n_head, int64_t max_seq,
                          int64_t head_dim, at::ScalarType dtype, c10::Device device) {
  CTFGEN_CHECK(max_batch >= 1 && max_seq >= 1, "KVCache: max_batch ", max_batch, " and max_seq ",
               max_seq, " must be >= 1");
  KVCache c;
  c.max_batch = max_batch;
  c.max_seq = (max_seq + 7) / 8 * 8;
  // Normal (non-inference) tensors, so the cache can be written inside and outside InferenceMode.
  c10::InferenceMode normal_tensors(false);
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  for (int64_t i = 0; i < n_layer; ++i)
    c.layers.push_back({torch::zeros({max_batch, n_head, c.max_seq, head_dim}, opts),
                        torch::zeros({max_batch, n_head, c.max_seq, head_dim}, opts)});
  return c;
}

int64_t KVCache::bytes() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.k.nbytes() + l.v.nbytes();
  return n;
}

// ---------------------------------------------------------------------------------------------
AttentionImpl::AttentionImpl(int64_t dim_, int64_t n_head_, double p)
    : dim(dim_), n_head(n_head_), head_dim(dim_ / n_head_) {
  CTFGEN_CHECK(n_head >= 1 && dim % n_head == 0, "Attention: dim ", dim,
               " must be a multiple of n_head ", n_head);
  wqkv = register_module("wqkv",
                         torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(false)));
  wo = register_module("wo", torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(false)));
  resid_dropout = register_module("resid_dropout", torch::nn::Dropout(p));
}

void AttentionImpl::project(const at::Tensor& x, const at::Tensor& rope_rows, at::Tensor& q,
                            at::Tensor& k, at::Tensor& v) {
  CTFGEN_CHECK(x.dim() == 3 && x.size(2) == dim, "Attention: x must be [B, S, ", dim, "], got ",
               shape_str(x.sizes()));
  const int64_t B = x.size(0), S = x.size(1);
  auto parts = linear_no_bias(x, wqkv->weight).split(dim, -1);  // q | k | v
  q = apply_rope(parts[0].view({B, S, n_head, head_dim}), rope_rows).transpose(1, 2);
  k = apply_rope(parts[1].view({B, S, n_head, head_dim}), rope_rows).transpose(1, 2);
  v = parts[2].view({B, S, n_head, head_dim}).transpose(1, 2);
}

at::Tensor AttentionImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& mask) {
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(head_dim)));
  if (mask.defined())
    scores = scores.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity());
  auto probs = scores.scalar_type() == torch::kFloat32
                   ? torch::softmax(scores, -1)
                   : torch::softmax(scores, -1, torch::kFloat32).to(v.scalar_type());
  return torch::matmul(probs, v);  // [B, H, S, hd]
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& rope_rows,
                                  const at::Tensor& mask) {
  at::Tensor q, k, v;
  project(x, rope_rows, q, k, v);
  const int64_t B = x.size(0), S = x.size(1);
  if (mask.defined()) CTFGEN_CHECK_SHAPE(mask, {S, S}, "Attention mask");
  auto y = attend(q, k, v, mask).transpose(1, 2).reshape({B, S, dim});
  return resid_dropout(linear_no_bias(y, wo->weight));
}

at::Tensor AttentionImpl::forward_cached(const at::Tensor& x, const at::Tensor& rope_rows,
                                         LayerKV& cache, int64_t start_pos) {
  at::Tensor q, k, v;
  project(x, rope_rows, q, k, v);
  const int64_t B = x.size(0), s = x.size(1), end = start_pos + s;
  CTFGEN_CHECK(cache.k.defined(), "Attention: KV cache is not set up");
  CTFGEN_CHECK(B <= cache.k.size(0), "Attention: batch ", B, " exceeds the cache's max batch ",
               cache.k.size(0));
  CTFGEN_CHECK(start_pos >= 0 && end <= cache.k.size(2), "Attention: positions [", start_pos, ", ",
               end, ") exceed the cache length ", cache.k.size(2));
  // In-place writes at the input positions; no allocation of cache storage per step.
  cache.k.narrow(0, 0, B).narrow(2, start_pos, s).copy_(k);
  cache.v.narrow(0, 0, B).narrow(2, start_pos, s).copy_(v);
  auto keys = cache.k.narrow(0, 0, B).narrow(2, 0, end);
  auto vals = cache.v.narrow(0, 0, B).narrow(2, 0, end);
  at::Tensor mask;  // a single query at position end-1 sees every cached position
  if (s > 1)
    mask = torch::ones({s, end}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
               .tril(start_pos);
  // One query (the decode step): a fused kernel instead of B*H small BLAS calls per product.
  auto y = s == 1 && single_query_attention_supported(q, keys, vals)
               ? single_query_attention(q, keys, vals, 1.0 / std::sqrt(double(head_dim)))
               : attend(q, keys.to(q.scalar_type()), vals.to(q.scalar_type()), mask);
  return resid_dropout(linear_no_bias(y.transpose(1, 2).reshape({B, s, dim}), wo->weight));
}

at::Tensor attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& mask) {
  auto qd = q.to(torch::kDouble).contiguous(), kd = k.to(torch::kDouble).contiguous(),
       vd = v.to(torch::kDouble).contiguous();
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), D = q.size(3), Skv = k.size(2);
  auto out = torch::zeros({B, H, S, D}, torch::kDouble);
  auto qa = qd.accessor<double, 4>(), ka = kd.accessor<double, 4>(), va = vd.accessor<double, 4>();
  auto oa = out.accessor<double, 4>();
  at::Tensor m = mask.defined() ? mask.to(torch::kBool).contiguous() : at::Tensor();
  const double scale = 1.0 / std::sqrt(double(D));
  std::vector<double> w(Skv);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i) {
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Skv; ++j) {
          const bool ok = !m.defined() || m[i][j].item<bool>();
          double s = -std::numeric_limits<double>::infinity();
          if (ok) {
            s = 0;
            for (int64_t d = 0; d < D; ++d) s += qa[b][h][i][d] * ka[b][h][j][d];
            s *= scale;
          }
          w[j] = s;
          mx = std::max(mx, s);
        }
        double z = 0;
        for (int64_t j = 0; j < Skv; ++j) z += (w[j] = std::exp(w[j] - mx));
        for (int64_t j = 0; j < Skv; ++j)
          for (int64_t d = 0; d < D; ++d) oa[b][h][i][d] += w[j] / z * va[b][h][j][d];
      }
  return out.to(q.scalar_type());
}

// ---------------------------------------------------------------------------------------------
TransformerBlockImpl::TransformerBlockImpl(int64_t dim, int64_t n_head, int64_t ffn_hidden,
                                           double norm_eps, double resid_dropout,
                                           double ffn_dropout) {
  attention = register_module("attention", Attention(dim, n_head, resid_dropout));
  feed_forward = register_module("feed_forward", FeedForward(dim, ffn_hidden, ffn_dropout));
  attention_norm = register_module("attention_norm", RMSNorm(dim, norm_eps));
  ffn_norm = register_module("ffn_norm", RMSNorm(dim, norm_eps));
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& rope_rows,
                                         const at::Tensor& mask) {
  auto h = x + attention->forward(attention_norm(x), rope_rows, mask);
  return h + feed_forward(ffn_norm(h));
}

at::Tensor TransformerBlockImpl::forward_cached(const at::Tensor& x, const at::Tensor& rope_rows,
                                                LayerKV& cache, int64_t start_pos) {
  auto h = x + attention->forward_cached(attention_norm(x), rope_rows, cache, start_pos);
  return h + feed_forward(ffn_norm(h));
}

at::Tensor causal_mask(int64_t S, c10::Device device) {
  return torch::ones({S, S}, torch::TensorOptions().dtype(torch::kBool).device(device)).tril();
}

}  // namespace ctfgen::nn
