#include "models/aux_model.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/rng.h"
#include "core/shape.h"

namespace ctfgen::models {
AuxImpl::AuxImpl(const AuxConfig& config, uint64_t init_seed)
    : ClassTokenTransformer(validated(config), config.coarse_vocab, config.fine_vocab),
      config_(config) {
  auto gen = make_generator(init_seed);
  reset_parameters(config.initializer_range, gen);
}

at::Tensor AuxImpl::forward(const at::Tensor& coarse, const at::Tensor& labels) {
  return head(hidden(coarse, labels));
}

at::Tensor AuxImpl::loss(const at::Tensor& coarse, const at::Tensor& fine,
                         const at::Tensor& labels) {
  CTFGEN_CHECK(fine.sizes() == coarse.sizes() && coarse.dim() == 2, "aux_loss: fine ",
               shape_str(fine.sizes()), " and coarse ", shape_str(coarse.sizes()),
               " must have the same shape [B, T]");
  check_tokens(fine, coarse.size(0), config_.fine_vocab, "aux_loss fine");
  auto h = hidden(coarse, labels);  // [B, T, D]
  return head_loss(h, fine.to(h.device(), torch::kLong));
}

at::Tensor AuxImpl::hidden(const at::Tensor& coarse, const at::Tensor& labels) {
  CTFGEN_CHECK(labels.dim() == 1, "Aux: labels must be [B], got ", shape_str(labels.sizes()));
  const int64_t B = labels.size(0);
  check_tokens(coarse, B, config_.coarse_vocab, "Aux coarse");
  const int64_t T = coarse.size(1);
  CTFGEN_CHECK(T >= 1 && T <= config_.block_size, "Aux: coarse must be [B, T] with 1 <= T <= ",
               config_.block_size, ", got ", shape_str(coarse.sizes()));
  auto h = run_blocks(embed(labels, coarse), at::Tensor());  // bidirectional, [B, T + 1, D]
  return h.narrow(1, 1, T);                                   // drop the class position
}

at::Tensor aux_loss(Aux& model, const at::Tensor& coarse, const at::Tensor& fine,
                    const at::Tensor& labels) {
  return model->loss(coarse, fine, labels);
}

}  // namespace ctfgen::models
