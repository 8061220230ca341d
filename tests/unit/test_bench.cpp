// `ctfgen bench` and its helpers on tiny models: config validation, the subprocess runner and
// memory probes, the cost formulas, the PyTorch reference computing ctfgen's logits, and a tiny
// end-to-end run of the command checking the JSON fields. No timing assertions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "bench_support/bench_config.h"
#include "bench_support/cases.h"
#include "bench_support/runner.h"
#include "core/device.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/subprocess.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace ctfgen::test {
namespace bench_test {

// Tiny settings: 4x4 grid (16 tokens), V 64, K 8, the "tiny" trunk (dim 32, 2 layers).
bench::BenchConfig tiny_bench() {
  bench::BenchConfig c;
  c.presets = {"tiny"};
  c.batches = {1, 2};
  c.grid = 4;
  c.vocab = 64;
  c.coarse_vocab = 8;
  c.repeats = 1;
  c.warmup_steps = 2;
  c.python_batches = {1};
  c.train_batch = 2;
  c.positions = {1, 16};
  c.decode_iters = 2;
  c.forward_batch = 2;
  c.bandwidth_mib = 8;
  return c;
}

std::vector<std::string> tiny_cli_args() {
  return {"bench",          "--preset",       "tiny", "--batches",       "1,2",
          "--grid",         "4",               "--vocab", "64",           "--coarse-vocab",
          "8",              "--repeats",       "1",    "--warmup-steps",  "2",
          "--python-batches", "1",             "--train-batch", "2",      "--positions",
          "1,16",           "--decode-iters",  "2",    "--forward-batch", "2",
          "--bandwidth-mib", "8"};
}

}  // namespace bench_test

TEST(BenchConfig, JsonRoundTripAndDefaultsValidate) {
  bench::BenchConfig d;
  EXPECT_NO_THROW(d.validate());
  EXPECT_EQ(d.tokens(), 256);
  auto c = bench_test::tiny_bench();
  c.plain_kernels = true;
  auto back = bench::BenchConfig::from_json(c.to_json());
  EXPECT_TRUE(back.plain_kernels);
  EXPECT_EQ(back.to_json(), c.to_json());
  bench::CaseSpec s;
  s.name = "decode";
  s.preset = "tiny";
  s.config = c;
  EXPECT_EQ(bench::CaseSpec::from_json(s.to_json()).to_json(), s.to_json());
}

