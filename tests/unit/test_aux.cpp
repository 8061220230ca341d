// src/models/aux_model: CTF stage-2 model: names, counts, bidirectionality, no shift, loss, oracle.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/aux_model.h"
#include "test_util.h"

namespace ctfgen::test {
using models::Aux;
using models::AuxConfig;

namespace {
void randomise_output(Aux& m, uint64_t seed) {
  torch::NoGradGuard g;
  auto gen = make_generator(seed);
  m->output->weight.normal_(0.0, 0.5, gen);
}
}  // namespace

TEST(AuxConfig, CountsAndJson) {
  // The paper's stage-2 size (docs/generators.md): GPT-L body with a 512-row input table and a 16384-way head.
  EXPECT_EQ(AuxConfig::preset("GPT-L").num_params(), 326658048);
  EXPECT_EQ(AuxConfig::preset("GPT-B").num_params(), 98698752);
  EXPECT_EQ(AuxConfig::preset("GPT-XL").num_params(), 754383360);
  auto c = AuxConfig::preset("tiny");
  c.coarse_vocab = 5;
  EXPECT_EQ(AuxConfig::from_json(c.to_json()).to_json(), c.to_json());
  auto j = c.to_json();
  j["vocab_size"] = 3;  // a GPT field is unknown here
  EXPECT_THROW(AuxConfig::from_json(j), UsageError);
  c.fine_vocab = 0;
  EXPECT_THROW(c.validate(), UsageError);
}

TEST(AuxModel, NamesShapesAndCount) {
  auto c = AuxConfig::preset("tiny");  // dim 32, K 8, V 64, 10 classes
  Aux m(c);
  auto named = io::module_tensors(*m);
  ASSERT_EQ(named.size(), size_t(2 + 7 * c.n_layer + 2));
  EXPECT_EQ(named[0].first, "cls_embedding.embedding_table.weight");
  EXPECT_EQ(named[0].second.sizes(), (std::vector<int64_t>{11, 32}));
  EXPECT_EQ(named[1].first, "tok_embeddings.weight");
  EXPECT_EQ(named[1].second.sizes(), (std::vector<int64_t>{8, 32}));
  EXPECT_EQ(named[2].first, "layers.0.attention.wqkv.weight");
  EXPECT_EQ(named.back().first, "output.weight");
  EXPECT_EQ(named.back().second.sizes(), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(m->count_params(), c.num_params());
  EXPECT_EQ(m->output->weight.abs().max().item<float>(), 0.0f);
}

TEST(AuxModel, BidirectionalAndUnshifted) {
  auto c = AuxConfig::preset("tiny");
  Aux m(c, 1);
  randomise_output(m, 2);
  m->eval();
  auto coarse = random_tokens(2, c.block_size, c.coarse_vocab, 3);
  auto labels = torch::tensor({1, 10}, torch::kLong);
  torch::NoGradGuard g;
  auto a = m->forward(coarse, labels);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{2, c.block_size, c.fine_vocab}));
  // Changing the LAST coarse token changes the logits at EVERY position (bidirectional),
  // including position 0, which a causal model could not do.
  auto changed = coarse.clone();
  changed.select(1, c.block_size - 1).copy_((coarse.select(1, c.block_size - 1) + 1) % c.coarse_vocab);
  auto b = m->forward(changed, labels);
  auto diff = (a - b).abs().amax({0, 2});  // per position
  EXPECT_GT(diff.min().item<float>(), 1e-6);
  // No shift: with every attention output projection zeroed, position i sees only its own
  // input, so changing coarse_5 changes the logits at image position 5 and nowhere else.
  for (auto& layer : *m->layers)
    layer->as<nn::TransformerBlockImpl>()->attention->wo->weight.zero_();
  auto c5 = coarse.clone();
  c5.select(1, 5).copy_((coarse.select(1, 5) + 1) % c.coarse_vocab);
  auto pos_diff = (m->forward(c5, labels) - m->forward(coarse, labels)).abs().amax({0, 2});
  for (int64_t i = 0; i < c.block_size; ++i) {
    if (i == 5)
      EXPECT_GT(pos_diff[i].item<float>(), 1e-4);
    else
      EXPECT_EQ(pos_diff[i].item<float>(), 0.0f) << i;
  }
  EXPECT_THROW(m->forward(torch::full({2, 4}, c.coarse_vocab, torch::kLong), labels), Error);
}

TEST(AuxModel, LossIsCrossEntropyAgainstFineTokens) {
  auto c = AuxConfig::preset("tiny");
  Aux m(c, 4);
  m->eval();
  auto coarse = random_tokens(3, c.block_size, c.coarse_vocab, 5);
  auto fine = random_tokens(3, c.block_size, c.fine_vocab, 6);
  auto labels = torch::tensor({0, 1, 2}, torch::kLong);
  EXPECT_NEAR(models::aux_loss(m, coarse, fine, labels).item<double>(),
              std::log(double(c.fine_vocab)), 1e-5);
  randomise_output(m, 7);
  auto logits = m->forward(coarse, labels);
  auto manual = -torch::log_softmax(logits, -1).gather(-1, fine.unsqueeze(-1)).mean();
  EXPECT_NEAR(models::aux_loss(m, coarse, fine, labels).item<double>(), manual.item<double>(), 1e-5);
  // Training reduces the loss: the model learns fine = f(coarse, neighbours).
  m->train();
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(3e-3));
  seed_global(1);
  double first = 0, last = 0;
  for (int i = 0; i < 25; ++i) {
    opt.zero_grad();
    auto loss = models::aux_loss(m, coarse, fine, labels);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first - 0.3);
}

TEST(AuxModel, MatchesPythonOracle) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available";
  auto c = AuxConfig::preset("tiny");
  c.block_size = 9;
  Aux m(c, 8);
  randomise_output(m, 9);
  m->eval();
  auto coarse = random_tokens(2, c.block_size, c.coarse_vocab, 10);
  auto labels = torch::tensor({4, 10}, torch::kLong);
  at::Tensor logits;
  {
    torch::NoGradGuard g;
    logits = m->forward(coarse, labels);
  }
  EXPECT_TRUE(all_close(logits, gpt_oracle_logits(io::module_tensors(*m), coarse, labels,
                                                  c.to_json().dump()),
                        1e-4, 1e-5));
}

}  // namespace ctfgen::test
