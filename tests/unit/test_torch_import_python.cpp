// Import of synthetic LlamaGen checkpoints written by PyTorch itself
// (tests/python/make_llamagen_checkpoint.py, /usr/bin/python3 with torch): every layout
// (wrapped in {"model": ..., "args": Namespace, ...}, bare, "module", "state_dict"), fp32 / fp16 /
// bf16, pickle protocol 4, extra keys to ignore, the legacy format, re-packed archives
// (deflate, ZIP64), the CLI and loading a .pt where a component is expected.
// Skipped when Python with torch is unavailable.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/torch_import.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

const std::string kScript = source_dir() + "/tests/python/make_llamagen_checkpoint.py";

class TorchImportPython : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_python_torch()) return;
    dir_ = std::make_unique<TempDir>();
    auto r = run_shell("/usr/bin/python3 '" + kScript + "' --all-tiny '" + dir_->path() + "'");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override {
    if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not available";
  }
  static std::string file(const std::string& name) { return dir_->file(name); }

  // Checks every tensor against the Python summary: shape, 3 exact values, the fp64 sum.
  static void expect_matches_summary(const io::NamedTensors& tensors, const std::string& json_path,
                                     at::ScalarType expect_dtype) {
    std::ifstream in(json_path);
    nlohmann::json j = nlohmann::json::parse(in);
    size_t checked = 0;
    for (const auto& [name, t] : tensors) {
      ASSERT_TRUE(j.contains(name)) << name;
      const auto& s = j[name];
      EXPECT_EQ(t.sizes().vec(), s["shape"].get<std::vector<int64_t>>()) << name;
      if (name != "quantize.codebook_used") {
        EXPECT_EQ(t.scalar_type(), expect_dtype) << name;
      }
      auto flat = t.reshape({-1}).to(torch::kDouble);
      auto idx = s["idx"].get<std::vector<int64_t>>();
      auto val = s["val"].get<std::vector<double>>();
      for (size_t k = 0; k < idx.size(); ++k)
        EXPECT_EQ(flat[idx[k]].item<double>(), val[k]) << name << "[" << idx[k] << "]";
      double sum = flat.sum().item<double>();
      EXPECT_NEAR(sum, s["sum"].get<double>(), 1e-9 * (1 + std::abs(sum))) << name;
      ++checked;
    }
    EXPECT_EQ(checked, j.size());
  }

  static std::unique_ptr<TempDir> dir_;
};
std::unique_ptr<TempDir> TorchImportPython::dir_;

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

TEST_F(TorchImportPython, TinyVQWrappedWithNamespaceArgs) {
  auto imp = io::import_llamagen(file("vq_tiny.pt"));
  EXPECT_EQ(imp.raw_info.entry, "model");
  EXPECT_EQ(imp.raw_info.archive_folder, "vq_tiny");
  EXPECT_NE(std::find(imp.raw_info.opaque_objects.begin(), imp.raw_info.opaque_objects.end(),
                      "argparse.Namespace"),
            imp.raw_info.opaque_objects.end());
  EXPECT_EQ(imp.detection.kind, "vq");
  EXPECT_EQ(imp.detection.preset, "custom");  // VQ-16 naming, smaller widths
  EXPECT_EQ(imp.detection.config["encoder_ch_mult"], (std::vector<int64_t>{1, 1, 2, 2, 4}));
  EXPECT_EQ(imp.detection.config["decoder_ch_mult"], (std::vector<int64_t>{1, 1, 2, 2, 4}));
  EXPECT_EQ(imp.detection.config["base_channels"], 32);
  EXPECT_EQ(imp.detection.config["codebook_size"], 64);
  EXPECT_EQ(imp.detection.config["codebook_dim"], 8);
  EXPECT_EQ(imp.detection.config["z_channels"], 16);
  EXPECT_EQ(imp.detection.config["encoder_num_res_blocks"], 2);
  EXPECT_EQ(imp.detection.config["decoder_num_res_blocks"], 3);
  EXPECT_NE(joined(imp.detection.notes).find("16x down-sampling"), std::string::npos);
  EXPECT_EQ(imp.tensors.size(), 344u);
  expect_matches_summary(imp.tensors, file("vq_tiny.json"), torch::kFloat);
}