TEST(BenchConfig, RejectsBadValuesNamingTheField) {
  auto expect_usage = [](bench::BenchConfig c, const std::string& needle) {
    try {
      c.validate();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto c = bench_test::tiny_bench();
  c.positions = {1, 17};  // 16 tokens
  expect_usage(c, "positions");
  c = bench_test::tiny_bench();
  c.coarse_vocab = 65;
  expect_usage(c, "coarse_vocab");
  c = bench_test::tiny_bench();
  c.presets = {"GPT-Q"};
  expect_usage(c, "GPT-Q");
  c = bench_test::tiny_bench();
  c.sections = {"sample", "gpu"};
  expect_usage(c, "gpu");
  c = bench_test::tiny_bench();
  c.aux_preset = "huge";
  expect_usage(c, "aux_preset");
  EXPECT_THROW(bench::BenchConfig::from_json({{"no_such_field", 1}}), UsageError);
}

TEST(BenchSubprocess, CapturesOutputExitCodeAndPeakMemory) {
  auto r = subprocess::run({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_GT(r.max_rss_kib, 0);
  EXPECT_FALSE(r.ok());
  auto e = subprocess::run({"/bin/sh", "-c", "echo $CTFGEN_TEST_VAR"}, {"CTFGEN_TEST_VAR=42"});
  EXPECT_EQ(e.out, "42\n");
  EXPECT_TRUE(e.ok());
  // A child that allocates and touches 64 MiB reports at least that much peak memory.
  auto big = subprocess::run({"/usr/bin/python3", "-c", "b = bytearray(64 << 20)"});
  if (big.ok()) {
    EXPECT_GT(big.max_rss_kib, 64 * 1024);
  }
  auto t = subprocess::run({"/bin/sh", "-c", "exec sleep 5"}, {}, 0.2);
  EXPECT_TRUE(t.timed_out);
  EXPECT_EQ(t.term_signal, 9);
  EXPECT_THROW(subprocess::run({"/no/such/program"}), Error);
  EXPECT_NE(subprocess::self_exe().find("ctfgen_unit_tests"), std::string::npos);
}

TEST(BenchMemory, PeakRssAndBandwidthProbe) {
  EXPECT_GT(memory::peak_rss_kib(), 0);
  EXPECT_GE(memory::peak_rss_kib(), memory::current_rss_kib());
  auto bw = memory::measure_bandwidth(8 << 20, 2);
  EXPECT_EQ(bw.bytes, 8 << 20);
  EXPECT_GT(bw.read_gbs, 0);
  EXPECT_GT(bw.copy_gbs, 0);
  EXPECT_THROW(memory::measure_bandwidth(1000, 1), Error);
}

TEST(BenchCases, CostFormulasMatchTheModel) {
  auto c = bench_test::tiny_bench();
  auto cfg = bench::gpt_config(c, "tiny", 64);
  EXPECT_EQ(cfg.block_size, 16);
  auto m = bench::random_gpt(cfg, 0);
  EXPECT_FALSE(m->is_training());
  EXPECT_GT(m->output->weight.abs().sum().item<double>(), 0);  // head randomised
  const int64_t D = 32, L = 2, F = cfg.ffn_hidden(), V = 64;
  EXPECT_EQ(bench::matmul_params(cfg, V), L * (4 * D * D + 3 * D * F) + D * V);
  // every parameter but the two embedding tables, plus the looked-up rows
  int64_t tables = (V + cfg.num_classes + 1) * D;
  EXPECT_EQ(bench::decode_weight_bytes(m, 2), (m->count_params() - tables) * 4 + 2 * D * 4);
  EXPECT_EQ(bench::decode_kv_bytes(cfg, 2, 3, 4), 2 * L * 2 * 4 * D * 4);
  EXPECT_DOUBLE_EQ(bench::forward_flops(cfg, 2, 16),
                   2.0 * bench::matmul_params(cfg, V) * 32 + 4.0 * L * 32 * 16 * D);
  auto aux = bench::aux_config(c, "tiny");
  EXPECT_EQ(aux.coarse_vocab, 8);
  EXPECT_EQ(aux.fine_vocab, 64);
  EXPECT_EQ(aux.dim, 32);
  c.aux_preset = "small";
  EXPECT_EQ(bench::aux_config(c, "tiny").dim, 128);
}

TEST(BenchCases, SampleCaseReportsRatesForBothMethods) {
  bench::CaseSpec s;
  s.name = "sample";
  s.preset = "tiny";
  s.batch = 2;
  s.config = bench_test::tiny_bench();
  for (const char* method : {"baseline", "ctf"}) {
    s.method = method;
    auto r = bench::run_case(s);
    EXPECT_GT(r.at("images_per_s").get<double>(), 0) << method;
    EXPECT_GE(r.at("stage2_s").get<double>(), 0) << method;
    EXPECT_GT(r.at("peak_rss_kib").get<int64_t>(), 0);
  }
}

// The reference (bench/reference_sampler.py) must compute ctfgen's logits on ctfgen's file.
TEST(BenchPythonReference, SameLogitsAndGreedyTokensAsCtfgen) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available";
  TempDir dir;
  bench::CaseSpec s;
  s.name = "export";
  s.preset = "tiny";
  s.out_dir = dir.path();
  s.config = bench_test::tiny_bench();
  auto ex = bench::run_case(s);
  const std::string script = source_dir() + "/bench/reference_sampler.py";
  const std::string model = ex.at("model_file"), check = ex.at("check_file");
  auto r = run_shell("/usr/bin/python3 " + script + " logits --model " + model + " --input " +
                     check + " --out " + dir.file("py.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto ours = io::load_safetensors(check);
  auto c = bench::compare_logits(ours.get("logits"), io::load_safetensors(dir.file("py.safetensors")).get("logits"));
  EXPECT_LE(c.rel_err, 1e-4) << "max |diff| " << c.max_abs_diff << " of max " << c.max_abs_ref;
  EXPECT_GT(c.max_abs_ref, 0);
  const auto labels = ex.at("labels");
  r = run_shell("/usr/bin/python3 " + script + " greedy --model " + model + " --labels " +
                std::to_string(labels[0].get<int64_t>()) + "," +
                std::to_string(labels[1].get<int64_t>()) + " --cfg 4 --out " +
                dir.file("greedy.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto greedy = io::load_safetensors(dir.file("greedy.safetensors")).get("tokens");
  EXPECT_TRUE(greedy.equal(ours.get("greedy.tokens")));
}

// Every section end to end: a dozen child processes (and five Python ones when torch is there),
// so tens of seconds: labelled slow.
TEST(BenchCliSlow, TinyRunEmitsTheReportFields) {
  auto args = bench_test::tiny_cli_args();
  args.push_back("--json");
  auto r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.at("sampling").size(), 2u);  // batches 1 and 2
  for (const auto& s : j.at("sampling")) {
    EXPECT_GT(s.at("baseline").at("images_per_s").get<double>(), 0);
    EXPECT_GT(s.at("ctf").at("images_per_s").get<double>(), 0);
    EXPECT_GT(s.at("ctf_over_baseline").get<double>(), 0);
    EXPECT_GT(s.at("baseline").at("peak_rss_mib").get<double>(), 10);
    EXPECT_GT(s.at("ctf").at("stage2_median_s").get<double>(), 0);
  }
  const auto& py = j.at("python");
  if (have_python_torch()) {
    ASSERT_EQ(py.at("checks").size(), 1u);
    EXPECT_EQ(py.at("checks")[0].at("status"), "PASS");
    ASSERT_EQ(py.at("sampling").size(), 1u);
    EXPECT_GT(py.at("sampling")[0].at("ratio").get<double>(), 0);
    EXPECT_GT(py.at("sampling")[0].at("python").at("peak_rss_mib").get<double>(), 10);
    EXPECT_GT(py.at("train")[0].at("ratio").get<double>(), 0);
    EXPECT_FALSE(j.at("python_facts").at("blas_library").get<std::string>().empty());
  }
  EXPECT_GT(py.at("train")[0].at("ctfgen").at("tokens_per_s").get<double>(), 0);
  EXPECT_GT(py.at("train")[0].at("plain_head").at("tokens_per_s").get<double>(), 0);
  EXPECT_GT(py.at("train")[0].at("rss_vs_plain_head").get<double>(), 0);
  // Both ways of taking the loss train the same weights on the same data: the same loss after
  // the timed steps, up to summation order.
  EXPECT_NEAR(py.at("train")[0].at("loss").get<double>(),
              py.at("train")[0].at("plain_head_loss").get<double>(), 1e-3);
  const auto& d = j.at("decode").at(0);
  EXPECT_EQ(d.at("positions").size(), 2u);
  EXPECT_GT(d.at("bandwidth").at("read_gbs").get<double>(), 0);
  EXPECT_GT(d.at("headline").at("ratio").get<double>(), 0);
  EXPECT_GT(d.at("last_over_first").get<double>(), 0);
  const auto& f = j.at("forward").at(0);
  EXPECT_GT(f.at("gflops").get<double>(), 0);
  EXPECT_GT(f.at("fraction").get<double>(), 0);
  EXPECT_GT(f.at("gemm_peak_gflops").get<double>(), 0);
  bool has_floor = false, has_ctf = false;
  for (const auto& t : j.at("targets")) {
    EXPECT_TRUE(t.at("status") == "PASS" || t.at("status") == "MISS" || t.at("status") == "FAIL");
    has_floor |= t.at("target").get<std::string>().find("bandwidth floor") != std::string::npos;
    has_ctf |= t.at("target").get<std::string>().find("CTF") != std::string::npos;
  }
  EXPECT_TRUE(has_floor);
  EXPECT_TRUE(has_ctf);
  EXPECT_EQ(j.at("vq_decoding").get<std::string>().rfind("excluded", 0), 0u);
}

TEST(BenchCli, MarkdownOutputAndJsonFile) {
  TempDir dir;
  auto args = bench_test::tiny_cli_args();
  for (const char* a : {"--sections", "decode", "--dtype", "bf16", "--out"}) args.push_back(a);
  args.push_back(dir.file("report.json"));
  auto r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("# ctfgen bench"), std::string::npos) << r.out;
  const std::string dev = default_device().str();  // CTFGEN_TEST_DEVICE reaches the CLI too
  EXPECT_NE(r.out.find("- device " + dev + "; weights bf16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bandwidth floor"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("## Targets"), std::string::npos) << r.out;
  auto j = nlohmann::json::parse(run_shell("cat " + dir.file("report.json")).out);
  EXPECT_EQ(j.at("decode").size(), 1u);
  EXPECT_EQ(j.at("decode")[0].at("dtype"), "bf16");
  EXPECT_EQ(j.at("decode")[0].at("weight_dtype"), "BFloat16");  // the model really was converted
  EXPECT_EQ(j.at("decode")[0].at("device"), dev);
  EXPECT_EQ(j.at("machine").at("device"), dev);
  EXPECT_FALSE(j.contains("sampling"));
}

TEST(BenchCli, BadDtypeAndPositionsAreUsageErrors) {
  auto r = run_cli({"bench", "--dtype", "fp8", "--preset", "tiny"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("dtype"), std::string::npos) << r.err;
  r = run_cli({"bench", "--preset", "tiny", "--grid", "4", "--positions", "1,300"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("positions"), std::string::npos) << r.err;
}

}  // namespace ctfgen::test
