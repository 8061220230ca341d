// Import of synthetic LlamaGen checkpoints written by PyTorch itself
// (tests/python/make_llamagen_checkpoint.py, /usr/bin/python3 with torch): every layout
// (wrapped in {"model": ..., "args": Namespace, ...}, bare, "module", "state_dict"), fp32 / fp16 /
// bf16, pickle protocol 4, extra keys to ignore, the legacy format, re-packed archives
// (deflate, ZIP64), the CLI and loading a .pt where a component is expected.
// Skipped when Python with torch is unavailable.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <cstring>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "cluster/clustering.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/token_dir.h"
#include "io/checkpoint.h"
#include "io/image_io.h"
#include "io/torch_import.h"
#include "models/gpt.h"
#include "pipeline/generate.h"
#include "pipeline/train_generator.h"
#include "test_util.h"
#include "vq/vq_model.h"

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

TEST_F(TorchImportPython, GPTWithExtrasOptimizerAndBlockSizeFromArgs) {
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
  EXPECT_NE(notes.find("384px images (from args.image_size; the file name agrees)"), std::string::npos)
      << notes;
  EXPECT_NE(notes.find("args agree with the weights: vocab_size 64, num_classes 10, cls_token_num 1"),
            std::string::npos)
      << notes;
  EXPECT_NE(notes.find("args: 8 plain fields of the saved argparse.Namespace"), std::string::npos)
      << notes;
  EXPECT_EQ(imp.raw_info.args["image_size"], 384);
  EXPECT_EQ(imp.raw_info.args["gpt_type"], "c2i");
  EXPECT_FALSE(imp.raw_info.args.contains("gpt_model"));  // tiny shapes match no preset
  EXPECT_EQ(imp.meta["llamagen_args"], imp.raw_info.args);
  EXPECT_EQ(imp.meta["llamagen_sources"],
            nlohmann::json({{"n_head", "default"}, {"token_downsample", "args"}, {"image_size", "args"}}));
}

// Where the block size comes from, in files torch.save wrote: args under a neutral name; the
// file name when there are no args; a name / args disagreement (an error unless --image-size
// decides); args whose vocab contradicts the weights.
TEST_F(TorchImportPython, BlockSizeFromArgsFileNameOrOption) {
  auto imp = io::import_llamagen(file("gpt_tiny_argsize.pt"));
  EXPECT_EQ(imp.detection.config["block_size"], 576);
  EXPECT_EQ(imp.detection.sources["image_size"], "args");

  imp = io::import_llamagen(file("c2i_tiny_noargs_384.pt"));
  EXPECT_TRUE(imp.raw_info.args.is_null());
  EXPECT_TRUE(imp.meta["llamagen_args"].is_null());
  EXPECT_EQ(imp.detection.config["block_size"], 576);
  EXPECT_EQ(imp.detection.sources["image_size"], "file name");
  EXPECT_EQ(imp.detection.sources["token_downsample"], "default");

  std::string err = error_of([&] { io::import_llamagen(file("c2i_tiny_clash_384.pt")); });
  EXPECT_NE(err.find("the file name 'c2i_tiny_clash_384.pt' says 384px images but "
                     "args.image_size is 256"),
            std::string::npos)
      << err;
  io::LlamaGenImportOptions opt;
  opt.image_size = 384;
  imp = io::import_llamagen(file("c2i_tiny_clash_384.pt"), opt);
  EXPECT_EQ(imp.detection.config["block_size"], 576);
  EXPECT_EQ(imp.detection.sources["image_size"], "option");
  EXPECT_NE(joined(imp.detection.notes).find("from --image-size, overriding args.image_size 256"),
            std::string::npos)
      << joined(imp.detection.notes);

  err = error_of([&] { io::import_llamagen(file("gpt_tiny_badvocab.pt")); });
  EXPECT_NE(err.find("gpt_tiny_badvocab.pt: args.vocab_size is 100 but the weights say 64 "
                     "(tok_embeddings.weight has 64 rows)"),
            std::string::npos)
      << err;
}

