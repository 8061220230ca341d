// src/nn/linear_cross_entropy: the chunked head + loss against libtorch's linear and
// cross_entropy (loss and both gradients, fp32 and under bf16 autocast, ragged chunks), its
// errors, and the models' losses against cross_entropy of their logits.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "models/aux_model.h"
#include "models/gpt.h"
#include "nn/autocast.h"
#include "nn/linear_cross_entropy.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

struct LossAndGrads {
  at::Tensor loss, gx, gw;
};

// Loss and the gradients of x and w for `fn(x, w)`, from fresh leaf copies of x0 and w0.
template <typename Fn>
LossAndGrads run(const at::Tensor& x0, const at::Tensor& w0, std::optional<at::ScalarType> amp,
                 Fn fn) {
  auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
  at::Tensor loss;
  {
    nn::AutocastGuard guard(torch::kCPU, amp);
    loss = fn(x, w);
  }
  loss.backward();
  return {loss.detach(), x.grad(), w.grad()};
}

at::Tensor plain_loss(const at::Tensor& x, const at::Tensor& w, const at::Tensor& t) {
  return torch::nn::functional::cross_entropy(torch::nn::functional::linear(x, w).to(at::kFloat),
                                              t);
}

// Random rows x [N, D], head w [V, D] (entries N(0, w_std^2)) and targets [N] in [0, V).
struct Problem {
  at::Tensor x, w, t;
};
Problem random_problem(uint64_t seed, int64_t N, int64_t D, int64_t V, double w_std) {
  auto gen = make_generator(seed);
  auto x = torch::randn({N, D}, gen), w = torch::randn({V, D}, gen) * w_std;
  return {x, w, torch::randint(0, V, {N}, gen, torch::kLong)};
}

}  // namespace

TEST(LinearCrossEntropy, EqualsLinearThenCrossEntropyOverRaggedChunks) {
  const int64_t V = 50;
  const auto prob = random_problem(1, /*N=*/37, /*D=*/16, V, 0.5);
  const at::Tensor &x = prob.x, &w = prob.w, &t = prob.t;
  auto ref = run(x, w, std::nullopt, [&](auto& a, auto& b) { return plain_loss(a, b, t); });
  // 1 row, 7 rows (a ragged last chunk of 2), and everything in one chunk.
  for (int64_t budget : {int64_t{1}, 7 * V, nn::kLossChunkElements}) {
    SCOPED_TRACE("chunk elements " + std::to_string(budget));
    auto got = run(x, w, std::nullopt,
                   [&](auto& a, auto& b) { return nn::linear_cross_entropy(a, b, t, budget); });
    EXPECT_EQ(got.loss.scalar_type(), at::kFloat);
    EXPECT_EQ(got.loss.dim(), 0);
    EXPECT_TRUE(all_close(got.loss, ref.loss, 1e-6, 1e-6));
    EXPECT_TRUE(all_close(got.gx, ref.gx, 1e-5, 1e-7));
    EXPECT_TRUE(all_close(got.gw, ref.gw, 1e-5, 1e-7));
  }
}

TEST(LinearCrossEntropy, FollowsAutocastLikeThePlainHead) {
  const int64_t V = 40;
  const auto prob = random_problem(2, /*N=*/24, /*D=*/32, V, 0.3);
  const at::Tensor &x = prob.x, &w = prob.w, &t = prob.t;
  auto fp32 = run(x, w, std::nullopt, [&](auto& a, auto& b) { return plain_loss(a, b, t); });
  auto ref = run(x, w, at::kBFloat16, [&](auto& a, auto& b) { return plain_loss(a, b, t); });
  auto got = run(x, w, at::kBFloat16,
                 [&](auto& a, auto& b) { return nn::linear_cross_entropy(a, b, t, 5 * V); });
  // Products in bf16 like the plain path under autocast (differs from fp32 by bf16 rounding),
  // gradients in the inputs' dtypes.
  EXPECT_GT((ref.loss - fp32.loss).abs().item<double>(), 1e-6);
  EXPECT_TRUE(all_close(got.loss, ref.loss, 1e-3, 1e-3));
  EXPECT_EQ(got.gx.scalar_type(), at::kFloat);
  EXPECT_EQ(got.gw.scalar_type(), at::kFloat);
  EXPECT_TRUE(all_close(got.gx, ref.gx, 0.02, 2e-3));
  EXPECT_TRUE(all_close(got.gw, ref.gw, 0.02, 2e-3));
  // Autocast leaves fp64 operands alone, and so does the chunked head.
  auto xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  auto ref64 = run(xd, wd, at::kBFloat16, [&](auto& a, auto& b) { return plain_loss(a, b, t); });
  auto got64 = run(xd, wd, at::kBFloat16,
                   [&](auto& a, auto& b) { return nn::linear_cross_entropy(a, b, t, 5 * V); });
  EXPECT_EQ(got64.gx.scalar_type(), at::kDouble);
  EXPECT_TRUE(all_close(got64.loss, ref64.loss, 1e-6, 1e-7));
  EXPECT_TRUE(all_close(got64.gw, ref64.gw, 1e-6, 1e-9));
}

