#include "models/trunk.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/shape.h"
#include "nn/decode_kernels.h"
#include "nn/linear_cross_entropy.h"
#include "nn/rope.h"

namespace ctfgen::models {

ClassTokenTransformer::ClassTokenTransformer(const TrunkConfig& trunk, int64_t in_vocab,
                                             int64_t out_vocab)
    : trunk_(trunk), in_vocab_(in_vocab), out_vocab_(out_vocab) {
  const int64_t D = trunk.dim;
  cls_embedding = register_module(
      "cls_embedding", nn::LabelEmbedder(trunk.num_classes, D, trunk.class_dropout_prob));
  tok_embeddings = register_module("tok_embeddings", torch::nn::Embedding(in_vocab, D));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < trunk.n_layer; ++i) {
    blocks_.push_back(nn::TransformerBlock(D, trunk.n_head, trunk.ffn_hidden(), trunk.norm_eps,
                                           trunk.resid_dropout_p, trunk.ffn_dropout_p));
    layers->push_back(blocks_.back());
  }
  norm = register_module("norm", nn::RMSNorm(D, trunk.norm_eps));
  output = register_module("output",
                           torch::nn::Linear(torch::nn::LinearOptions(D, out_vocab).bias(false)));
  tok_dropout = register_module("tok_dropout", torch::nn::Dropout(trunk.token_dropout_p));
  rope_ = nn::rope_table_2d(trunk.grid(), trunk.head_dim(), trunk.rope_base, trunk.cls_token_num);
}

at::ScalarType ClassTokenTransformer::param_dtype() const {
  return tok_embeddings->weight.scalar_type();
}

int64_t ClassTokenTransformer::count_params() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

void ClassTokenTransformer::reset_parameters(double std, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    auto& p = item.value();
    const std::string& name = item.key();
    if (name == "output.weight") {
      p.zero_();
    } else if (p.dim() >= 2) {
      p.normal_(0.0, std, gen);
    } else {
      p.fill_(1.0);  // RMSNorm weights; there are no biases
    }
  }
}

const at::Tensor& ClassTokenTransformer::rope_on(c10::Device device) {
  if (rope_.device() != device) {
    // The table is a plain member (not moved by Module::to), copied on first use on a device; a
    // normal tensor even inside InferenceMode, so training can save it for backward later.
    c10::InferenceMode normal_tensor(false);
    rope_ = rope_.to(device);
  }
  return rope_;
}

at::Tensor ClassTokenTransformer::embed(const at::Tensor& labels, const at::Tensor& tokens) {
  // Inputs may live anywhere; they are moved to the weights' device (a no-op when already there).
  const c10::Device device = tok_embeddings->weight.device();
  auto cls = cls_embedding(labels.to(device));  // [B, 1, D]
  at::Tensor h = cls;
  if (tokens.size(1) > 0) h = torch::cat({cls, tok_embeddings(tokens.to(device, torch::kLong))}, 1);
  return tok_dropout(h);
}

at::Tensor ClassTokenTransformer::run_blocks(const at::Tensor& h, const at::Tensor& mask) {
  const int64_t S = h.size(1);
  CTFGEN_CHECK(S <= rope_.size(0), "sequence of ", S, " positions exceeds the model's ",
               rope_.size(0), " (1 + block_size)");
  auto rows = rope_on(h.device()).narrow(0, 0, S);
  at::Tensor x = h;
  for (auto& b : blocks_) x = b->forward(x, rows, mask);
  return x;
}

at::Tensor ClassTokenTransformer::run_blocks_cached(const at::Tensor& h, nn::KVCache& cache,
                                                    int64_t start_pos) {
  const int64_t s = h.size(1);
  CTFGEN_CHECK(start_pos >= 0 && start_pos + s <= rope_.size(0), "positions [", start_pos, ", ",
               start_pos + s, ") exceed the model's ", rope_.size(0), " (1 + block_size)");
  CTFGEN_CHECK(static_cast<int64_t>(cache.layers.size()) == trunk_.n_layer,
               "KV cache has ", cache.layers.size(), " layers, model has ", trunk_.n_layer);
  auto rows = rope_on(h.device()).narrow(0, start_pos, s);
  at::Tensor x = h;
  for (size_t i = 0; i < blocks_.size(); ++i)
    x = blocks_[i]->forward_cached(x, rows, cache.layers[i], start_pos);
  return x;
}

at::Tensor ClassTokenTransformer::head(const at::Tensor& h) {
  return nn::linear_no_bias(norm(h), output->weight).to(torch::kFloat32);
}

at::Tensor ClassTokenTransformer::head_loss(const at::Tensor& h, const at::Tensor& targets) {
  CTFGEN_CHECK(targets.dim() == 2 && h.dim() == 3 && targets.size(0) == h.size(0) &&
                   targets.size(1) == h.size(1),
               "head_loss: targets ", shape_str(targets.sizes()), " must match hidden states ",
               shape_str(h.sizes()), " in [B, S]");
  return nn::linear_cross_entropy(norm(h).reshape({-1, h.size(2)}), output->weight,
                                  targets.reshape({-1}));
}

ParamGroups weight_decay_groups(const torch::nn::Module& module) {
  ParamGroups g;
  for (const auto& item : module.named_parameters()) {
    if (!item.value().requires_grad()) continue;
    (item.value().dim() >= 2 ? g.decay : g.no_decay).emplace_back(item.key(), item.value());
  }
  return g;
}

void check_tokens(const at::Tensor& tokens, int64_t B, int64_t vocab, const char* what) {
  CTFGEN_CHECK(tokens.dim() == 2 && tokens.size(0) == B, what, ": tokens must be [", B,
               ", n], got ", shape_str(tokens.sizes()));
  CTFGEN_CHECK(!at::isFloatingType(tokens.scalar_type()), what, ": tokens must be integers");
  if (tokens.numel() == 0) return;
  const auto [lo, hi] = int_range(tokens);
  CTFGEN_CHECK(lo >= 0 && hi < vocab, what, ": tokens must be in [0, ", vocab, "), got range [",
               lo, ", ", hi, "]");
}

}  // namespace ctfgen::models
