// VQ tokenizer: LlamaGen key/shape compatibility, quantizer against a brute-force reference,
// straight-through gradients, encode/decode round trips, component save/load, dead-code restarts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"
#include "core/shape.h"
#include "io/checkpoint.h"
#include "test_util.h"
#include "vq/discriminator.h"
#include "vq/vq_model.h"

namespace ctfgen::test {
namespace {

vq::VQConfig tiny_config() { return tiny_vq_config(16, 3); }

// (name, shape string) in file order, from tests/data/llamagen_vq_keys.tsv.
std::vector<std::pair<std::string, std::string>> reference_keys() {
  std::ifstream in(source_dir() + "/tests/data/llamagen_vq_keys.tsv");
  EXPECT_TRUE(in.good()) << "missing tests/data/llamagen_vq_keys.tsv";
  std::vector<std::pair<std::string, std::string>> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto tab = line.find('\t');
    out.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  return out;
}

int64_t param_count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

TEST(VQConfig, JsonRoundTripAndValidation) {
  auto c = vq::VQConfig::preset("fmnist");
  auto back = vq::VQConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  back.validate();
  auto j = c.to_json();
  j["no_such_field"] = 1;
  EXPECT_THROW(vq::VQConfig::from_json(j), UsageError);
  auto bad = c;
  bad.norm_groups = 7;
  EXPECT_THROW(bad.validate(), UsageError);
  bad = c;
  bad.decoder_ch_mult = {1, 2};
  EXPECT_THROW(bad.validate(), UsageError);
  EXPECT_THROW(vq::VQConfig::preset("VQ-99"), UsageError);
  for (const auto& name : vq::VQConfig::preset_names()) vq::VQConfig::preset(name).validate();
  EXPECT_EQ(c.grid_size(28, 28), std::make_pair(int64_t{7}, int64_t{7}));
  EXPECT_THROW(c.grid_size(30, 28), UsageError);
  EXPECT_EQ(vq::VQConfig::preset("VQ-16").grid_size(256, 256).first, 16);
  EXPECT_EQ(vq::VQConfig::preset("VQ-8").grid_size(256, 256).first, 32);
}

TEST(VQModel, VQ16NamesAndShapesEqualLlamaGen) {
  vq::VQModel model(vq::VQConfig::preset("VQ-16"));
  auto ref = reference_keys();
  ASSERT_EQ(ref.size(), 344u);
  std::map<std::string, std::string> ours;
  for (const auto& [name, t] : io::module_tensors(*model)) ours[name] = shape_str(t.sizes());
  EXPECT_EQ(ours.size(), ref.size());
  for (const auto& [name, shape] : ref) {
    auto it = ours.find(name);
    ASSERT_NE(it, ours.end()) << "missing " << name;
    EXPECT_EQ(it->second, shape) << name;
  }
  // Parameters come in LlamaGen's registration order (the TSV lists the buffer among them).
  std::vector<std::string> ref_params;
  for (const auto& [name, shape] : ref)
    if (name != "quantize.codebook_used") ref_params.push_back(name);
  std::vector<std::string> our_params;
  for (const auto& p : model->named_parameters()) our_params.push_back(p.key());
  EXPECT_EQ(our_params, ref_params);
  EXPECT_EQ(param_count(*model), 71883403);
  EXPECT_EQ(param_count(*model->encoder), 29298176);
  EXPECT_EQ(param_count(*model->decoder), 42449795);
  auto buffers = model->named_buffers();
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers[0].key(), "quantize.codebook_used");
  EXPECT_EQ(buffers[0].value().scalar_type(), torch::kFloat);
}

TEST(VQModel, VQ8Counts) {
  vq::VQModel model(vq::VQConfig::preset("VQ-8"));
  EXPECT_EQ(io::module_tensors(*model).size(), 300u);
  EXPECT_EQ(param_count(*model), 70109835);
}

TEST(VQQuantizer, EqualsBruteForceNearestCode) {
  auto cfg = tiny_config();
  for (bool l2 : {true, false}) {
    cfg.codebook_l2_norm = l2;
    vq::VectorQuantizer q(cfg);
    auto gen = make_generator(3);
    {
      torch::NoGradGuard ng;
      q->embedding->weight.copy_(torch::randn({16, 4}, gen) * 2.0);  // not unit norm
    }
    q->eval();
    auto z = torch::randn({2, 4, 3, 5}, gen);
    auto out = q(z);
    ASSERT_EQ(out.indices.sizes(), (std::vector<int64_t>{2, 3, 5}));
    auto e = q->embedding->weight.detach();
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 5; ++j) {
          auto v = z.index({b, torch::indexing::Slice(), i, j});
          if (l2) v = v / std::max(v.norm().item<double>(), 1e-12);
          int64_t best = -1;
          double best_d = 1e300;
          for (int64_t k = 0; k < 16; ++k) {
            auto code = e[k];
            if (l2) code = code / std::max(code.norm().item<double>(), 1e-12);
            double d = (v - code).pow(2).sum().item<double>();
            if (d < best_d) best_d = d, best = k;
          }
          ASSERT_EQ(out.indices[b][i][j].item<int64_t>(), best) << "l2=" << l2;
          auto expect = e[best];
          if (l2) expect = expect / expect.norm();
          EXPECT_TRUE(all_close(out.z_q.index({b, torch::indexing::Slice(), i, j}), expect, 1e-5,
                                1e-6));
        }
  }
}