TEST(LinearCrossEntropy, GradientScalesWithTheUpstreamGradientAndRunsWithoutGrad) {
  const auto prob = random_problem(3, /*N=*/9, /*D=*/8, /*V=*/12, 1.0);
  const at::Tensor &x = prob.x, &w = prob.w, &t = prob.t;
  auto a = run(x, w, std::nullopt,
               [&](auto& p, auto& q) { return nn::linear_cross_entropy(p, q, t, 24); });
  auto b = run(x, w, std::nullopt,
               [&](auto& p, auto& q) { return 3.0 * nn::linear_cross_entropy(p, q, t, 24); });
  EXPECT_TRUE(all_close(b.gx, 3.0 * a.gx, 1e-5, 1e-7));
  EXPECT_TRUE(all_close(b.gw, 3.0 * a.gw, 1e-5, 1e-7));
  // First-order only, and the graph is freed by backward like any other.
  {
    auto xg = x.clone().requires_grad_(true);
    auto loss = nn::linear_cross_entropy(xg, w, t, 24);
    auto gx = torch::autograd::grad({loss}, {xg}, {}, /*retain_graph=*/true,
                                    /*create_graph=*/false)[0];
    EXPECT_TRUE(all_close(gx, a.gx, 1e-6, 1e-7));
    EXPECT_THROW(torch::autograd::grad({loss}, {xg}, {}, true, /*create_graph=*/true),
                 std::exception);
    loss.backward();
    EXPECT_THROW(loss.backward(), std::exception);  // saved gradients released
  }
  // Only w wants a gradient (a frozen input): w's is unchanged, x gets none.
  auto w_only = w.clone().requires_grad_(true);
  nn::linear_cross_entropy(x, w_only, t, 24).backward();
  EXPECT_TRUE(all_close(w_only.grad(), a.gw, 1e-6, 1e-7));
  EXPECT_FALSE(x.grad().defined());
  {
    c10::InferenceMode guard;
    EXPECT_TRUE(all_close(nn::linear_cross_entropy(x, w, t, 24), a.loss, 1e-6, 1e-6));
  }
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(all_close(nn::linear_cross_entropy(x, w, t), a.loss, 1e-6, 1e-6));
}

TEST(LinearCrossEntropy, BadInputsNameTheTensor) {
  auto x = torch::randn({4, 8}), w = torch::randn({10, 8});
  auto t = torch::tensor({0, 3, 9, 2}, torch::kLong);
  EXPECT_NE(error_of([&] { nn::linear_cross_entropy(x, w, t.clone().fill_(10)); })
                .find("target must be in [0, 10), got range [10, 10]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { nn::linear_cross_entropy(x, torch::randn({10, 7}), t); })
                .find("w must be [V, 8]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { nn::linear_cross_entropy(x, w, t.narrow(0, 0, 3)); })
                .find("target must be [4] integers"),
            std::string::npos);
  EXPECT_NE(error_of([&] { nn::linear_cross_entropy(x, w, t.to(at::kFloat)); })
                .find("target must be [4] integers"),
            std::string::npos);
  EXPECT_NE(error_of([&] { nn::linear_cross_entropy(x.view({2, 2, 8}), w, t); })
                .find("x must be [N, D]"),
            std::string::npos);
}

TEST(LinearCrossEntropy, ModelLossesEqualCrossEntropyOfTheirLogits) {
  auto g = models::GPTConfig::preset("tiny");
  models::GPT gpt(g, 4);
  auto a = models::AuxConfig::preset("tiny");  // K 8, V 64 like the GPT's vocabulary
  ASSERT_EQ(a.fine_vocab, g.vocab_size);
  ASSERT_EQ(a.block_size, g.block_size);
  models::Aux aux(a, 5);
  auto gen = make_generator(6);
  {
    torch::NoGradGuard ng;  // the heads start at zero: make the logits depend on the input
    gpt->output->weight.normal_(0.0, 0.5, gen);
    aux->output->weight.normal_(0.0, 0.5, gen);
  }
  gpt->eval();
  aux->eval();
  auto tokens = torch::randint(0, g.vocab_size, {3, g.block_size}, gen, torch::kLong);
  auto coarse = torch::randint(0, a.coarse_vocab, {3, g.block_size}, gen, torch::kLong);
  auto labels = torch::tensor({0, 4, 9}, torch::kLong);
  auto ce = [](const at::Tensor& logits, const at::Tensor& target) {
    return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(2)}),
                                                target.reshape({-1}));
  };
  // Gradients of every parameter agree with the plain path's.
  auto grads = [](torch::nn::Module& m, const at::Tensor& loss) {
    for (auto& p : m.parameters()) p.mutable_grad() = at::Tensor();
    loss.backward();
    std::vector<at::Tensor> out;
    for (auto& p : m.parameters()) out.push_back(p.grad().clone());
    return out;
  };
  auto gpt_ref = ce(gpt->forward_train(tokens, labels), tokens);
  auto gpt_ref_grads = grads(*gpt, gpt_ref);
  auto gpt_got = models::gpt_loss(gpt, tokens, labels);
  auto gpt_got_grads = grads(*gpt, gpt_got);
  EXPECT_TRUE(all_close(gpt_got, gpt_ref, 1e-6, 1e-6));
  for (size_t i = 0; i < gpt_ref_grads.size(); ++i)
    EXPECT_TRUE(all_close(gpt_got_grads[i], gpt_ref_grads[i], 1e-4, 1e-6)) << "parameter " << i;

  auto aux_ref = ce(aux->forward(coarse, labels), tokens);
  auto aux_ref_grads = grads(*aux, aux_ref);
  auto aux_got = models::aux_loss(aux, coarse, tokens, labels);
  auto aux_got_grads = grads(*aux, aux_got);
  EXPECT_TRUE(all_close(aux_got, aux_ref, 1e-6, 1e-6));
  for (size_t i = 0; i < aux_ref_grads.size(); ++i)
    EXPECT_TRUE(all_close(aux_got_grads[i], aux_ref_grads[i], 1e-4, 1e-6)) << "parameter " << i;
}

}  // namespace ctfgen::test
