#include "models/gpt.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/rng.h"
#include "core/shape.h"

namespace ctfgen::models {
GPTImpl::GPTImpl(const GPTConfig& config, uint64_t init_seed)
    : ClassTokenTransformer(validated(config), config.vocab_size, config.vocab_size),
      config_(config) {
  auto gen = make_generator(init_seed);
  reset_parameters(config.initializer_range, gen);
}

at::Tensor GPTImpl::forward_full(const at::Tensor& tokens, const at::Tensor& labels) {
  return head(hidden_full(tokens, labels));
}

at::Tensor GPTImpl::hidden_full(const at::Tensor& tokens, const at::Tensor& labels) {
  CTFGEN_CHECK(labels.dim() == 1, "GPT: labels must be [B], got ", shape_str(labels.sizes()));
  const int64_t B = labels.size(0);
  check_tokens(tokens, B, config_.vocab_size, "GPT");
  CTFGEN_CHECK(tokens.size(1) <= config_.block_size, "GPT: ", tokens.size(1),
               " input tokens exceed block_size ", config_.block_size);
  auto h = embed(labels, tokens);  // [B, n + 1, D]
  return run_blocks(h, nn::causal_mask(h.size(1), h.device()));
}

at::Tensor GPTImpl::forward_train(const at::Tensor& tokens, const at::Tensor& labels) {
  return forward_full(train_inputs(tokens), labels);
}

at::Tensor GPTImpl::loss(const at::Tensor& tokens, const at::Tensor& labels) {
  auto h = hidden_full(train_inputs(tokens), labels);  // [B, T, D]
  return head_loss(h, tokens.to(h.device(), torch::kLong));
}

at::Tensor GPTImpl::train_inputs(const at::Tensor& tokens) const {
  CTFGEN_CHECK(tokens.dim() == 2 && tokens.size(1) >= 1 && tokens.size(1) <= config_.block_size,
               "GPT forward_train: tokens must be [B, T] with 1 <= T <= ", config_.block_size,
               ", got ", shape_str(tokens.sizes()));
  return tokens.narrow(1, 0, tokens.size(1) - 1);
}

void GPTImpl::setup_cache(int64_t max_batch, at::ScalarType dtype) {
  CTFGEN_CHECK(max_batch >= 1, "GPT setup_cache: max_batch must be >= 1, got ", max_batch);
  const c10::Device device = tok_embeddings->weight.device();
  if (!cache_.empty() && cache_.max_batch >= max_batch &&
      cache_.layers[0].k.scalar_type() == dtype && cache_.layers[0].k.device() == device)
    return;
  cache_ = nn::KVCache::allocate(config_.n_layer, max_batch, config_.n_head, config_.seq_len(),
                                 config_.head_dim(), dtype, device);
  cache_batch_ = 0;
  filled_ = 0;
}

void GPTImpl::clear_cache() {
  cache_ = nn::KVCache{};
  cache_batch_ = 0;
  filled_ = 0;
}

at::Tensor GPTImpl::prefill(const at::Tensor& labels) {
  CTFGEN_CHECK(labels.dim() == 1 && labels.size(0) >= 1, "GPT prefill: labels must be [B], got ",
               shape_str(labels.sizes()));
  const int64_t B = labels.size(0);
  CTFGEN_CHECK(!cache_.empty(), "GPT prefill: call setup_cache first");
  CTFGEN_CHECK(!is_training(), "GPT prefill: the model is in training mode; call eval() first");
  CTFGEN_CHECK(B <= cache_.max_batch, "GPT prefill: batch ", B, " exceeds the cache's max batch ",
               cache_.max_batch);
  torch::NoGradGuard no_grad;
  auto none = torch::empty({B, 0}, labels.options().dtype(torch::kLong));
  auto h = run_blocks_cached(embed(labels, none), cache_, 0);  // [B, 1, D]
  cache_batch_ = B;
  filled_ = 1;
  return head(h).select(1, 0);
}

at::Tensor GPTImpl::decode_step(const at::Tensor& tokens, int64_t pos, bool check_range) {
  CTFGEN_CHECK(cache_batch_ > 0, "GPT decode_step: call prefill first");
  CTFGEN_CHECK_SHAPE(tokens, {cache_batch_}, "GPT decode_step tokens");
  return extend(tokens.view({cache_batch_, 1}), pos, check_range).select(1, 0);
}

at::Tensor GPTImpl::extend(const at::Tensor& tokens, int64_t pos, bool check_range) {
  CTFGEN_CHECK(cache_batch_ > 0, "GPT decode: call prefill first");
  CTFGEN_CHECK(!is_training(), "GPT decode: the model is in training mode; call eval() first");
  CTFGEN_CHECK(tokens.dim() == 2 && tokens.size(0) == cache_batch_ && tokens.size(1) >= 1,
               "GPT decode: tokens must be [", cache_batch_, ", n >= 1] (the prefill batch), got ",
               shape_str(tokens.sizes()));
  const int64_t n = tokens.size(1);
  CTFGEN_CHECK(pos >= 1 && pos + n - 1 <= config_.block_size, "GPT decode: positions [", pos, ", ",
               pos + n, ") must lie in [1, ", config_.block_size + 1, ")");
  CTFGEN_CHECK(pos <= filled_, "GPT decode: pos ", pos, " skips positions (cache holds [0, ",
               filled_, "))");
  torch::NoGradGuard no_grad;
  if (check_range) check_tokens(tokens, cache_batch_, config_.vocab_size, "GPT decode");
  // No token dropout at inference; the class token is not re-fed.
  auto h = run_blocks_cached(
      tok_embeddings(tokens.to(tok_embeddings->weight.device(), torch::kLong)), cache_, pos);
  filled_ = pos + n;
  return head(h);
}

at::Tensor gpt_loss(GPT& model, const at::Tensor& tokens, const at::Tensor& labels) {
  return model->loss(tokens, labels);
}

}  // namespace ctfgen::models
