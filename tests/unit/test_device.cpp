// core/device: parsing of --device, the process-wide default, and parity between a model on the
// test device (CTFGEN_TEST_DEVICE, default cpu) and the same weights on the CPU: logits, sampled
// tokens for the same generator seed, a training step, VQ codes, the rng state of a run. On a
// CPU-only build the parity tests compare the CPU with itself and still check that inputs on the
// CPU reach models anywhere and that results come back where the headers say; run the suite with
// CTFGEN_TEST_DEVICE=cuda on a GPU machine for the real check (scripts/gpu_check.sh).
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "core/device.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/shape.h"
#include "models/aux_model.h"
#include "models/gpt.h"
#include "sampling/ar_sampler.h"
#include "sampling/fine_sampler.h"
#include "test_util.h"
#include "train/optim.h"
#include "vq/vq_model.h"

namespace ctfgen::test {
namespace {

c10::Device test_device() { return default_device(); }

models::GPT tiny_gpt(uint64_t seed) {
  models::GPT m(models::GPTConfig::preset("tiny"), seed);
  torch::NoGradGuard g;
  auto gen = make_generator(seed + 1);
  m->output->weight.normal_(0.0, 0.5, gen);  // the head is zero-initialised
  m->eval();
  return m;
}

models::Aux tiny_aux(uint64_t seed) {
  models::Aux m(models::AuxConfig::preset("tiny"), seed);
  torch::NoGradGuard g;
  auto gen = make_generator(seed + 1);
  m->output->weight.normal_(0.0, 0.5, gen);
  m->eval();
  return m;
}

// A second model holding the same weights, on the test device.
template <typename Holder>
Holder copy_to_test_device(Holder& src, Holder dst) {
  torch::NoGradGuard g;
  auto a = src->parameters(), b = dst->parameters();
  for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  dst->to(test_device());
  dst->eval();
  return dst;
}

}  // namespace

TEST(Device, ParsesCpuAndCudaNamesAndRejectsOthersNamingTheValue) {
  EXPECT_EQ(parse_device("cpu"), c10::Device(c10::kCPU));
  for (const std::string bad : {"gpu", "cuda:", "cuda0", "cuda:x", "cuda:-1", "CPU", "cuda:12345"}) {
    const std::string msg = error_of([&] { parse_device(bad); });
    EXPECT_NE(msg.find("'" + bad + "'"), std::string::npos) << bad << ": " << msg;
    EXPECT_THROW(parse_device(bad), UsageError) << bad;
  }
  if (!torch::cuda::is_available()) {
    const std::string msg = error_of([] { parse_device("cuda"); });
    EXPECT_NE(msg.find("no usable CUDA device"), std::string::npos) << msg;
    EXPECT_THROW(parse_device("cuda:0"), UsageError);
  } else {
    EXPECT_EQ(parse_device("cuda"), c10::Device(c10::kCUDA, 0));
    EXPECT_EQ(parse_device("cuda:0"), c10::Device(c10::kCUDA, 0));
    const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
    EXPECT_THROW(parse_device("cuda:" + std::to_string(n)), UsageError);
  }
}

TEST(Device, DefaultDeviceRoundTripsAndModuleDeviceFollowsTheWeights) {
  const c10::Device before = default_device();
  set_default_device(c10::Device(c10::kCPU));
  EXPECT_TRUE(default_device().is_cpu());
  set_default_device(before);
  EXPECT_EQ(default_device(), before);
  auto m = tiny_gpt(1);
  EXPECT_TRUE(module_device(*m).is_cpu());
  m->to(test_device());
  EXPECT_EQ(module_device(*m), test_device());
  torch::nn::Sequential empty;
  EXPECT_TRUE(module_device(*empty).is_cpu());
  synchronize(test_device());  // a no-op on the CPU; must not throw anywhere
}

// int_range (core/shape.h), behind every token, label and index range check: a scan on the
// CPU, aminmax and one read on a device; the same answer for any integer type and layout.
TEST(Device, IntRangeOfIntegerTensorsAnywhere) {
  auto t = torch::tensor({{7, -2, 40}, {3, 0, 9}}, torch::kLong);
  for (const auto& x :
       {t, t.to(torch::kInt).t(), t.to(test_device()), t.to(torch::kShort).to(test_device())}) {
    const auto r = int_range(x);
    EXPECT_EQ(r.lo, -2);
    EXPECT_EQ(r.hi, 40);
  }
  EXPECT_EQ(int_range(torch::full({1}, 5, torch::kLong)).hi, 5);
  EXPECT_THROW(int_range(torch::empty({0}, torch::kLong)), Error);
  EXPECT_THROW(int_range(torch::zeros({3})), Error);  // floating point
}

TEST(Device, CliRejectsAnUnknownOrUnavailableDeviceWithExitCode2) {
  // The binary directly: run_cli would add CTFGEN_TEST_DEVICE's --device too.
  const std::string exe = std::string("'") + CTFGEN_BINARY + "' --threads 1 ";
  auto r = run_shell(exe + "--device gpu info");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("'gpu'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cpu, cuda or cuda:N"), std::string::npos) << r.err;
  if (!torch::cuda::is_available()) {
    r = run_shell(exe + "--device cuda info");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("no usable CUDA device"), std::string::npos) << r.err;
  }
}