TEST(VQQuantizer, LossesAndUsageWindow) {
  auto cfg = tiny_config();
  vq::VectorQuantizer q(cfg);
  auto gen = make_generator(4);
  auto z = torch::randn({2, 4, 3, 3}, gen);
  q->train();
  auto out = q(z);
  auto zn = torch::nn::functional::normalize(
      z.permute({0, 2, 3, 1}), torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto zq = out.z_q.permute({0, 2, 3, 1});
  double mse = (zq - zn).pow(2).mean().item<double>();
  EXPECT_NEAR(out.codebook_loss.item<double>(), mse, 1e-6);
  EXPECT_NEAR(out.commit_loss.item<double>(), 0.25 * mse, 1e-6);
  EXPECT_EQ(out.entropy_loss.item<double>(), 0.0);
  // The last 18 window slots hold this batch's indices in raster order.
  auto tail = q->codebook_used.slice(0, vq::kCodebookUsedWindow - 18).to(torch::kLong);
  EXPECT_TRUE(torch::equal(tail, out.indices.reshape({-1})));
  q->eval();
  auto before = q->codebook_used.clone();
  q(z);
  EXPECT_TRUE(torch::equal(before, q->codebook_used)) << "eval mode must not touch the window";

  cfg.entropy_loss_ratio = 0.1;
  vq::VectorQuantizer qe(cfg);
  auto oe = qe(z);
  EXPECT_NE(oe.entropy_loss.item<double>(), 0.0);
  EXPECT_TRUE(oe.entropy_loss.requires_grad());
}

TEST(VQModel, StraightThroughGradientReachesEncoder) {
  vq::VQModel model(tiny_config(), 1);
  model->train();
  auto gen = make_generator(5);
  auto x = torch::rand({2, 3, 8, 8}, gen) * 2 - 1;
  auto out = model(x);
  auto loss = (out.recon - x).pow(2).mean();  // reconstruction only: reaches z only through STE
  loss.backward();
  for (const auto& p : model->encoder->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
  }
  EXPECT_GT(model->encoder->conv_in->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(model->quant_conv->weight.grad().abs().sum().item<double>(), 0.0);
  // The codebook gets no gradient from the reconstruction alone (straight-through), only from
  // the codebook loss.
  auto g = model->quantize->embedding->weight.grad();
  EXPECT_TRUE(!g.defined() || g.abs().sum().item<double>() == 0.0);
  model->zero_grad();
  auto out2 = model(x);
  out2.losses.total().backward();
  EXPECT_GT(model->quantize->embedding->weight.grad().abs().sum().item<double>(), 0.0);
}

TEST(VQModel, DecodeIndicesEqualsDecodeOfQuantized) {
  vq::VQModel model(tiny_config(), 2);
  model->eval();
  torch::NoGradGuard ng;
  auto gen = make_generator(6);
  auto x = torch::rand({3, 3, 8, 8}, gen) * 2 - 1;
  auto e = model->encode(x);
  EXPECT_EQ(e.indices.sizes(), (std::vector<int64_t>{3, 4, 4}));
  EXPECT_EQ(e.indices.scalar_type(), torch::kLong);
  auto a = model->decode(e.z_q);
  auto b = model->decode_indices(e.indices);
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_TRUE(all_close(a, b, 1e-5, 1e-6));
  auto batched = vq::encode_to_indices(model, x, 2);
  EXPECT_TRUE(torch::equal(batched, e.indices));
  EXPECT_TRUE(all_close(vq::decode_from_indices(model, batched, 2), b, 1e-5, 1e-6));
  EXPECT_THROW(model->decode_indices(torch::full({1, 4, 4}, 16, torch::kLong)), Error);
  EXPECT_THROW(model->encode(torch::zeros({1, 3, 7, 8})), UsageError);  // 7 is not a multiple of 2
}

TEST(VQModel, SaveLoadRoundTripGivesIdenticalOutputs) {
  TempDir dir;
  vq::VQModel model(tiny_config(), 7);
  model->train();
  auto gen = make_generator(8);
  auto x = torch::rand({2, 3, 8, 8}, gen) * 2 - 1;
  model(x);  // fills part of codebook_used
  model->eval();
  const std::string path = dir.file("vq.safetensors");
  vq::save_vq(path, model, {{"step", 3}});
  auto loaded = vq::load_vq(path);
  loaded->to(torch::kCPU);  // the loader puts it on CTFGEN_TEST_DEVICE; compare on the CPU
  EXPECT_FALSE(loaded->is_training());
  torch::NoGradGuard ng;
  auto a = model(x), b = loaded(x);
  EXPECT_TRUE(torch::equal(a.recon, b.recon));
  EXPECT_TRUE(torch::equal(a.indices, b.indices));
  EXPECT_TRUE(torch::equal(model->quantize->codebook_used, loaded->quantize->codebook_used));
  EXPECT_EQ(vq::vq_tokenizer_hash(model), vq::vq_tokenizer_hash(loaded));
  auto comp = io::load_component(path, "vq");
  EXPECT_EQ(comp.meta["tokenizer_hash"], vq::vq_tokenizer_hash(model));
  EXPECT_EQ(comp.meta["step"], 3);
  // The hash ignores the usage window but sees the weights.
  {
    torch::NoGradGuard g2;
    loaded->quantize->codebook_used.fill_(5);
    EXPECT_EQ(vq::vq_tokenizer_hash(model), vq::vq_tokenizer_hash(loaded));
    loaded->quantize->embedding->weight[0][0].add_(1.0);
    EXPECT_NE(vq::vq_tokenizer_hash(model), vq::vq_tokenizer_hash(loaded));
  }
  // A component of another kind, or with a mismatched config, is refused.
  io::save_component(dir.file("other.safetensors"), "gpt", nlohmann::json::object(),
                     io::module_tensors(*model));
  EXPECT_THROW(vq::load_vq(dir.file("other.safetensors")), Error);
  auto cfg = tiny_config();
  cfg.codebook_size = 32;
  io::save_component(dir.file("mismatch.safetensors"), "vq", cfg.to_json(),
                     io::module_tensors(*model));
  try {
    vq::load_vq(dir.file("mismatch.safetensors"));
    FAIL() << "expected a shape mismatch error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quantize.embedding.weight"), std::string::npos) << e.what();
  }
}

