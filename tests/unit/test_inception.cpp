// Inception-v3 against torchvision (random weights with randomised BatchNorm statistics):
// the plain variant against torchvision.models.inception_v3, the FID variant against a Python
// restatement of the FID blocks (tests/python/export_inception.py). Skipped without
// /usr/bin/python3 + torch + torchvision.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>

#include "core/error.h"
#include "eval/inception.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

bool have_torchvision() {
  static int ok = -1;
  if (ok < 0)
    ok = have_python_torch() &&
                 run_shell("/usr/bin/python3 -c 'import torchvision'").exit_code == 0
             ? 1
             : 0;
  return ok == 1;
}

}  // namespace

// One Python export shared by the suite (it builds two Inception models: a few seconds).
class InceptionOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_torchvision()) return;
    dir_ = std::make_unique<TempDir>();
    auto r = run_shell("/usr/bin/python3 " + source_dir() +
                       "/tests/python/export_inception.py " + dir_->path());
    export_ok_ = r.exit_code == 0;
    export_log_ = r.err;
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override {
    if (!have_torchvision()) GTEST_SKIP() << "/usr/bin/python3 with torch/torchvision not available";
    ASSERT_TRUE(export_ok_) << export_log_;
  }

  void check_variant(const std::string& variant, int64_t classes) {
    eval::InceptionConfig cfg;
    cfg.variant = variant;
    cfg.num_classes = classes;
    auto model = eval::load_inception(dir_->file("weights_" + variant + ".safetensors"), cfg);
    model->to(torch::kCPU);  // compared with Python's CPU outputs
    auto io = io::load_safetensors(dir_->file("io_" + variant + ".safetensors"));
    torch::NoGradGuard no_grad;
    auto pool = model->features(io.get("input"));
    auto logits = model->logits(pool);
    const auto& want_pool = io.get("pool");
    const auto& want_logits = io.get("logits");
    ASSERT_EQ(pool.sizes(), want_pool.sizes());
    ASSERT_EQ(logits.size(1), classes);
    // ~1e-4 relative to the typical magnitude (elementwise relative fails near 0).
    const double pool_scale = want_pool.abs().mean().item<double>();
    const double logit_scale = want_logits.abs().mean().item<double>();
    EXPECT_TRUE(all_close(pool, want_pool, 1e-4, 1e-4 * pool_scale)) << variant;
    EXPECT_TRUE(all_close(logits, want_logits, 1e-4, 1e-4 * logit_scale)) << variant;
  }

  static std::unique_ptr<TempDir> dir_;
  static bool export_ok_;
  static std::string export_log_;
};
std::unique_ptr<TempDir> InceptionOracle::dir_;
bool InceptionOracle::export_ok_ = false;
std::string InceptionOracle::export_log_;

TEST_F(InceptionOracle, TorchvisionVariantMatchesTorchvision) {
  check_variant("torchvision", 1000);
}

TEST_F(InceptionOracle, FidVariantMatchesPythonFidBlocks) {
  check_variant("fid", 1008);
  // The two variants really differ: FID blocks on torchvision-variant weights change features.
  eval::InceptionConfig plain;
  plain.variant = "torchvision";
  plain.num_classes = 1008;
  auto other = eval::load_inception(dir_->file("weights_fid.safetensors"), plain);
  other->to(torch::kCPU);
  auto io = io::load_safetensors(dir_->file("io_fid.safetensors"));
  torch::NoGradGuard no_grad;
  auto pool = other->features(io.get("input"));
  EXPECT_FALSE(all_close(pool, io.get("pool"), 1e-3, 1e-3 * io.get("pool").abs().mean().item<double>()));
}

