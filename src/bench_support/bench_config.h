// Settings of `ctfgen bench` (issue #7): which models, batches and measurements, and the spec of
// one benchmark case, which the bench runs in a child process of its own (the same binary with a
// hidden `--case NAME --case-spec JSON`) so that each case's peak memory can be measured.
//
// Models are random-weight LlamaGen GPTs / CTF auxiliary models built from trunk presets
// (models/model_config.h) with the token grid, vocabularies and class count set here. VQ decoding
// is never part of a measurement (it is the same for CTF and the baseline).
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

#include "sampling/sampling_config.h"

namespace ctfgen::bench {

/// Measurement groups, in the order they run.
inline const std::vector<std::string>& all_sections() {
  static const std::vector<std::string> s = {"sample", "python", "train", "decode", "forward"};
  return s;
}

struct BenchConfig {
  std::vector<std::string> presets{"small", "base"};  // trunk presets (model_config.h)
  std::vector<int64_t> batches{1, 16, 64};  // images per sampling call (rows = 2x with guidance)
  int64_t grid = 16;                   // token grid side: T = grid^2 tokens per image
  int64_t vocab = 16384;               // V: baseline vocabulary and stage-2 output classes
  int64_t coarse_vocab = 512;          // K: CTF stage-1 vocabulary and stage-2 input rows
  std::string aux_preset = "same";     // stage-2 trunk preset; "same" = the stage-1 preset
                                       // (the paper used a GPT-L-size 343M aux for B, L and XL)
  double cfg_scale = 4.0;              // guidance of the AR loops (baseline and CTF stage 1)
  double aux_cfg_scale = 1.0;          // stage-2 guidance; <= 1 = off (ctfgen's default)
  double temperature = 1.0;            // both stages
  int64_t top_k = 0;                   // both stages; 0 = off
  int repeats = 3;                     // interleaved repeats of every timed case (median taken)
  int warmup_steps = 8;                // untimed decode steps at the case's batch before timing
  uint64_t seed = 0;                   // weights, labels and sampling
  std::string python = "/usr/bin/python3";  // interpreter for the PyTorch reference
  std::string python_script;           // bench/reference_sampler.py; "" = found automatically
  std::vector<std::string> python_presets;  // presets compared with Python; empty = presets
  std::vector<int64_t> python_batches{1, 64};
  int64_t train_batch = 8;             // sequences per training step (each grid^2 tokens)
  int train_iters = 4;                 // timed training steps per case run (after 1 untimed); the
                                       // fastest counts: the second step of a process still pays
                                       // first-use costs (1 step read 2.3K vs 7.2K tokens/s, small)
  std::vector<std::string> decode_presets;  // presets of the decode-step sections; empty = presets
  std::vector<int64_t> positions{1, 64, 128, 192, 256};  // decode positions (1 .. grid^2)
  int decode_iters = 10;               // timed decode steps per position and repeat
  int64_t forward_batch = 64;          // batch of the forward_full GFLOP/s measurement
  std::vector<std::string> forward_presets;  // empty = presets
  int64_t bandwidth_mib = 512;         // buffer of the memory-bandwidth probe
  std::vector<std::string> sections = all_sections();  // which measurement groups to run
  std::string work_dir;                // model files; "" = a fresh temporary directory, removed
  bool keep_work_dir = false;
  double case_timeout_s = 3600;        // a case (child process) running longer is killed
  std::string omp_wait_policy = "inherit";  // OMP_WAIT_POLICY of every case and of the Python
                                       // reference: "inherit" (the environment's; unset, libgomp
                                       // spins briefly, then sleeps: what a ctfgen run gets),
                                       // "passive" (sleep at once: robust when other processes
                                       // load the cores, but every parallel region pays a wake-up)
                                       // or "active" (docs/performance.md).
  bool plain_kernels = false;          // every case without the decode-step kernels
                                       // (nn/decode_kernels.h): the "before" figures
  std::string dtype = "fp32";          // weights and KV cache of the timed models: fp32 or bf16
                                       // (training stays fp32)