TEST(VQQuantizer, DeadCodeRestartReseedsOnlyUnusedCodes) {
  auto cfg = tiny_config();
  vq::VectorQuantizer q(cfg);
  auto gen = make_generator(9);
  q->reset_codebook(gen);
  {
    torch::NoGradGuard ng;
    // Window holds only codes 0..3.
    q->codebook_used.copy_(torch::arange(vq::kCodebookUsedWindow, torch::kFloat).remainder(4));
  }
  EXPECT_NEAR(q->window_usage(), 4.0 / 16.0, 1e-12);
  auto before = q->embedding->weight.detach().clone();
  auto zf = torch::nn::functional::normalize(torch::randn({40, 4}, gen),
                                             torch::nn::functional::NormalizeFuncOptions().dim(1));
  EXPECT_EQ(q->restart_dead_codes(zf, gen), 12);
  auto after = q->embedding->weight.detach();
  EXPECT_TRUE(torch::equal(after.slice(0, 0, 4), before.slice(0, 0, 4)));
  for (int64_t k = 4; k < 16; ++k) {
    // Every re-seeded code is one of the given encoder vectors.
    auto d = (zf - after[k].unsqueeze(0)).abs().sum(1).min().item<double>();
    EXPECT_LT(d, 1e-6) << "code " << k;
  }
  // Re-seeded codes are distinct rows (drawn without replacement).
  EXPECT_EQ(std::get<0>(at::_unique(after.slice(0, 4, 16).sum(1))).numel(), 12);
}

TEST(VQDiscriminator, KeysShapesAndHinge) {
  auto gen = make_generator(10);
  vq::NLayerDiscriminator d(3, 64, 3, gen);
  std::vector<std::string> convs;
  for (const auto& p : d->named_parameters())
    if (p.key().find("weight") != std::string::npos) convs.push_back(p.key());
  EXPECT_EQ(convs, (std::vector<std::string>{"main.0.weight", "main.2.weight", "main.3.weight",
                                             "main.5.weight", "main.6.weight", "main.8.weight",
                                             "main.9.weight", "main.11.weight"}));
  EXPECT_EQ(d->main->named_parameters()["8.weight"].sizes(),
            (std::vector<int64_t>{512, 256, 4, 4}));
  auto out = d(torch::randn({2, 3, 32, 32}, gen));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 1, 2, 2}));
  auto real = torch::tensor({2.0, 0.5}), fake = torch::tensor({-3.0, 0.0});
  // 0.5 * (mean(relu(1 - [2, .5])) + mean(relu(1 + [-3, 0]))) = 0.5 * (0.25 + 0.5)
  EXPECT_NEAR(vq::hinge_d_loss(real, fake).item<double>(), 0.375, 1e-9);
  EXPECT_NEAR(vq::hinge_g_loss(fake).item<double>(), 1.5, 1e-9);
}

}  // namespace ctfgen::test
