// src/models/gpt: config, LlamaGen names/shapes/counts, KV-cache decoding vs full forward,
// causality, training loss, bf16 inference, PyTorch oracle.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/gpt.h"
#include "test_util.h"

namespace ctfgen::test {
using models::GPT;
using models::GPTConfig;

namespace {
GPTConfig tiny_config() {
  auto c = GPTConfig::preset("tiny");  // dim 32, 2 layers, 2 heads, V 64, 10 classes, T 16
  return c;
}
// Output head is zero-initialised; randomise it so logits depend on the input.
void randomise_output(GPT& m, uint64_t seed) {
  torch::NoGradGuard g;
  auto gen = make_generator(seed);
  m->output->weight.normal_(0.0, 0.5, gen);
}
}  // namespace

TEST(GptConfig, JsonRoundTripAndValidation) {
  auto c = GPTConfig::preset("GPT-L");
  c.vocab_size = 512;
  c.ffn_dim_multiplier = 1.3;
  auto back = GPTConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.dim, 1024);
  EXPECT_EQ(back.vocab_size, 512);
  auto j = c.to_json();
  j["bogus"] = 1;
  EXPECT_THROW(GPTConfig::from_json(j), UsageError);
  j = c.to_json();
  j["dim"] = "wide";
  EXPECT_THROW(GPTConfig::from_json(j), UsageError);
  auto bad = c;
  bad.block_size = 250;  // not a perfect square
  EXPECT_THROW(bad.validate(), UsageError);
  bad = c;
  bad.n_head = 7;
  EXPECT_THROW(bad.validate(), UsageError);
  bad = c;
  bad.token_dropout_p = 1.0;
  EXPECT_THROW(bad.validate(), UsageError);
  EXPECT_THROW(GPTConfig::preset("GPT-Q"), UsageError);
  EXPECT_EQ(GPTConfig::preset("GPT-3B").head_dim(), 100);
  EXPECT_EQ(GPTConfig::preset("GPT-3B").ffn_hidden(), 8704);
}

TEST(GptConfig, ParameterCountsEqualLlamaGen) {
  EXPECT_EQ(GPTConfig::preset("GPT-B").num_params(), 110888448);
  EXPECT_EQ(GPTConfig::preset("GPT-L").num_params(), 342910976);
  EXPECT_EQ(GPTConfig::preset("GPT-XL").num_params(), 774699520);
  EXPECT_EQ(GPTConfig::preset("GPT-XXL").num_params(), 1410972672);
  EXPECT_EQ(GPTConfig::preset("GPT-3B").num_params(), 3096659200);
  // CTF stage 1 (K = 512) and the Table 3a variants.
  auto k = [](const char* name, int64_t V) {
    auto c = GPTConfig::preset(name);
    c.vocab_size = V;
    return c.num_params();
  };
  EXPECT_EQ(k("GPT-B", 512), 86509056);
  EXPECT_EQ(k("GPT-L", 512), 310405120);
  EXPECT_EQ(k("GPT-XL", 512), 734067200);
  EXPECT_EQ(k("GPT-B", 128), 85919232);
  EXPECT_EQ(k("GPT-B", 1024), 87295488);
}

TEST(GptConfig, FormulaEqualsModuleCountForSmallConfigs) {
  for (const char* name : {"tiny", "small"}) {
    auto c = GPTConfig::preset(name);
    c.ffn_dim_multiplier = std::string(name) == "small" ? 1.25 : 0.0;
    GPT m(c);
    EXPECT_EQ(m->count_params(), c.num_params()) << name;
  }
}

// GPT-B built for real (443 MB fp32): names, order and shapes must equal LlamaGen's state dict.
TEST(GptModel, GptBStateDictMatchesLlamaGenKeysInOrder) {
  std::ifstream f(source_dir() + "/tests/data/llamagen_gpt_b_keys.tsv");
  ASSERT_TRUE(f.good());
  std::vector<std::pair<std::string, std::string>> ref;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto tab = line.find('\t');
    ref.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  ASSERT_EQ(ref.size(), 88u);
  GPT m(GPTConfig::preset("GPT-B"));
  auto named = io::module_tensors(*m);
  ASSERT_EQ(named.size(), ref.size());
  int64_t total = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    std::ostringstream shape;
    shape << "[";
    for (int64_t d = 0; d < named[i].second.dim(); ++d)
      shape << (d ? ", " : "") << named[i].second.size(d);
    shape << "]";
    EXPECT_EQ(named[i].first, ref[i].first) << i;
    EXPECT_EQ(shape.str(), ref[i].second) << named[i].first;
    total += named[i].second.numel();
  }
  EXPECT_EQ(total, 110888448);
  // Init: output zero, norms one, matrices N(0, 0.02).
  EXPECT_EQ(m->output->weight.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(m->norm->weight.min().item<float>(), 1.0f);
  EXPECT_NEAR(m->tok_embeddings->weight.std().item<double>(), 0.02, 5e-4);
  EXPECT_EQ(m->layers->size(), 12u);
}

