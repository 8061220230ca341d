#include "bench_support/bench_config.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/json_config.h"
#include "models/model_config.h"

namespace ctfgen::bench {
namespace config_impl {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

void check_presets(const std::vector<std::string>& presets, const char* field, bool allow_empty) {
  CTFGEN_CHECK_USAGE(allow_empty || !presets.empty(), "bench: ", field, " must not be empty");
  const auto known = models::preset_names();
  for (const auto& p : presets) {
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    CTFGEN_CHECK_USAGE(contains(known, p), "bench: ", field, ": unknown preset '", p,
                       "' (known: ", list, ")");
  }
}

void check_positive(const std::vector<int64_t>& v, const char* field, int64_t max) {
  CTFGEN_CHECK_USAGE(!v.empty(), "bench: ", field, " must not be empty");
  for (auto x : v)
    CTFGEN_CHECK_USAGE(x >= 1 && x <= max, "bench: ", field, " values must be in [1, ", max,
                       "], got ", x);
}

}  // namespace config_impl
using namespace config_impl;

bool BenchConfig::has_section(const std::string& s) const { return contains(sections, s); }

at::ScalarType BenchConfig::weight_dtype() const {
  return dtype == "bf16" ? at::kBFloat16 : at::kFloat;
}

const std::vector<std::string>& BenchConfig::python_presets_or_default() const {
  return python_presets.empty() ? presets : python_presets;
}
const std::vector<std::string>& BenchConfig::decode_presets_or_default() const {
  return decode_presets.empty() ? presets : decode_presets;
}
const std::vector<std::string>& BenchConfig::forward_presets_or_default() const {
  return forward_presets.empty() ? presets : forward_presets;
}

namespace config_impl {
sampling::SamplingConfig sampling_with_scale(const BenchConfig& c, double cfg_scale) {
  sampling::SamplingConfig s;
  s.cfg_scale = cfg_scale;
  s.temperature = c.temperature;
  s.top_k = c.top_k;
  return s;
}
}  // namespace config_impl

sampling::SamplingConfig BenchConfig::ar_sampling() const {
  return sampling_with_scale(*this, cfg_scale);
}

sampling::SamplingConfig BenchConfig::aux_sampling() const {
  return sampling_with_scale(*this, aux_cfg_scale);
}

std::vector<std::string> BenchConfig::child_environment() const {
  if (omp_wait_policy == "passive") return {"OMP_WAIT_POLICY=PASSIVE"};
  if (omp_wait_policy == "active") return {"OMP_WAIT_POLICY=ACTIVE"};
  return {};
}

nlohmann::json BenchConfig::to_json() const { return fields_to_json(*this); }

BenchConfig BenchConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<BenchConfig>(j, "BenchConfig");
}

void BenchConfig::validate() const {
  check_presets(presets, "presets", false);
  check_presets(python_presets, "python_presets", true);
  check_presets(decode_presets, "decode_presets", true);
  check_presets(forward_presets, "forward_presets", true);
  CTFGEN_CHECK_USAGE(aux_preset == "same" || contains(models::preset_names(), aux_preset),
                     "bench: aux_preset must be 'same' or a model preset, got '", aux_preset, "'");
  CTFGEN_CHECK_USAGE(grid >= 1 && grid <= 64, "bench: grid must be in [1, 64], got ", grid);
  CTFGEN_CHECK_USAGE(vocab >= 2 && vocab <= (int64_t{1} << 20),
                     "bench: vocab must be in [2, 1048576], got ", vocab);
  CTFGEN_CHECK_USAGE(coarse_vocab >= 1 && coarse_vocab <= vocab,
                     "bench: coarse_vocab must be in [1, vocab = ", vocab, "], got ", coarse_vocab);
  check_positive(batches, "batches", 4096);
  check_positive(python_batches, "python_batches", 4096);
  check_positive(positions, "positions", tokens());
  CTFGEN_CHECK_USAGE(repeats >= 1 && repeats <= 1000, "bench: repeats must be in [1, 1000], got ",
                     repeats);
  CTFGEN_CHECK_USAGE(warmup_steps >= 0, "bench: warmup_steps must be >= 0, got ", warmup_steps);
  CTFGEN_CHECK_USAGE(train_batch >= 1 && train_batch <= 4096,
                     "bench: train_batch must be in [1, 4096], got ", train_batch);
  CTFGEN_CHECK_USAGE(train_iters >= 1 && train_iters <= 1000,
                     "bench: train_iters must be in [1, 1000], got ", train_iters);
  CTFGEN_CHECK_USAGE(decode_iters >= 1 && decode_iters <= 100000,
                     "bench: decode_iters must be in [1, 100000], got ", decode_iters);
  CTFGEN_CHECK_USAGE(forward_batch >= 1 && forward_batch <= 4096,
                     "bench: forward_batch must be in [1, 4096], got ", forward_batch);
  CTFGEN_CHECK_USAGE(bandwidth_mib >= 1 && bandwidth_mib <= 65536,
                     "bench: bandwidth_mib must be in [1, 65536], got ", bandwidth_mib);
  CTFGEN_CHECK_USAGE(case_timeout_s > 0, "bench: case_timeout_s must be > 0, got ",
                     case_timeout_s);
  CTFGEN_CHECK_USAGE(omp_wait_policy == "passive" || omp_wait_policy == "active" ||
                         omp_wait_policy == "inherit",
                     "bench: omp_wait_policy must be passive, active or inherit, got '",
                     omp_wait_policy, "'");
  CTFGEN_CHECK_USAGE(dtype == "fp32" || dtype == "bf16", "bench: dtype must be fp32 or bf16, got '",
                     dtype, "'");
  CTFGEN_CHECK_USAGE(!sections.empty(), "bench: sections must not be empty");
  for (const auto& s : sections) {
    std::string list;
    for (const auto& k : all_sections()) list += (list.empty() ? "" : ", ") + k;
    CTFGEN_CHECK_USAGE(contains(all_sections(), s), "bench: unknown section '", s, "' (known: ",
                       list, ")");
  }
  ar_sampling().validate();
  aux_sampling().validate();
}

const std::vector<std::string>& case_names() {
  static const std::vector<std::string> n = {"sample", "export", "train", "decode", "forward"};
  return n;
}

nlohmann::json CaseSpec::to_json() const { return fields_to_json(*this); }

CaseSpec CaseSpec::from_json(const nlohmann::json& j) {
  return fields_from_json<CaseSpec>(j, "CaseSpec");
}

void CaseSpec::validate() const {
  CTFGEN_CHECK_USAGE(contains(case_names(), name), "bench case: unknown case '", name, "'");
  config.validate();
  CTFGEN_CHECK_USAGE(contains(models::preset_names(), preset), "bench case: unknown preset '",
                     preset, "'");
  CTFGEN_CHECK_USAGE(method == "baseline" || method == "ctf" ||
                         (name == "train" && method == "plain-head"),
                     "bench case: method must be baseline or ctf (train: or plain-head), got '",
                     method, "'");
  CTFGEN_CHECK_USAGE(batch >= 1 && batch <= 4096, "bench case: batch must be in [1, 4096], got ",
                     batch);
  CTFGEN_CHECK_USAGE(name != "export" || !out_dir.empty(), "bench case export: out_dir is empty");
  CTFGEN_CHECK_USAGE(method != "ctf" || model_file.empty(),
                     "bench case: model_file does not apply to ctf");
}

}  // namespace ctfgen::bench