  int64_t tokens() const { return grid * grid; }
  bool has_section(const std::string& s) const;
  const std::vector<std::string>& python_presets_or_default() const;
  const std::vector<std::string>& decode_presets_or_default() const;
  const std::vector<std::string>& forward_presets_or_default() const;
  /// Stage-1 / baseline sampling settings and stage-2 settings from the fields above.
  sampling::SamplingConfig ar_sampling() const;
  sampling::SamplingConfig aux_sampling() const;
  /// The weight dtype named by `dtype`.
  at::ScalarType weight_dtype() const;
  /// Environment entries every child gets ("OMP_WAIT_POLICY=PASSIVE", or none for inherit).
  std::vector<std::string> child_environment() const;

  nlohmann::json to_json() const;
  static BenchConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("presets", self.presets);
    visit("batches", self.batches);
    visit("grid", self.grid);
    visit("vocab", self.vocab);
    visit("coarse_vocab", self.coarse_vocab);
    visit("aux_preset", self.aux_preset);
    visit("cfg_scale", self.cfg_scale);
    visit("aux_cfg_scale", self.aux_cfg_scale);
    visit("temperature", self.temperature);
    visit("top_k", self.top_k);
    visit("repeats", self.repeats);
    visit("warmup_steps", self.warmup_steps);
    visit("seed", self.seed);
    visit("python", self.python);
    visit("python_script", self.python_script);
    visit("python_presets", self.python_presets);
    visit("python_batches", self.python_batches);
    visit("train_batch", self.train_batch);
    visit("train_iters", self.train_iters);
    visit("decode_presets", self.decode_presets);
    visit("positions", self.positions);
    visit("decode_iters", self.decode_iters);
    visit("forward_batch", self.forward_batch);
    visit("forward_presets", self.forward_presets);
    visit("bandwidth_mib", self.bandwidth_mib);
    visit("sections", self.sections);
    visit("work_dir", self.work_dir);
    visit("keep_work_dir", self.keep_work_dir);
    visit("case_timeout_s", self.case_timeout_s);
    visit("omp_wait_policy", self.omp_wait_policy);
    visit("plain_kernels", self.plain_kernels);
    visit("dtype", self.dtype);
  }
  void validate() const;  // throws UsageError naming the field and value
};

/// One benchmark case, run by run_case() (cases.h) in a child process.
///   sample   images/s of `method` ("baseline" or "ctf") at `batch`
///   export   writes the baseline GPT of `preset` to `out_dir` plus the logits check inputs and
///            ctfgen's outputs (teacher-forced logits, greedy tokens)
///   train    training tokens/s of the baseline GPT at config.train_batch; method "plain-head"
///            takes the loss through the full logits (linear, cross_entropy) instead of
///            nn/linear_cross_entropy: the reference of the training-memory figures
///   decode   memory bandwidth, then decode-step times at config.positions for `batch` images
///            (the bench uses batch 1: 2 rows with guidance)
///   forward  fp32 GEMM peak, then forward_full GFLOP/s at config.forward_batch
struct CaseSpec {
  std::string name;
  std::string preset;
  std::string method = "baseline";  // sample: baseline or ctf; train: baseline or plain-head
  int64_t batch = 1;
  std::string model_file;  // sample (baseline) / train: load this GPT file instead of random weights
  std::string out_dir;     // export: where to write
  BenchConfig config;

  nlohmann::json to_json() const;
  static CaseSpec from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("name", self.name);
    visit("preset", self.preset);
    visit("method", self.method);
    visit("batch", self.batch);
    visit("model_file", self.model_file);
    visit("out_dir", self.out_dir);
    visit("config", self.config);
  }
  void validate() const;
};

/// Names accepted by CaseSpec::name.
const std::vector<std::string>& case_names();

}  // namespace ctfgen::bench