TEST(GptModel, KvCacheDecodingEqualsFullForwardAtEveryStep) {
  auto c = tiny_config();
  GPT m(c, 1);
  randomise_output(m, 2);
  m->eval();
  const int64_t B = 3, T = c.block_size;
  auto tokens = random_tokens(B, T, c.vocab_size, 3);
  auto labels = torch::tensor({1, 10, 4}, torch::kLong);  // 10 = null class
  torch::NoGradGuard g;
  auto full = m->forward_full(tokens.narrow(1, 0, T - 1), labels);  // [B, T, V]
  ASSERT_EQ(full.sizes(), (std::vector<int64_t>{B, T, c.vocab_size}));
  m->setup_cache(B + 2, torch::kFloat32);  // larger cache than batch is fine
  EXPECT_EQ(m->cache().max_seq, 24);       // 1 + 16 rounded up to 8
  auto l0 = m->prefill(labels);
  EXPECT_TRUE(all_close(l0, full.select(1, 0), 1e-4, 1e-5));
  for (int64_t t = 1; t < T; ++t) {
    auto lt = m->decode_step(tokens.select(1, t - 1), t);
    EXPECT_TRUE(all_close(lt, full.select(1, t), 1e-4, 1e-5)) << "step " << t;
  }
  // Chunked extension through the cache equals the full pass too.
  m->prefill(labels);
  auto chunk = m->extend(tokens.narrow(1, 0, 7), 1);  // positions 1..7
  EXPECT_TRUE(all_close(chunk, full.narrow(1, 1, 7), 1e-4, 1e-5));
  EXPECT_TRUE(all_close(m->decode_step(tokens.select(1, 7), 8), full.select(1, 8), 1e-4, 1e-5));
  // Misuse is an error, not silent garbage.
  EXPECT_THROW(m->decode_step(tokens.select(1, 0), T + 1), Error);
  m->prefill(labels);
  EXPECT_THROW(m->decode_step(tokens.select(1, 0), 3), Error);  // skips positions 1, 2
}

// Tokens outside [0, V) are refused with the range found, whatever their integer type or
// layout (check_tokens scans CPU tokens directly); the decode step checks too.
TEST(GptModel, OutOfRangeTokensAreRefusedNamingTheRange) {
  auto c = tiny_config();
  GPT m(c, 1);
  m->eval();
  auto labels = torch::tensor({1, 2}, torch::kLong);
  auto tokens = random_tokens(2, c.block_size, c.vocab_size, 3);
  torch::NoGradGuard g;
  EXPECT_NO_THROW(m->forward_train(tokens.to(torch::kInt), labels));          // int32 is fine
  EXPECT_NO_THROW(m->forward_train(tokens.t().contiguous().t(), labels));     // strided too
  auto bad = tokens.clone();
  bad[1][5] = c.vocab_size;
  auto msg = error_of([&] { m->forward_train(bad, labels); });
  EXPECT_NE(msg.find("got range [0, 64]"), std::string::npos) << msg;
  bad[1][5] = -3;
  msg = error_of([&] { m->forward_train(bad.to(torch::kInt).t().contiguous().t(), labels); });
  EXPECT_NE(msg.find("got range [-3, "), std::string::npos) << msg;
  m->setup_cache(2, torch::kFloat32);
  m->prefill(labels);
  msg = error_of([&] { m->decode_step(torch::tensor({0, 64}, torch::kLong), 1); });
  EXPECT_NE(msg.find("GPT decode: tokens must be in [0, 64), got range [0, 64]"),
            std::string::npos) << msg;
}