// A tokenizer's args: vq_model names the level structure, the codebook must match, image_size
// is recorded.
TEST_F(TorchImportPython, VQArgsAreCheckedAndImageSizeRecorded) {
  auto imp = io::import_llamagen(file("vq8_tiny.pt"));
  EXPECT_EQ(imp.raw_info.args["vq_model"], "VQ-8");
  EXPECT_EQ(imp.detection.sources["image_size"], "args");
  EXPECT_EQ(imp.detection.config["image_size"], 256);
  EXPECT_NE(joined(imp.detection.notes)
                .find("args agree with the weights: codebook_size 64, codebook_embed_dim 8, "
                      "vq_model VQ-8 (level structure)"),
            std::string::npos)
      << joined(imp.detection.notes);

  auto sd = io::read_torch_state_dict(file("vq_tiny.pt"));
  ASSERT_EQ(sd.args["vq_model"], "VQ-16");
  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json a = sd.args;
    a[key] = std::move(value);
    return a;
  };
  std::string err = error_of([&] { io::detect_llamagen(sd.tensors, "vq.pt", {}, with("vq_model", "VQ-8")); });
  EXPECT_NE(err.find("vq.pt: args.vq_model is VQ-8 (ch_mult [1, 2, 2, 4], 8x down-sampling) but "
                     "the weights have encoder ch_mult [1, 1, 2, 2, 4]"),
            std::string::npos)
      << err;
  err = error_of([&] { io::detect_llamagen(sd.tensors, "vq.pt", {}, with("codebook_size", 16384)); });
  EXPECT_NE(err.find("args.codebook_size is 16384 but the weights say 64 "
                     "(quantize.embedding.weight has 64 rows)"),
            std::string::npos)
      << err;
  err = error_of([&] { io::detect_llamagen(sd.tensors, "vq.pt", {}, with("codebook_embed_dim", 256)); });
  EXPECT_NE(err.find("args.codebook_embed_dim is 256 but the weights say 8"), std::string::npos) << err;
  auto d = io::detect_llamagen(sd.tensors, "vq.pt", {}, with("image_size", 512));
  EXPECT_EQ(d.config["image_size"], 512);
  io::LlamaGenImportOptions opt;
  opt.image_size = 384;
  d = io::detect_llamagen(sd.tensors, "vq.pt", opt, with("image_size", 512));
  EXPECT_EQ(d.config["image_size"], 384);
  EXPECT_EQ(d.sources["image_size"], "option");
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

  // --json says where each value came from and carries the args; the meta keeps both.
  r = run_cli({"import-llamagen", file("c2i_tiny_384.pt"), "--out", d.file("g.safetensors"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["sources"]["image_size"], "args");
  EXPECT_EQ(j["sources"]["token_downsample"], "args");
  EXPECT_EQ(j["args"]["image_size"], 384);
  auto g = io::load_component(d.file("g.safetensors"), "gpt");
  EXPECT_EQ(g.meta["llamagen_sources"], j["sources"]);
  EXPECT_EQ(g.meta["llamagen_args"]["vocab_size"], 64);
  // A file name / args disagreement: an error naming both; --image-size settles it.
  r = run_cli({"import-llamagen", file("c2i_tiny_clash_384.pt"), "--out", d.file("c.safetensors")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("says 384px images but args.image_size is 256"), std::string::npos) << r.err;
  r = run_cli({"import-llamagen", file("c2i_tiny_clash_384.pt"), "--out", d.file("c.safetensors"),
               "--image-size", "384"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("overriding args.image_size 256"), std::string::npos) << r.out;
}

// Reads the raw little-endian float32 file llamagen_reference.py writes.
at::Tensor read_f32(const std::string& path, std::vector<int64_t> shape) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto t = torch::empty(shape, torch::kFloat);
  EXPECT_EQ(bytes.size(), static_cast<size_t>(t.numel()) * 4) << path;
  std::memcpy(t.data_ptr<float>(), bytes.data(), std::min<size_t>(bytes.size(), t.numel() * 4));
  return t;
}

// max |a - b| / max |b|: the relative error the issue bounds by 1e-4.
double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

const std::string kReference = source_dir() + "/tests/python/llamagen_reference.py";

// The imported tokenizer decodes fixed tokens like a float64 PyTorch forward written from the
// architecture description (not from our code).
TEST_F(TorchImportPython, ImportedVQDecodeMatchesPythonReference) {
  TempDir d;
  auto r = run_shell("/usr/bin/python3 '" + kReference + "' vq-decode '" + file("vq_tiny.pt") +
                     "' --grid 3 --batch 2 --out '" + d.file("ref.f32") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto vq = vq::load_vq(file("vq_tiny.pt"));
  vq->eval();
  const int64_t V = vq->config.codebook_size;
  auto i = torch::arange(9, torch::kLong);
  auto idx = torch::stack({(7 * i + 3) % V, (131 + 7 * i + 3) % V}).reshape({2, 3, 3});
  auto ours = vq::decode_from_indices(vq, idx);
  ASSERT_EQ(ours.sizes(), (std::vector<int64_t>{2, 3, 48, 48}));
  auto ref = read_f32(d.file("ref.f32"), {2, 3, 48, 48});
  EXPECT_LE(rel_err(ours, ref), 1e-4);
  // The comparison can fail: another token map gives a different image.
  EXPECT_GT(rel_err(vq::decode_from_indices(vq, (idx + 1) % V), ref), 1e-2);
}

// GPT logits of the imported c2i checkpoint, through the full forward and through the KV cache.
TEST_F(TorchImportPython, ImportedGPTLogitsMatchPythonReference) {
  TempDir d;
  const int64_t B = 2, S = 9;
  auto r = run_shell("/usr/bin/python3 '" + kReference + "' gpt-logits '" + file("c2i_tiny_384.pt") +
                     "' --block-size 576 --n-head 2 --seq 9 --batch 2 --out '" + d.file("ref.f32") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto c = io::load_component_or_torch(file("c2i_tiny_384.pt"), "gpt");
  models::GPT gpt(models::GPTConfig::from_json(c.config));
  io::load_module_strict(*gpt, c.file);
  gpt->eval();
  torch::NoGradGuard ng;
  const int64_t V = gpt->config().vocab_size, classes = gpt->config().num_classes;
  auto t = torch::arange(S, torch::kLong);
  auto tokens = torch::stack({(13 * t + 5) % V, (97 + 13 * t + 5) % V});
  auto labels = torch::tensor({int64_t{0}, 3 % classes}, torch::kLong);
  auto ref = read_f32(d.file("ref.f32"), {B, S + 1, V});
  auto full = gpt->forward_full(tokens, labels);
  EXPECT_LE(rel_err(full, ref), 1e-4);

  gpt->setup_cache(B, torch::kFloat);
  std::vector<at::Tensor> steps{gpt->prefill(labels)};
  for (int64_t p = 1; p <= S; ++p) steps.push_back(gpt->decode_step(tokens.select(1, p - 1), p));
  EXPECT_LE(rel_err(torch::stack(steps, 1), ref), 1e-4);
  EXPECT_GT(rel_err(gpt->forward_full(tokens.flip(1), labels), ref), 1e-2);
}

// The paper's pipeline starts from LlamaGen's tokenizer: encode, cluster, train stage 1, stage 2
// and sample, all straight from the .pt file; and the imported GPT samples as a baseline.
TEST_F(TorchImportPython, PipelineRunsOnImportedTokenizerAndGPT) {
  TempDir d;
  auto vq = vq::load_vq(file("vq_tiny.pt"));
  vq->eval();
  auto gen = make_generator(3);
  auto x = torch::rand({24, 3, 32, 32}, gen) * 2 - 1;
  data::TokenSet train;
  train.codes = vq::encode_to_indices(vq, x).to(torch::kInt);
  ASSERT_EQ(train.codes.sizes(), (std::vector<int64_t>{24, 2, 2}));
  train.labels = torch::arange(24, torch::kLong) % 2;
  const std::string hash = vq::vq_tokenizer_hash(vq);
  train.meta = {{"tokenizer_hash", hash}, {"codebook_size", 64}, {"grid_h", 2}, {"grid_w", 2},
                {"num_classes", 2}};
  auto cb = cluster::load_codebook(file("vq_tiny.pt"));
  EXPECT_EQ(cb.tokenizer_hash, hash);
  cluster::ClusterConfig cc;
  cc.k = 4;
  auto clusters = cluster::cluster_codebook(cb.normalized, cc, cb.tokenizer_hash).map;
  clusters.save(d.file("clusters.safetensors"));

  pipeline::GeneratorTrainConfig g;
  g.preset = "tiny";
  g.batch_size = 8;
  g.trainer.steps = 2;
  g.trainer.checkpoint_every = 0;
  g.val_batches = 0;
  auto s1 = pipeline::train_generator(g, train, nullptr, &clusters, d.file("stage1"));
  g.stage = pipeline::GeneratorStage::Aux;
  auto s2 = pipeline::train_generator(g, train, nullptr, &clusters, d.file("stage2"));
  auto ctf = pipeline::load_generator({file("vq_tiny.pt"), s1.model_path, s2.model_path,
                                       d.file("clusters.safetensors"), ""});
  pipeline::GenerateConfig gen_cfg;
  auto rng = make_generator(1);
  auto out = pipeline::generate(ctf, torch::tensor({int64_t{0}, int64_t{1}}), gen_cfg, rng, false);
  EXPECT_EQ(out.images.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));

  // Baseline sampling with the imported c2i GPT (24 x 24 tokens) and the imported decoder.
  auto r = run_cli({"sample", "--tokenizer", file("vq_tiny.pt"), "--model", file("c2i_tiny_384.pt"),
                    "--class", "1", "--n", "1", "--out", d.file("sample"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto side = nlohmann::json::parse(r.out);
  EXPECT_EQ(side["mode"], "baseline");
  auto img = io::read_image(d.file("sample/images/0000_class1.png"), 3);
  EXPECT_EQ(img.size(0), 384);
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
