// `ctfgen bench` (issue #7): CTF two-stage vs baseline AR sampling, ctfgen vs a PyTorch eager
// reference (same logits checked first), batch-1 decode step vs the memory-bandwidth floor,
// large-batch forward vs the GEMM peak, decode cost against position, and each case's peak
// memory. The library (src/bench_support) does the work; this file binds flags and prints.
// The hidden `--case NAME --case-spec JSON` runs one case; the bench re-invokes this binary with
// it so every case runs (and has its peak memory measured) in a process of its own.
#include <cstdio>
#include <memory>

#include "bench_support/cases.h"
#include "bench_support/runner.h"
#include "command.h"
#include "core/device.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/subprocess.h"

namespace ctfgen::cmd_bench {

struct Options {
  bench::BenchConfig config;
  bool no_python = false;
  bool json = false;
  std::string out;
  std::string case_name;  // hidden: run one case in this process
  std::string case_spec;  // hidden: its CaseSpec JSON
};

void add_flags(CLI::App& app, Options& o) {
  auto& c = o.config;
  app.add_option("--preset", c.presets, "Trunk presets to compare (tiny, small, base, GPT-B, ...)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--batches", c.batches, "Images per sampling call (rows = 2x with guidance)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--grid", c.grid, "Token grid side (tokens per image = grid^2)")
      ->check(CLI::Range(int64_t{1}, int64_t{64}))->capture_default_str();
  app.add_option("--vocab", c.vocab, "V: baseline vocabulary and stage-2 output classes")
      ->capture_default_str();
  app.add_option("--coarse-vocab", c.coarse_vocab, "K: CTF stage-1 vocabulary (clusters)")
      ->capture_default_str();
  app.add_option("--aux-preset", c.aux_preset,
                 "Stage-2 trunk preset; 'same' = the stage-1 preset (the paper used a 343M "
                 "GPT-L-size aux model for every size: --aux-preset GPT-L)")
      ->capture_default_str();
  app.add_option("--cfg", c.cfg_scale, "Guidance scale of the AR loops (baseline, CTF stage 1)")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  app.add_option("--aux-cfg", c.aux_cfg_scale, "Stage-2 guidance scale (<= 1 = off)")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  app.add_option("--temperature", c.temperature, "Sampling temperature (both stages)")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  app.add_option("--top-k", c.top_k, "Top-k (both stages; 0 = off)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))->capture_default_str();
  app.add_option("--repeats", c.repeats, "Interleaved repeats of every timed case (median reported)")
      ->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--warmup-steps", c.warmup_steps, "Untimed decode steps before each timed run")
      ->check(CLI::Range(0, 1 << 20))->capture_default_str();
  app.add_option("--seed", c.seed, "Seed of weights, labels and sampling")->capture_default_str();
  app.add_option("--python", c.python, "Python interpreter with torch for the reference")
      ->capture_default_str();
  app.add_option("--python-script", c.python_script,
                 "The PyTorch reference (default: bench/reference_sampler.py of the source tree)");
  app.add_flag("--no-python", o.no_python, "Skip the PyTorch reference (ctfgen-only figures)");
  app.add_option("--python-presets", c.python_presets,
                 "Presets compared with Python: sampling and training (default: --preset)")
      ->delimiter(',');
  app.add_option("--python-batches", c.python_batches, "Batches of the Python sampling comparison")
      ->delimiter(',')->capture_default_str();
  app.add_option("--train-batch", c.train_batch, "Sequences per training step")
      ->capture_default_str();
  app.add_option("--train-iters", c.train_iters, "Timed training steps per run (after 1 untimed)")
      ->capture_default_str();
  app.add_option("--decode-presets", c.decode_presets,
                 "Presets of the decode-step measurements (default: --preset)")
      ->delimiter(',');
  app.add_option("--positions", c.positions, "Decode positions to time (1 .. grid^2)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--decode-iters", c.decode_iters, "Timed decode steps per position and repeat")
      ->capture_default_str();
  app.add_option("--bandwidth-mib", c.bandwidth_mib, "Buffer size of the memory-bandwidth probe")
      ->capture_default_str();
  app.add_option("--forward-presets", c.forward_presets,
                 "Presets of the large-batch forward (default: --preset)")
      ->delimiter(',');
  app.add_option("--forward-batch", c.forward_batch, "Batch of the forward_full GFLOP/s figure")
      ->capture_default_str();
  app.add_option("--sections", c.sections,
                 "Measurements to run: sample, python, train, decode, forward")
      ->delimiter(',')->capture_default_str();
  app.add_option("--work-dir", c.work_dir,
                 "Directory for the model files (default: a temporary directory, removed)");
  app.add_flag("--keep-work-dir", c.keep_work_dir, "Keep the temporary directory");
  app.add_option("--case-timeout", c.case_timeout_s, "Seconds after which a case is killed")
      ->capture_default_str();
  app.add_option("--omp-wait-policy", c.omp_wait_policy,
                 "OMP_WAIT_POLICY for every case and the Python reference: inherit (the "
                 "environment's, as a ctfgen run has it), passive (robust on a loaded machine; "
                 "each parallel region pays a wake-up) or active")
      ->capture_default_str();
  app.add_flag("--plain-kernels", c.plain_kernels,
               "Run every case without the decode-step kernels (fused single-query attention, "
               "thin-product linear): the figures before that optimisation");
  app.add_option("--dtype", c.dtype,
                 "Weights and KV cache of the timed models: fp32 or bf16 (the device is the "
                 "global --device: ctfgen --device cuda bench ...)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_flag("--json", o.json, "Print the report as JSON instead of Markdown tables");
  app.add_option("--out", o.out, "Also write the JSON report to this file");
  app.add_option("--case", o.case_name, "internal: run one case")->group("");
  app.add_option("--case-spec", o.case_spec, "internal: the case's JSON spec")->group("");
}

void run_one_case(const Options& o) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(o.case_spec);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(str_cat("bench --case-spec: not JSON: ", e.what()));
  }
  auto spec = bench::CaseSpec::from_json(j);
  CTFGEN_CHECK_USAGE(spec.name == o.case_name, "bench: --case ", o.case_name,
                     " does not match the spec's case '", spec.name, "'");
  cli::print_json(bench::run_case(spec).dump());
}

void run(Options& o) {
  if (!o.case_name.empty()) {
    run_one_case(o);
    return;
  }
  if (o.no_python) o.config.python.clear();
  o.config.validate();
  bench::RunOptions ro;
  ro.exe = subprocess::self_exe();
  ro.threads = runtime::threads();
  ro.device = default_device().str();
  ro.log = [](const std::string& s) { log::info(s); };
#ifdef CTFGEN_SOURCE_TREE
  ro.source_tree = CTFGEN_SOURCE_TREE;
#endif
  auto report = bench::run_bench(o.config, ro);
  if (!o.out.empty()) fs::atomic_write_text(o.out, report.dump(2) + "\n");
  if (o.json)
    cli::print_json(report.dump(2));
  else
    std::fputs(bench::format_report(report).c_str(), stdout);
}

cli::Action setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  add_flags(app, *o);
  return [o] { run(*o); };
}

CTFGEN_COMMAND("bench",
               "Benchmark: CTF vs baseline sampling, ctfgen vs a PyTorch reference, decode step "
               "vs bandwidth floor, forward vs GEMM peak, peak memory per case",
               setup);

}  // namespace ctfgen::cmd_bench