TEST(GptModel, CausalLogitsIgnoreLaterTokens) {
  auto c = tiny_config();
  GPT m(c, 4);
  randomise_output(m, 5);
  m->eval();
  auto tokens = random_tokens(2, c.block_size, c.vocab_size, 6);
  auto labels = torch::tensor({2, 3}, torch::kLong);
  auto changed = tokens.clone();
  changed.narrow(1, 8, 8).copy_((tokens.narrow(1, 8, 8) + 1) % c.vocab_size);
  torch::NoGradGuard g;
  auto a = m->forward_train(tokens, labels), b = m->forward_train(changed, labels);
  // Position p sees tokens < p: positions 0..8 unchanged, 9.. change.
  EXPECT_TRUE(all_close(a.narrow(1, 0, 9), b.narrow(1, 0, 9), 1e-6, 1e-7));
  EXPECT_GT((a.narrow(1, 9, 7) - b.narrow(1, 9, 7)).abs().max().item<float>(), 1e-4);
  // forward_train equals forward_full on the shifted input.
  EXPECT_TRUE(all_close(a, m->forward_full(tokens.narrow(1, 0, 15), labels), 1e-6, 1e-7));
  // The class token matters (class row of RoPE is zero, but its value is used).
  auto other = m->forward_train(tokens, torch::tensor({7, 3}, torch::kLong));
  EXPECT_GT((a[0] - other[0]).abs().max().item<float>(), 1e-4);
  EXPECT_TRUE(all_close(a[1], other[1], 1e-6, 1e-7));
}

TEST(GptModel, LossIsMeanCrossEntropyAndTrains) {
  auto c = tiny_config();
  GPT m(c, 8);
  auto tokens = random_tokens(4, c.block_size, c.vocab_size, 9);
  auto labels = torch::tensor({0, 1, 2, 3}, torch::kLong);
  m->eval();
  auto loss0 = models::gpt_loss(m, tokens, labels);
  // Zero output head: uniform logits -> loss = log V.
  EXPECT_NEAR(loss0.item<double>(), std::log(double(c.vocab_size)), 1e-5);
  m->train();
  auto groups = models::weight_decay_groups(*m);
  EXPECT_EQ(groups.no_decay.size(), size_t(2 * c.n_layer + 1));  // RMSNorm weights only
  EXPECT_EQ(groups.decay.size() + groups.no_decay.size(), m->parameters().size());
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(3e-3));
  seed_global(0);
  double last = 0;
  for (int i = 0; i < 30; ++i) {
    opt.zero_grad();
    auto loss = models::gpt_loss(m, tokens, labels);
    loss.backward();
    opt.step();
    last = loss.item<double>();
  }
  EXPECT_LT(last, loss0.item<double>() - 0.5);
}

TEST(GptModel, Bf16WeightsGiveCloseLogits) {
  auto c = tiny_config();
  GPT m(c, 10);
  randomise_output(m, 11);
  m->eval();
  auto tokens = random_tokens(2, c.block_size, c.vocab_size, 12);
  auto labels = torch::tensor({1, 2}, torch::kLong);
  torch::NoGradGuard g;
  auto ref = m->forward_full(tokens, labels);
  m->to(torch::kBFloat16);
  EXPECT_EQ(m->param_dtype(), torch::kBFloat16);
  auto out = m->forward_full(tokens, labels);
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(all_close(out, ref, 0.05, 0.05));
  m->setup_cache(2, torch::kBFloat16);
  EXPECT_TRUE(all_close(m->prefill(labels), out.select(1, 0), 0.02, 0.02));
  EXPECT_TRUE(all_close(m->decode_step(tokens.select(1, 0), 1), out.select(1, 1), 0.02, 0.02));
}

TEST(GptModel, SaveLoadRoundTripThroughComponentFile) {
  auto c = tiny_config();
  GPT a(c, 13), b(c, 14);
  randomise_output(a, 15);
  TempDir dir;
  io::save_component(dir.file("gpt.safetensors"), "gpt", c.to_json(), io::module_tensors(*a));
  auto comp = io::load_component(dir.file("gpt.safetensors"), "gpt");
  auto c2 = GPTConfig::from_json(comp.config);
  EXPECT_EQ(c2.to_json(), c.to_json());
  io::load_module_strict(*b, comp.file);
  for (const auto& p : a->named_parameters())
    EXPECT_TRUE(b->named_parameters()[p.key()].equal(p.value())) << p.key();
}

// PyTorch oracle: an independent Python implementation of the architecture description
// (tests/python/gpt_oracle.py) computes logits for weights exported from C++.
TEST(GptModel, MatchesPythonOracle) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available";
  auto c = tiny_config();
  c.block_size = 9;  // 3 x 3 grid
  GPT m(c, 16);
  randomise_output(m, 17);
  m->eval();
  auto tokens = random_tokens(2, c.block_size, c.vocab_size, 18);
  auto labels = torch::tensor({3, 10}, torch::kLong);
  at::Tensor logits;
  {
    torch::NoGradGuard g;
    logits = m->forward_train(tokens, labels);
  }
  EXPECT_TRUE(all_close(
      logits, gpt_oracle_logits(io::module_tensors(*m), tokens, labels, c.to_json().dump()), 1e-4,
      1e-5));
}

}  // namespace ctfgen::test
