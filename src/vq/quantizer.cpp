#include "vq/quantizer.h"

#include <torch/torch.h>

#include "core/shape.h"

namespace ctfgen::vq {

namespace F = torch::nn::functional;

namespace {
at::Tensor l2_normalize(const at::Tensor& x) {
  return F::normalize(x, F::NormalizeFuncOptions().p(2.0).dim(-1).eps(1e-12));
}

// Squared distances [N, V] between rows of z [N, D] and codes e [V, D]:
// ||z||^2 + ||e||^2 - 2 z e^T, the formula LlamaGen uses.
at::Tensor squared_distances(const at::Tensor& z, const at::Tensor& e) {
  auto zz = z.pow(2).sum(1, /*keepdim=*/true);  // [N, 1]
  auto ee = e.pow(2).sum(1).unsqueeze(0);       // [1, V]
  return torch::addmm(zz + ee, z, e.t(), /*beta=*/1.0, /*alpha=*/-2.0);
}
}  // namespace

VectorQuantizerImpl::VectorQuantizerImpl(const VQConfig& cfg) : config(cfg) {
  // Registration order as in LlamaGen's state dict: the buffer, then the embedding.
  codebook_used = register_buffer("codebook_used", torch::zeros({kCodebookUsedWindow}));
  embedding = register_module(
      "embedding", torch::nn::Embedding(config.codebook_size, config.codebook_dim));
}

void VectorQuantizerImpl::reset_codebook(at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const double b = 1.0 / static_cast<double>(config.codebook_size);
  embedding->weight.uniform_(-b, b, gen);
  if (config.codebook_l2_norm) embedding->weight.copy_(l2_normalize(embedding->weight));
  codebook_used.zero_();
}

at::Tensor VectorQuantizerImpl::normalized_codebook() const {
  return config.codebook_l2_norm ? l2_normalize(embedding->weight) : embedding->weight;
}

at::Tensor VectorQuantizerImpl::nearest_codes(const at::Tensor& z_flat) const {
  CTFGEN_CHECK_SHAPE(z_flat, {-1, config.codebook_dim}, "quantizer nearest_codes input");
  torch::NoGradGuard no_grad;
  // argmin_j |z - e_j|^2 = argmin_j (|e_j|^2 - 2 z.e_j): |z|^2 is the same for every j. Rows go in
  // chunks so that the [rows, V] score matrix stays cache-sized instead of one [N, V] allocation
  // (at N = 12,544 tokens and V = 4,096 that was 205 MB per batch, mapped and unmapped each time).
  const auto codebook = normalized_codebook();
  const auto ee = codebook.pow(2).sum(1).unsqueeze(0);  // [1, V]
  const auto et = codebook.t();
  const int64_t N = z_flat.size(0), V = codebook.size(0);
  const int64_t chunk = std::max<int64_t>(64, (int64_t{1} << 21) / std::max<int64_t>(V, 1));
  if (N <= chunk) return torch::argmin(torch::addmm(ee, z_flat, et, 1.0, -2.0), /*dim=*/1);
  auto out = torch::empty({N}, z_flat.options().dtype(torch::kLong));
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t e = std::min(N, s + chunk);
    out.slice(0, s, e).copy_(
        torch::argmin(torch::addmm(ee, z_flat.slice(0, s, e), et, 1.0, -2.0), /*dim=*/1));
  }
  return out;
}

at::Tensor VectorQuantizerImpl::lookup(const at::Tensor& indices) const {
  CTFGEN_CHECK(indices.dim() == 3, "quantizer lookup: indices must be [B, h, w], got ",
               shape_str(indices.sizes()));
  auto idx = indices.to(embedding->weight.device(), torch::kLong);  // indices may be anywhere
  if (idx.numel() > 0) {
    const auto [lo, hi] = int_range(idx);
    CTFGEN_CHECK(lo >= 0 && hi < config.codebook_size, "quantizer lookup: code indices must be in [0, ",
                 config.codebook_size, "), got range [", lo, ", ", hi, "]");
  }
  auto rows = normalized_codebook().index_select(0, idx.reshape({-1}));  // [B*h*w, D]
  return rows.reshape({idx.size(0), idx.size(1), idx.size(2), config.codebook_dim})
      .permute({0, 3, 1, 2})
      .contiguous();
}