TEST_F(TorchImportPython, VQ8LevelsAndStateDictEntry) {
  auto imp = io::import_llamagen(file("vq8_tiny.pt"));
  EXPECT_EQ(imp.raw_info.entry, "state_dict");
  EXPECT_EQ(imp.detection.config["encoder_ch_mult"], (std::vector<int64_t>{1, 2, 2, 4}));
  EXPECT_NE(joined(imp.detection.notes).find("8x down-sampling"), std::string::npos);
}

TEST_F(TorchImportPython, HalfAndBFloat16AreConvertedOrKept) {
  for (const char* name : {"vq_tiny_fp16", "vq_tiny_bf16"}) {
    auto imp = io::import_llamagen(file(std::string(name) + ".pt"));
    expect_matches_summary(imp.tensors, file(std::string(name) + ".json"), torch::kFloat);
    io::LlamaGenImportOptions keep;
    keep.keep_dtype = true;
    auto kept = io::import_llamagen(file(std::string(name) + ".pt"), keep);
    expect_matches_summary(kept.tensors, file(std::string(name) + ".json"),
                           name == std::string("vq_tiny_fp16") ? torch::kHalf : torch::kBFloat16);
  }
}

TEST_F(TorchImportPython, GPTWithExtrasOptimizerAndBlockSizeFromName) {
  auto imp = io::import_llamagen(file("c2i_tiny_384.pt"));
  EXPECT_EQ(imp.raw_info.entry, "model");
  EXPECT_EQ(imp.detection.kind, "gpt");
  EXPECT_EQ(imp.detection.config["block_size"], 576);
  EXPECT_EQ(imp.detection.config["vocab_size"], 64);
  EXPECT_EQ(imp.detection.config["num_classes"], 10);
  EXPECT_EQ(imp.detection.config["n_head"], 2);
  EXPECT_EQ(imp.ignored.size(), 5u);  // freqs_cis + 2 layers x (k_cache, v_cache)
  EXPECT_EQ(imp.tensors.size(), 2u + 7u * 2u + 2u);
  std::string notes = joined(imp.detection.notes);
  EXPECT_NE(notes.find("inferred from the file name 'c2i_tiny_384.pt'"), std::string::npos) << notes;
}

TEST_F(TorchImportPython, GPTLayoutsAndProtocol4) {
  auto bare = io::import_llamagen(file("gpt_tiny_bare.pt"));
  EXPECT_EQ(bare.raw_info.entry, "");
  expect_matches_summary(bare.tensors, file("gpt_tiny_bare.json"), torch::kFloat);
  auto mod = io::import_llamagen(file("gpt_tiny_module.pt"));
  EXPECT_EQ(mod.raw_info.entry, "module");
  expect_matches_summary(mod.tensors, file("gpt_tiny_module.json"), torch::kFloat);
  auto p4 = io::import_llamagen(file("gpt_tiny_proto4.pt"));
  expect_matches_summary(p4.tensors, file("gpt_tiny_proto4.json"), torch::kFloat);
  auto fp16 = io::import_llamagen(file("gpt_tiny_fp16.pt"));
  expect_matches_summary(fp16.tensors, file("gpt_tiny_fp16.json"), torch::kFloat);
}

