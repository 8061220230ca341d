// src/sampling: logits ops on hand-made distributions, the AR sampler (CFG batching, KV cache,
// determinism) and the stage-2 fine sampler (cluster restriction, CFG, determinism).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "models/aux_model.h"
#include "models/gpt.h"
#include "sampling/ar_sampler.h"
#include "sampling/fine_sampler.h"
#include "sampling/logits_ops.h"
#include "test_util.h"

namespace ctfgen::test {
using namespace ctfgen::sampling;

namespace {
const float kInf = std::numeric_limits<float>::infinity();
at::Tensor row(std::vector<float> v) { return torch::tensor(v).unsqueeze(0); }
void expect_row(const at::Tensor& t, std::vector<float> v) {
  ASSERT_EQ(t.numel(), int64_t(v.size()));
  for (size_t i = 0; i < v.size(); ++i) EXPECT_FLOAT_EQ(t.flatten()[i].item<float>(), v[i]) << i;
}
}  // namespace

TEST(SamplingConfig, JsonValidateAndPresets) {
  auto c = SamplingConfig::ctf_stage1();
  EXPECT_DOUBLE_EQ(c.cfg_scale, 2.0);
  EXPECT_DOUBLE_EQ(c.temperature, 1.1);
  EXPECT_EQ(SamplingConfig::from_json(c.to_json()).to_json(), c.to_json());
  EXPECT_FALSE(SamplingConfig::ctf_stage2().guidance());
  auto bad = c;
  bad.top_p = 0.0;
  EXPECT_THROW(bad.validate(), UsageError);
  bad = c;
  bad.top_k = -1;
  EXPECT_THROW(bad.validate(), UsageError);
  bad = c;
  bad.cfg_interval = -2;
  EXPECT_THROW(bad.validate(), UsageError);
  bad = c;
  bad.temperature = std::nan("");
  EXPECT_THROW(bad.validate(), UsageError);
  auto j = c.to_json();
  j["topk"] = 3;
  EXPECT_THROW(SamplingConfig::from_json(j), UsageError);
  // cfg_interval: LlamaGen applies guidance to prefill and decode steps i <= c (token i + 1).
  c.cfg_interval = 2;
  EXPECT_TRUE(c.guidance_at(0));
  EXPECT_TRUE(c.guidance_at(3));
  EXPECT_FALSE(c.guidance_at(4));
  c.cfg_scale = 1.0;
  EXPECT_FALSE(c.guidance_at(0));
}

TEST(LogitsOps, GuidanceArithmetic) {
  auto cond = row({1, 2, 3, 4}), uncond = row({0, 1, 1, 0});
  expect_row(cfg_mix(cond, uncond, 2.0), {2, 3, 5, 8});
  expect_row(cfg_mix(cond, uncond, 1.0), {1, 2, 3, 4});  // scale 1 = conditional
  expect_row(cfg_mix(cond, uncond, 0.0), {0, 1, 1, 0});  // scale 0 = unconditional
}

TEST(LogitsOps, TemperatureAndTopK) {
  expect_row(apply_temperature(row({1, -2, 4, 0}), 0.5), {2, -4, 8, 0});
  EXPECT_GT(apply_temperature(row({1}), 0.0).item<float>(), 9e4);  // floored at 1e-5
  auto l = row({1, 3, 3, 2});
  expect_row(top_k_filter(l, 2), {-kInf, 3, 3, -kInf});
  expect_row(top_k_filter(l, 1), {-kInf, 3, 3, -kInf});  // ties with the k-th value survive
  expect_row(top_k_filter(l, 3), {-kInf, 3, 3, 2});
  expect_row(top_k_filter(l, 0), {1, 3, 3, 2});  // off
  expect_row(top_k_filter(l, 9), {1, 3, 3, 2});
}

TEST(LogitsOps, TopPKeepsFirstTokenOverThreshold) {
  // probs 0.15, 0.5, 0.05, 0.3 (unsorted on purpose): sorted 0.5, 0.3, 0.15, 0.05.
  auto l = torch::log(row({0.15f, 0.5f, 0.05f, 0.3f}));
  auto keep = [](const at::Tensor& t) { return torch::isfinite(t).to(torch::kFloat32); };
  expect_row(keep(top_p_filter(l, 0.6)), {0, 1, 0, 1});   // cum 0.5 <= 0.6, 0.8 is the first over
  expect_row(keep(top_p_filter(l, 0.4)), {0, 1, 0, 0});   // the top token always survives
  expect_row(keep(top_p_filter(l, 0.85)), {1, 1, 0, 1});  // 0.95 is the first over 0.85
  expect_row(keep(top_p_filter(l, 1.0)), {1, 1, 1, 1});   // off
  // Kept entries keep their values.
  EXPECT_FLOAT_EQ(top_p_filter(l, 0.6)[0][1].item<float>(), l[0][1].item<float>());
}

TEST(LogitsOps, MaskAndSample) {
  auto l = row({5, 1, 2, 3});
  auto allowed = torch::tensor({false, true, true, false}).unsqueeze(0);
  expect_row(mask_to_members(l, allowed), {-kInf, 1, 2, -kInf});
  auto gen = make_generator(0);
  EXPECT_EQ(sample(l, gen, /*argmax=*/true).item<int64_t>(), 0);
  EXPECT_EQ(sample(mask_to_members(l, allowed), gen, true).item<int64_t>(), 2);
  // Temperature near 0 = argmax even when sampling.
  SamplingConfig cold;
  cold.temperature = 0.0;
  auto many = torch::log(row({0.3f, 0.2f, 0.4f, 0.1f})).expand({200, 4}).contiguous();
  EXPECT_TRUE(sample_tokens(many, cold, gen).eq(2).all().item<bool>());
  // A fully masked row is an error, not a NaN draw.
  EXPECT_THROW(sample(row({-kInf, -kInf}), gen), Error);
  // Empirical frequencies follow the distribution; masked entries are never drawn.
  auto probs = torch::tensor({0.1f, 0.2f, 0.3f, 0.4f});
  auto big = torch::log(probs).unsqueeze(0).expand({20000, 4}).contiguous();
  auto draws = sample(big, gen);
  auto freq = torch::bincount(draws, {}, 4).to(torch::kFloat32) / 20000.0;
  EXPECT_TRUE(all_close(freq, probs, 0, 0.015));
  auto masked = mask_to_members(big, torch::tensor({true, false, true, false}).unsqueeze(0));
  auto d2 = sample(masked, gen);
  EXPECT_TRUE((d2.eq(0) | d2.eq(2)).all().item<bool>());
}

// sample() = sample_from_uniforms() with rand({N, 1}) from the same generator, then the check;
// the split form reports bad rows instead of throwing.
TEST(LogitsOps, SampleFromUniformsIsSampleWithTheDrawsGiven) {
  auto gen = make_generator(4);
  auto l = torch::randn({32, 50}, gen);
  auto g1 = make_generator(5), g2 = make_generator(5);
  at::Tensor ok;
  auto a = sample(l, g1);
  auto b = sample_from_uniforms(l, torch::rand({32, 1}, g2, torch::kFloat32), false, &ok);
  EXPECT_TRUE(a.equal(b));
  EXPECT_TRUE(ok.all().item<bool>());
  auto bad = l.clone();
  bad[3].fill_(-kInf);
  bad[7][2] = std::numeric_limits<float>::quiet_NaN();
  sample_from_uniforms(bad, torch::rand({32}, g2), false, &ok);
  auto expect_ok = torch::ones({32}, torch::kBool);
  expect_ok[3] = false;
  expect_ok[7] = false;
  EXPECT_TRUE(ok.equal(expect_ok));
  EXPECT_THROW(check_finite_rows(ok), Error);
  EXPECT_THROW(sample_from_uniforms(l, torch::rand({31}, g2), false, &ok), Error);
  EXPECT_TRUE(sample_from_uniforms(l, at::Tensor(), true, &ok).equal(l.argmax(-1)));
}

TEST(LogitsOps, FixedSeedSameTokensDifferentSeedDifferent) {
  auto l = torch::zeros({64, 100});
  auto g1 = make_generator(1), g1b = make_generator(1), g2 = make_generator(2);
  auto a = sample(l, g1), b = sample(l, g1b), c = sample(l, g2);
  EXPECT_TRUE(a.equal(b));
  EXPECT_FALSE(a.equal(c));
}

// ---------------------------------------------------------------------------------------------
namespace {
models::GPT tiny_gpt(uint64_t seed) {
  auto c = models::GPTConfig::preset("tiny");  // V 64, T 16, 10 classes
  models::GPT m(c, seed);
  torch::NoGradGuard g;
  auto gen = make_generator(seed + 100);
  m->output->weight.normal_(0.0, 1.0, gen);
  return m;
}

// Greedy decoding without a cache: full forward on the prefix for each step, cond and uncond
// sequences separately, guidance per SamplingConfig::guidance_at.
at::Tensor greedy_reference(models::GPT& m, const at::Tensor& labels, const SamplingConfig& sc) {
  torch::NoGradGuard g;
  const int64_t B = labels.size(0), T = m->config().block_size;
  auto null = torch::full({B}, m->config().num_classes, torch::kLong);
  auto seq = torch::empty({B, 0}, torch::kLong);
  for (int64_t t = 0; t < T; ++t) {
    auto cond = m->forward_full(seq, labels).select(1, t);
    at::Tensor l = cond;
    if (sc.guidance_at(t)) l = cfg_mix(cond, m->forward_full(seq, null).select(1, t), sc.cfg_scale);
    seq = torch::cat({seq, l.argmax(-1, true)}, 1);
  }
  return seq;
}
}  // namespace

TEST(ArSampler, GreedyWithGuidanceEqualsUncachedReference) {
  auto m = tiny_gpt(1);
  m->eval();
  auto labels = torch::tensor({0, 5, 9}, torch::kLong);
  auto gen = make_generator(0);
  for (double scale : {1.0, 3.0}) {
    for (int64_t interval : {-1, 3}) {
      SamplingConfig sc;
      sc.argmax = true;
      sc.cfg_scale = scale;
      sc.cfg_interval = interval;
      auto got = sample_ar(m, labels, sc, gen);
      EXPECT_TRUE(got.equal(greedy_reference(m, labels, sc))) << scale << " " << interval;
    }
  }
  // Guidance changes the result (otherwise the test above could not tell).
  SamplingConfig a, b;
  a.argmax = b.argmax = true;
  b.cfg_scale = 3.0;
  EXPECT_FALSE(sample_ar(m, labels, a, gen).equal(sample_ar(m, labels, b, gen)));
}

TEST(ArSampler, DeterministicPerSeedWithProgressAndModeRestored) {
  auto m = tiny_gpt(2);
  m->train();
  auto labels = torch::tensor({1, 2, 3, 4}, torch::kLong);
  auto sc = SamplingConfig::ctf_stage1();
  int64_t calls = 0, last_done = 0;
  auto g1 = make_generator(7), g1b = make_generator(7), g2 = make_generator(8);
  auto a = sample_ar(m, labels, sc, g1, [&](int64_t done, int64_t total) {
    ++calls;
    last_done = done;
    EXPECT_EQ(total, 16);
  });
  EXPECT_TRUE(m->is_training());  // restored
  EXPECT_EQ(calls, 16);
  EXPECT_EQ(last_done, 16);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_GE(a.min().item<int64_t>(), 0);
  EXPECT_LT(a.max().item<int64_t>(), 64);
  EXPECT_TRUE(a.equal(sample_ar(m, labels, sc, g1b)));
  EXPECT_FALSE(a.equal(sample_ar(m, labels, sc, g2)));
  EXPECT_EQ(m->cache().max_batch, 8);  // one batch of 2B rows
  // top-k 1 = greedy.
  SamplingConfig k1 = sc, am = sc;
  k1.top_k = 1;
  am.argmax = true;
  EXPECT_TRUE(sample_ar(m, labels, k1, g2).equal(sample_ar(m, labels, am, g2)));
}

// The loop draws every step's uniform numbers up front and checks rows once at the end (no
// device read per step); the tokens and the generator's state afterwards must be those of
// drawing at each step, as sample_tokens does: the seed contract is unchanged.
TEST(ArSampler, DrawingUpFrontEqualsOneDrawPerStep) {
  auto m = tiny_gpt(3);
  m->eval();
  auto labels = torch::tensor({1, 5, 9}, torch::kLong);
  auto sc = SamplingConfig::ctf_stage1();
  sc.cfg_scale = 2.5;
  sc.top_k = 20;
  sc.temperature = 0.9;
  const int64_t B = 3, T = m->config().block_size;
  auto g_loop = make_generator(11), g_ref = make_generator(11);
  auto got = sample_ar(m, labels, sc, g_loop);
  at::Tensor ref;
  {
    c10::InferenceMode guard;
    auto lab = torch::cat({labels, torch::full({B}, m->config().num_classes, torch::kLong)});
    m->setup_cache(2 * B, torch::kFloat32);
    auto choose = [&](const at::Tensor& logits, int64_t t) {
      auto cond = logits.narrow(0, 0, B);
      auto l = sc.guidance_at(t) ? cfg_mix(cond, logits.narrow(0, B, B), sc.cfg_scale) : cond;
      return sample_tokens(l, sc, g_ref);
    };
    std::vector<at::Tensor> toks{choose(m->prefill(lab), 0)};
    for (int64_t t = 1; t < T; ++t)
      toks.push_back(choose(m->decode_step(torch::cat({toks.back(), toks.back()}), t), t));
    ref = torch::stack(toks, 1);
  }
  EXPECT_TRUE(got.equal(ref));
  EXPECT_TRUE(torch::rand({4}, g_loop).equal(torch::rand({4}, g_ref)));  // same draws consumed
  // Rows with no finite logit are still refused, with sample()'s message.
  {
    torch::NoGradGuard ng;
    m->output->weight.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  const std::string msg = error_of([&] { sample_ar(m, labels, sc, g_loop); });
  EXPECT_NE(msg.find("has no finite entry"), std::string::npos) << msg;
}

// ---------------------------------------------------------------------------------------------
namespace {
models::Aux tiny_aux(uint64_t seed) {
  auto c = models::AuxConfig::preset("tiny");  // K 8, V 64, T 16
  models::Aux m(c, seed);
  torch::NoGradGuard g;
  auto gen = make_generator(seed + 100);
  m->output->weight.normal_(0.0, 1.0, gen);
  return m;
}
}  // namespace

TEST(FineSampler, ClusterRestrictionGuidanceAndDeterminism) {
  auto m = tiny_aux(3);
  const int64_t K = 8, V = 64, T = 16;
  auto coarse_of = torch::arange(V, torch::kLong) % K;  // cluster k = {k, k + 8, ...}
  auto mask = member_mask_from_coarse_of(coarse_of, K);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{K, V}));
  EXPECT_EQ(mask.sum().item<int64_t>(), V);
  auto gen0 = make_generator(0);
  auto coarse = torch::randint(K, {5, T}, gen0, torch::kLong);
  auto labels = torch::tensor({0, 1, 2, 3, 10}, torch::kLong);
  auto sc = SamplingConfig::ctf_stage2();
  auto g1 = make_generator(11), g1b = make_generator(11), g2 = make_generator(12);
  auto fine = sample_fine(m, coarse, labels, sc, g1, &mask, /*chunk=*/2);
  ASSERT_EQ(fine.sizes(), (std::vector<int64_t>{5, T}));
  EXPECT_TRUE(coarse_of.index_select(0, fine.flatten()).view({5, T}).equal(coarse));
  EXPECT_TRUE(fine.equal(sample_fine(m, coarse, labels, sc, g1b, &mask, 2)));
  // One uniform number per row, drawn in row order: the chunking does not change the draws.
  for (int64_t chunk : {1, 5, 0}) {
    auto g = make_generator(11);
    EXPECT_TRUE(fine.equal(sample_fine(m, coarse, labels, sc, g, &mask, chunk))) << chunk;
  }
  EXPECT_FALSE(fine.equal(sample_fine(m, coarse, labels, sc, g2, &mask, 2)));
  // Without the mask the samples leave the clusters (the test above is not vacuous).
  auto free = sample_fine(m, coarse, labels, sc, g2);
  EXPECT_FALSE(coarse_of.index_select(0, free.flatten()).view({5, T}).equal(coarse));
  // Argmax with guidance equals the argmax of the manually mixed logits.
  SamplingConfig am;
  am.argmax = true;
  am.cfg_scale = 2.5;
  torch::NoGradGuard g;
  m->eval();
  auto cond = m->forward(coarse, labels);
  auto uncond = m->forward(coarse, torch::full({5}, 10, torch::kLong));
  auto expect = cfg_mix(cond, uncond, 2.5).argmax(-1);
  EXPECT_TRUE(sample_fine(m, coarse, labels, am, g2, nullptr, 3).equal(expect));
  auto expect_masked =
      mask_to_members(cfg_mix(cond, uncond, 2.5), mask.index_select(0, coarse.flatten()).view({5, T, V}))
          .argmax(-1);
  EXPECT_TRUE(sample_fine(m, coarse, labels, am, g2, &mask).equal(expect_masked));
  auto empty_cluster = mask.clone();
  empty_cluster[3].fill_(false);
  EXPECT_THROW(sample_fine(m, coarse, labels, sc, g2, &empty_cluster), Error);
}

}  // namespace ctfgen::test