TEST(DeviceParity, GptLogitsAndSampledTokensMatchTheCpu) {
  if (test_device().is_cpu())
    GTEST_SKIP() << "CTFGEN_TEST_DEVICE is the CPU: this test compares a device with the CPU "
                    "(label cuda; scripts/gpu_check.sh runs it with CTFGEN_TEST_DEVICE=cuda)";
  auto cpu = tiny_gpt(3);
  auto dev = copy_to_test_device(cpu, models::GPT(models::GPTConfig::preset("tiny"), 99));
  const auto& c = cpu->config();
  auto tokens = random_tokens(3, c.block_size, c.vocab_size, 4);
  auto labels = torch::tensor({0, 5, 9}, torch::kLong);
  at::Tensor ref, got;
  {
    c10::InferenceMode guard;
    ref = cpu->forward_train(tokens, labels);
    got = dev->forward_train(tokens, labels);  // CPU inputs reach the device model
  }
  EXPECT_EQ(got.device(), test_device());
  EXPECT_TRUE(all_close(got.cpu(), ref, 1e-4, 1e-4));

  // Argmax decoding, and random draws from the same CPU generator seed (drawn on the CPU and
  // moved, so the uniform numbers are identical whatever the device).
  for (bool argmax : {true, false}) {
    sampling::SamplingConfig sc;
    sc.cfg_scale = 2.0;
    sc.argmax = argmax;
    sc.top_k = 8;
    auto g1 = make_generator(7), g2 = make_generator(7);
    auto a = sampling::sample_ar(cpu, labels, sc, g1);
    auto b = sampling::sample_ar(dev, labels, sc, g2);
    EXPECT_EQ(b.device(), test_device());
    EXPECT_TRUE(torch::equal(a, b.cpu())) << "argmax " << argmax;
  }
}

TEST(DeviceParity, FineSamplerMatchesTheCpuWithAMemberMask) {
  if (test_device().is_cpu())
    GTEST_SKIP() << "CTFGEN_TEST_DEVICE is the CPU: this test compares a device with the CPU "
                    "(label cuda; scripts/gpu_check.sh runs it with CTFGEN_TEST_DEVICE=cuda)";
  auto cpu = tiny_aux(5);
  auto dev = copy_to_test_device(cpu, models::Aux(models::AuxConfig::preset("tiny"), 98));
  const auto& c = cpu->config();
  auto coarse = random_tokens(2, c.block_size, c.coarse_vocab, 6);
  auto labels = torch::tensor({1, 2}, torch::kLong);
  auto coarse_of = torch::arange(c.fine_vocab, torch::kLong).remainder(c.coarse_vocab);
  auto mask = sampling::member_mask_from_coarse_of(coarse_of, c.coarse_vocab);
  sampling::SamplingConfig sc;
  sc.cfg_scale = 1.5;
  auto g1 = make_generator(11), g2 = make_generator(11);
  auto a = sampling::sample_fine(cpu, coarse, labels, sc, g1, &mask);
  auto b = sampling::sample_fine(dev, coarse, labels, sc, g2, &mask);  // CPU mask, CPU inputs
  EXPECT_EQ(b.device(), test_device());
  EXPECT_TRUE(torch::equal(a, b.cpu()));
  // Every sampled fine code lies in its coarse label's cluster.
  EXPECT_TRUE(torch::equal(coarse_of.index_select(0, b.cpu().flatten()).view_as(coarse), coarse));
}