TEST_F(TorchImportPython, LegacyFormatIsRefusedWithAHint) {
  try {
    io::import_llamagen(file("gpt_tiny_legacy.pt"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("legacy (non-zip) PyTorch serialization format"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(TorchImportPython, RepackedDeflateAndZip64ArchivesRead) {
  TempDir d;
  const std::string src = file("gpt_tiny_bare.pt");
  auto r = run_shell(
      "/usr/bin/python3 -c \"import zipfile,sys\n"
      "src=zipfile.ZipFile(sys.argv[1])\n"
      "for out,c,z64 in ((sys.argv[2],zipfile.ZIP_DEFLATED,False),(sys.argv[3],zipfile.ZIP_STORED,True)):\n"
      "  w=zipfile.ZipFile(out,'w',c)\n"
      "  for i in src.infolist():\n"
      "    with w.open(i.filename,'w',force_zip64=z64) as f: f.write(src.read(i))\n"
      "  w.close()\" '" +
      src + "' '" + d.file("deflate.pt") + "' '" + d.file("zip64.pt") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* n : {"deflate.pt", "zip64.pt"}) {
    auto imp = io::import_llamagen(d.file(n));
    expect_matches_summary(imp.tensors, file("gpt_tiny_bare.json"), torch::kFloat);
  }
}

TEST_F(TorchImportPython, CliWritesAComponentAndPtLoadsWhereAComponentIsExpected) {
  TempDir d;
  auto r = run_cli({"import-llamagen", file("c2i_tiny_384.pt"), "--out", d.file("gpt.safetensors")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("found     custom (c2i GPT)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("576"), std::string::npos) << r.out;
  auto c = io::load_component(d.file("gpt.safetensors"), "gpt");
  EXPECT_EQ(c.config["block_size"], 576);
  EXPECT_EQ(c.meta["imported_from"], "c2i_tiny_384.pt");
  EXPECT_EQ(c.file.tensors.size(), 18u);

  auto direct = io::load_component_or_torch(file("c2i_tiny_384.pt"), "gpt");
  EXPECT_EQ(direct.kind, "gpt");
  ASSERT_EQ(direct.file.tensors.size(), c.file.tensors.size());
  for (const auto& [n, t] : direct.file.tensors) EXPECT_TRUE(torch::equal(t, c.file.get(n))) << n;
  auto via_st = io::load_component_or_torch(d.file("gpt.safetensors"), "gpt");
  EXPECT_EQ(via_st.config, c.config);
  EXPECT_THROW(io::load_component_or_torch(file("c2i_tiny_384.pt"), "vq"), Error);

  r = run_cli({"import-llamagen", file("vq_tiny.pt"), "--out", d.file("v.safetensors"), "--kind", "gpt"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("expected a LlamaGen GPT but found a VQ tokenizer"), std::string::npos) << r.err;
  r = run_cli({"import-llamagen", file("vq_tiny.pt"), "--out", d.file("v.safetensors"), "--image-size", "-3"});
  EXPECT_EQ(r.exit_code, 2);
}

// Full-size VQ-16 and GPT-B files (~290 MB and ~440 MB): detection names the presets.
TEST(TorchImportSlow, FullSizeVQ16AndGPTBAreDetected) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not available";
  if (!std::getenv("CTFGEN_SLOW_TESTS")) GTEST_SKIP() << "set CTFGEN_SLOW_TESTS=1 to run";
  TempDir d;
  auto r = run_shell("/usr/bin/python3 '" + kScript + "' --kind vq --size full --out '" +
                     d.file("vq_ds16_c2i.pt") + "' && /usr/bin/python3 '" + kScript +
                     "' --kind gpt --size full --dtype bf16 --out '" + d.file("c2i_B_256.pt") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto vq = io::import_llamagen(d.file("vq_ds16_c2i.pt"));
  EXPECT_EQ(vq.detection.preset, "VQ-16");
  EXPECT_EQ(vq.tensors.size(), 344u);
  auto gpt = io::import_llamagen(d.file("c2i_B_256.pt"));
  EXPECT_EQ(gpt.detection.preset, "GPT-B");
  EXPECT_EQ(gpt.detection.config["block_size"], 256);
  EXPECT_EQ(gpt.tensors.size(), 88u);
  int64_t params = 0;
  for (const auto& [n, t] : gpt.tensors) params += t.numel();
  EXPECT_EQ(params, 110'888'448);
}

}  // namespace
}  // namespace ctfgen::test