QuantizerOutput VectorQuantizerImpl::forward(const at::Tensor& z_in) {
  CTFGEN_CHECK_SHAPE(z_in, {-1, config.codebook_dim, -1, -1}, "quantizer input");
  const int64_t B = z_in.size(0), D = z_in.size(1), h = z_in.size(2), w = z_in.size(3);
  // [B, D, h, w] -> [B, h, w, D] -> [N, D]: raster order, batch-major.
  auto z = z_in.permute({0, 2, 3, 1}).contiguous();
  auto codebook = normalized_codebook();
  if (config.codebook_l2_norm) z = l2_normalize(z);
  auto z_flat = z.reshape({-1, D});

  QuantizerOutput out;
  at::Tensor d;
  const bool want_entropy = config.entropy_loss_ratio > 0.0;
  if (want_entropy) {
    d = squared_distances(z_flat, codebook);  // with autograd: the entropy loss needs it
    out.indices = torch::argmin(d.detach(), 1);
  } else {
    out.indices = nearest_codes(z_flat);
  }
  auto zq = codebook.index_select(0, out.indices).reshape({B, h, w, D});

  out.codebook_loss = torch::mean((zq - z.detach()).pow(2));
  out.commit_loss = config.commit_beta * torch::mean((zq.detach() - z).pow(2));
  if (want_entropy) {
    auto logits = -d / config.entropy_temperature;
    auto probs = torch::softmax(logits, -1);
    auto log_probs = torch::log_softmax(logits + 1e-5, -1);
    auto sample_entropy = -torch::mean(torch::sum(probs * log_probs, -1));
    auto avg_probs = torch::mean(probs, 0);
    auto avg_entropy = -torch::sum(avg_probs * torch::log(avg_probs + 1e-5));
    out.entropy_loss = config.entropy_loss_ratio * (sample_entropy - avg_entropy);
  } else {
    out.entropy_loss = torch::zeros({}, z.options());
  }

  // Straight-through estimator on the normalised z.
  auto st = z + (zq - z).detach();
  out.z_q = st.permute({0, 3, 1, 2}).contiguous();
  out.indices = out.indices.reshape({B, h, w});
  out.z_flat = z_flat.detach();

  if (is_training()) {
    torch::NoGradGuard no_grad;
    auto idx = out.indices.reshape({-1}).to(torch::kFloat);
    const int64_t n = idx.numel(), W = codebook_used.numel();
    if (n >= W) {
      codebook_used.copy_(idx.slice(0, n - W, n));
    } else {
      codebook_used.slice(0, 0, W - n).copy_(codebook_used.slice(0, n, W).clone());
      codebook_used.slice(0, W - n, W).copy_(idx);
    }
  }
  return out;
}

double VectorQuantizerImpl::window_usage() const {
  return static_cast<double>(std::get<0>(at::_unique(codebook_used)).numel()) /
         static_cast<double>(config.codebook_size);
}

int64_t VectorQuantizerImpl::restart_dead_codes(const at::Tensor& z_flat, at::Generator& gen,
                                                int64_t recent) {
  CTFGEN_CHECK_SHAPE(z_flat, {-1, config.codebook_dim}, "restart_dead_codes input");
  CTFGEN_CHECK(z_flat.size(0) > 0, "restart_dead_codes: no encoder vectors given");
  torch::NoGradGuard no_grad;
  const int64_t V = config.codebook_size;
  auto used = torch::zeros({V}, codebook_used.options().dtype(torch::kBool));
  CTFGEN_CHECK(recent >= 1, "restart_dead_codes: recent must be >= 1, got ", recent);
  const int64_t W = codebook_used.numel();
  auto window = codebook_used.slice(0, W - std::min(recent, W), W).to(torch::kLong).clamp(0, V - 1);
  used.index_fill_(0, window, true);
  auto dead = torch::nonzero(~used).reshape({-1});
  const int64_t n_dead = dead.numel();
  if (n_dead == 0) return 0;
  const int64_t n = z_flat.size(0);
  // Draws on the CPU generator, then moved (the same restarts on every device; core/rng.h).
  at::Tensor pick;
  if (n_dead <= n) {
    pick = torch::randperm(n, gen, torch::kLong).slice(0, 0, n_dead);
  } else {
    pick = torch::randint(0, n, {n_dead}, gen, torch::kLong);
  }
  auto rows = z_flat.index_select(0, pick.to(z_flat.device())).to(embedding->weight.dtype());
  if (config.dead_code_noise > 0.0)
    rows = rows + config.dead_code_noise *
                      torch::randn(rows.sizes(), gen, torch::kFloat32).to(rows.options());
  embedding->weight.index_copy_(0, dead, rows);
  return n_dead;
}

}  // namespace ctfgen::vq