TEST(DeviceParity, OneTrainingStepMatchesTheCpu) {
  if (test_device().is_cpu())
    GTEST_SKIP() << "CTFGEN_TEST_DEVICE is the CPU: this test compares a device with the CPU "
                    "(label cuda; scripts/gpu_check.sh runs it with CTFGEN_TEST_DEVICE=cuda)";
  auto cpu = tiny_gpt(8);
  auto dev = copy_to_test_device(cpu, models::GPT(models::GPTConfig::preset("tiny"), 97));
  cpu->train();
  dev->train();
  const auto& c = cpu->config();
  auto tokens = random_tokens(4, c.block_size, c.vocab_size, 9);
  auto labels = torch::tensor({0, 1, 2, 3}, torch::kLong);
  train::OptimConfig oc;
  auto step = [&](models::GPT& m) {
    std::vector<std::pair<std::string, at::Tensor>> params;
    for (const auto& p : m->named_parameters()) params.emplace_back(p.key(), p.value());
    train::AdamW opt(params, oc);
    seed_global(0);  // dropout draws (the tiny preset has none, but the generator is used alike)
    opt.zero_grad();
    auto loss = models::gpt_loss(m, tokens, labels);
    loss.backward();
    const double norm = opt.grad_norm();
    opt.step(1e-2);
    return std::make_pair(loss.item<double>(), norm);
  };
  auto [l1, n1] = step(cpu);
  auto [l2, n2] = step(dev);
  EXPECT_NEAR(l1, l2, 1e-4);
  EXPECT_NEAR(n1, n2, 1e-4 * std::max(1.0, n1));
  auto a = cpu->parameters(), b = dev->parameters();
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(all_close(b[i].detach().cpu(), a[i].detach(), 1e-4, 1e-5)) << i;
}

TEST(DeviceParity, VqCodesAndDecodesMatchTheCpuAndComeBackOnTheCpu) {
  if (test_device().is_cpu())
    GTEST_SKIP() << "CTFGEN_TEST_DEVICE is the CPU: this test compares a device with the CPU "
                    "(label cuda; scripts/gpu_check.sh runs it with CTFGEN_TEST_DEVICE=cuda)";
  vq::VQModel cpu(tiny_vq_config(16, 1), 3);
  cpu->eval();
  vq::VQModel dev(tiny_vq_config(16, 1), 4);
  {
    torch::NoGradGuard g;
    auto a = cpu->parameters(), b = dev->parameters();
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  dev->to(test_device());
  dev->eval();
  auto gen = make_generator(2);
  auto x = torch::rand({5, 1, 8, 8}, gen) * 2 - 1;
  auto ca = vq::encode_to_indices(cpu, x, 2), cb = vq::encode_to_indices(dev, x, 2);
  EXPECT_TRUE(cb.device().is_cpu());
  EXPECT_TRUE(torch::equal(ca, cb));
  auto ra = vq::decode_from_indices(cpu, ca, 2), rb = vq::decode_from_indices(dev, ca, 2);
  EXPECT_TRUE(rb.device().is_cpu());
  EXPECT_TRUE(all_close(rb, ra, 1e-4, 1e-4));
}

TEST(Device, RngStateRoundTripsWithTheDeviceGenerator) {
  auto gen = make_generator(5);
  seed_global(123);
  auto state = capture_rng(gen);
  auto draw = [&] {
    auto a = torch::rand({4}, gen);
    auto b = torch::rand({4});  // global CPU generator
    auto c = torch::rand({4}, torch::TensorOptions().device(test_device())).cpu();
    return torch::cat({a, b, c});
  };
  auto first = draw();
  restore_rng(gen, state);
  EXPECT_TRUE(torch::equal(draw(), first));
  // A state without the device part (saved by a CPU run) still restores the CPU generators.
  RngState cpu_only{state.generator, state.global.narrow(0, 0, at::detail::getDefaultCPUGenerator()
                                                                   .get_state()
                                                                   .numel())};
  restore_rng(gen, cpu_only);
  EXPECT_TRUE(torch::equal(draw().narrow(0, 0, 8), first.narrow(0, 0, 8)));
  RngState bad{state.generator, state.global.narrow(0, 0, 10)};
  EXPECT_THROW(restore_rng(gen, bad), Error);
}

}  // namespace ctfgen::test