TEST_F(InceptionOracle, ComponentRoundTripAndFeatureNet) {
  eval::InceptionConfig cfg;  // fid, 1008
  auto model = eval::load_inception(dir_->file("weights_fid.safetensors"), cfg);
  TempDir d;
  eval::save_inception(d.file("inception.safetensors"), model, {{"source", "test"}});
  // The component's stored config wins over the fallback argument.
  eval::InceptionConfig wrong;
  wrong.variant = "torchvision";
  wrong.num_classes = 1000;
  auto back = eval::load_inception(d.file("inception.safetensors"), wrong);
  EXPECT_EQ(back->config.variant, "fid");
  EXPECT_EQ(back->config.num_classes, 1008);
  eval::InceptionNet a(model), b(back);
  EXPECT_EQ(a.identity(), b.identity());
  auto io = io::load_safetensors(dir_->file("io_fid.safetensors"));
  auto out = b.run(io.get("input"));  // CPU input; the net runs where the loader put it
  EXPECT_TRUE(all_close(out.features.cpu(), io.get("pool"), 1e-4,
                        1e-4 * io.get("pool").abs().mean().item<double>()));
  EXPECT_TRUE(all_close(out.probs.sum(1).cpu(), torch::ones({2}), 1e-5, 1e-5));
  // Grayscale input is repeated to three channels.
  auto gray = io.get("input").slice(0, 0, 1).slice(1, 0, 1);
  auto g = b.run(gray);
  auto rgb = b.run(gray.expand({-1, 3, -1, -1}).contiguous());
  EXPECT_TRUE(all_close(g.features.cpu(), rgb.features.cpu(), 1e-6, 1e-6));
  // Wrong class count is refused by shape.
  eval::InceptionConfig small;
  small.num_classes = 10;
  EXPECT_THROW(eval::load_inception(dir_->file("weights_fid.safetensors"), small), Error);
}

TEST_F(InceptionOracle, ConvertScriptProducesALoadableComponent) {
  TempDir d;
  auto r = run_shell("/usr/bin/python3 " + source_dir() + "/tests/python/convert_inception.py " +
                     dir_->file("fid_state_dict.pth") + " " + d.file("fid.safetensors") +
                     " --variant fid");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto comp = io::load_component(d.file("fid.safetensors"), "inception");
  EXPECT_EQ(comp.config.at("num_classes").get<int64_t>(), 1008);
  EXPECT_EQ(comp.meta.at("source").get<std::string>(), "fid_state_dict.pth");
  auto model = eval::load_inception(d.file("fid.safetensors"));  // config from the file
  EXPECT_EQ(model->config.variant, "fid");
  // Same tensors as the oracle's weights (whose forward the tests above check).
  auto direct = eval::load_inception(dir_->file("weights_fid.safetensors"));
  auto mine = io::module_tensors(*model), want = io::module_tensors(*direct);
  ASSERT_EQ(mine.size(), want.size());
  for (size_t i = 0; i < mine.size(); ++i)
    EXPECT_TRUE(torch::equal(mine[i].second, want[i].second)) << mine[i].first;
}

TEST(Inception, ConfigValidationAndNames) {
  eval::InceptionConfig c;
  c.variant = "tf";
  EXPECT_THROW(c.validate(), UsageError);
  EXPECT_THROW(eval::InceptionConfig::from_json({{"variant", "fid"}, {"extra", 1}}), UsageError);
  auto back = eval::InceptionConfig::from_json(eval::InceptionConfig{}.to_json());
  EXPECT_EQ(back.variant, "fid");
  EXPECT_EQ(back.num_classes, 1008);
  // A few torchvision state-dict names and the parameter count of inception_v3(aux_logits=False,
  // num_classes=1008): 23,834,568 + 1008 * 2048 + 1008 - 1000 * 2048 - 1000.
  eval::InceptionV3 m(eval::InceptionConfig{});
  std::set<std::string> names;
  int64_t count = 0;
  for (auto& p : m->named_parameters(true)) {
    names.insert(p.key());
    count += p.value().numel();
  }
  for (const char* n : {"Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch5x5_2.bn.bias",
                        "Mixed_6e.branch7x7dbl_5.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.weight",
                        "fc.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_EQ(count, 23834568 + 8 * 2048 + 8);
}

}  // namespace ctfgen::test
