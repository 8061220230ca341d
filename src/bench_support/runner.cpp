#include "bench_support/runner.h"

#include <stdlib.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/runtime.h"
#include "core/subprocess.h"
#include "io/safetensors.h"

namespace ctfgen::bench {
namespace runner_impl {

using json = nlohmann::json;

double median_of(std::vector<double> v) {
  CTFGEN_CHECK(!v.empty(), "bench: median of no runs");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The last line of `out` that parses as a JSON object.
json last_json_line(const std::string& out, const std::string& what) {
  std::istringstream in(out);
  std::string line;
  json found;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    try {
      found = json::parse(line);
    } catch (const json::exception&) {
    }
  }
  CTFGEN_CHECK(found.is_object(), "bench: ", what, " printed no JSON result; stdout: ",
               subprocess::tail(out, 500));
  return found;
}

// Seconds of one run: a number, or the best of a list (a run with several timed iterations).
double run_seconds(const json& run) {
  const auto& s = run.at("seconds");
  if (!s.is_array()) return s.get<double>();
  double best = 1e300;
  for (const auto& x : s) best = std::min(best, x.get<double>());
  return best;
}

// Median and best over repeated runs; `work` is images (or tokens) per run, `unit` the rate name.
json summarize(const std::vector<json>& runs, double work, const std::string& unit) {
  std::vector<double> secs;
  int64_t rss = 0;
  for (const auto& r : runs) {
    secs.push_back(run_seconds(r));
    rss = std::max<int64_t>(rss, r.value("rss_kib", int64_t{0}));
  }
  const double med = median_of(secs), best = *std::min_element(secs.begin(), secs.end());
  return {{"runs", secs.size()},  {"seconds", secs},          {"median_s", med},
          {"best_s", best},       {unit, work / med},         {unit + "_best", work / best},
          {"peak_rss_mib", static_cast<double>(rss) / 1024.0}};
}

std::string paper_note(const std::string& preset) {
  if (preset == "GPT-B") return "paper (A100, batch 64): CTF 0.93x (12.83 vs 13.75 img/s), slower";
  if (preset == "GPT-L") return "paper (A100, batch 64): CTF 1.16x (8.71 vs 7.50 img/s)";
  if (preset == "GPT-XL") return "paper (A100, batch 64): CTF 1.18x (6.26 vs 5.32 img/s)";
  return "no paper figure at this size";
}

bool paper_found_ctf_faster(const std::string& preset) {
  return preset == "GPT-L" || preset == "GPT-XL";
}

json target(const std::string& name, const std::string& subject, double value,
            const std::string& op, double threshold, const std::string& note = "") {
  const bool pass = op == ">=" ? value >= threshold : value <= threshold;
  return {{"target", name},          {"subject", subject}, {"value", value}, {"op", op},
          {"threshold", threshold},  {"status", pass ? "PASS" : "MISS"},   {"note", note}};
}

// The three load averages of /proc/loadavg ("" when unreadable): context for noisy timings.
std::string load_average() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "";
  char buf[128] = {0};
  const bool ok = std::fgets(buf, sizeof buf, f) != nullptr;
  std::fclose(f);
  if (!ok) return "";
  std::istringstream in(buf);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A fresh temporary directory, removed on destruction unless kept.
class WorkDir {
 public:
  WorkDir(const std::string& requested, bool keep) : keep_(keep || !requested.empty()) {
    if (!requested.empty()) {
      std::filesystem::create_directories(requested);
      path_ = requested;
      return;
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/ctfgen-bench-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    CTFGEN_CHECK(::mkdtemp(buf.data()) != nullptr, "bench: cannot create a directory from ",
                 templ);
    path_ = buf.data();
  }
  ~WorkDir() {
    if (keep_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  bool keep_;
  std::string path_;
};

struct Driver {
  const BenchConfig& config;
  const RunOptions& options;
  std::string script;

  void log(const std::string& s) const {
    if (options.log) options.log(s);
  }

  json run_case(const CaseSpec& spec, const std::string& label) const {
    std::vector<std::string> argv = {options.exe,  "--threads",  std::to_string(options.threads),
                                     "--device",    options.device,
                                     "--verbosity", "0",         "bench",
                                     "--case",      spec.name,   "--case-spec",
                                     spec.to_json().dump()};
    auto r = subprocess::run(argv, config.child_environment(), config.case_timeout_s);
    CTFGEN_CHECK(r.ok(), "bench: case '", label, "' failed (exit ", r.exit_code,
                 r.term_signal ? str_cat(", signal ", r.term_signal) : std::string(),
                 r.timed_out ? ", timed out" : "", "): ", subprocess::tail(r.err));
    auto j = last_json_line(r.out, "case '" + label + "'");
    j["rss_kib"] = r.max_rss_kib;
    j["process_wall_s"] = r.wall_s;
    log(str_cat("bench: ", label, "  ", fmt("%.3f", j.contains("seconds") ? run_seconds(j) : r.wall_s),
                " s, peak RSS ", r.max_rss_kib / 1024, " MiB"));
    return j;
  }

  json run_python(const std::vector<std::string>& args, const std::string& label) const {
    std::vector<std::string> argv = {config.python, script};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--threads");
    argv.push_back(std::to_string(options.threads));
    argv.push_back("--device");  // the same device as ctfgen's cases
    argv.push_back(options.device);
    auto r = subprocess::run(argv, config.child_environment(), config.case_timeout_s);
    CTFGEN_CHECK(r.ok(), "bench: Python reference '", label, "' failed (exit ", r.exit_code,
                 r.timed_out ? ", timed out" : "", "): ", subprocess::tail(r.err));
    auto j = last_json_line(r.out, "Python reference '" + label + "'");
    j["rss_kib"] = r.max_rss_kib;
    j["process_wall_s"] = r.wall_s;
    log(str_cat("bench: python ", label, "  ",
                fmt("%.3f", j.contains("seconds") ? run_seconds(j) : r.wall_s), " s, peak RSS ",
                r.max_rss_kib / 1024, " MiB"));
    return j;
  }

  CaseSpec spec(const std::string& name, const std::string& preset) const {
    CaseSpec s;
    s.name = name;
    s.preset = preset;
    s.config = config;
    return s;
  }

  // For each preset compared with Python: writes the baseline GPT file and checks that the
  // reference computes ctfgen's logits (teacher forcing) and greedy tokens. Returns the model
  // files by preset; fills report["python"]["checks"] and python_facts.
  std::map<std::string, std::string> export_and_check(const std::string& work, bool have_python,
                                                      json& py, json& python_facts) const {
    std::map<std::string, std::string> files;
    for (const auto& preset : config.python_presets_or_default()) {
      auto ex_spec = spec("export", preset);
      ex_spec.out_dir = work;
      json ex = run_case(ex_spec, "export " + preset);
      files[preset] = ex.at("model_file").get<std::string>();
      if (!have_python || !config.has_section("python")) continue;
      const std::string model_file = files[preset];
      const std::string check_file = ex.at("check_file");
      const std::string py_logits = work + "/py_logits_" + preset + ".safetensors";
      const std::string py_greedy = work + "/py_greedy_" + preset + ".safetensors";
      const auto labels = ex.at("labels");
      json pl = run_python(
          {"logits", "--model", model_file, "--input", check_file, "--out", py_logits},
          "logits " + preset);
      python_facts = {{"torch_version", pl.value("torch_version", "")},
                      {"blas_library", pl.value("blas_library", "")},
                      {"openblas_coretype_env", pl.value("openblas_coretype_env", "")},
                      {"threads", pl.value("threads", 0)}};
      run_python({"greedy", "--model", model_file, "--labels",
                  str_cat(labels[0].get<int64_t>(), ",", labels[1].get<int64_t>()), "--cfg",
                  fmt("%.17g", config.cfg_scale), "--out", py_greedy},
                 "greedy " + preset);
      auto ours = io::load_safetensors(check_file);
      auto chk = compare_logits(ours.get("logits"), io::load_safetensors(py_logits).get("logits"));
      auto g_ours = ours.get("greedy.tokens");
      auto g_ref = io::load_safetensors(py_greedy).get("tokens");
      CTFGEN_CHECK(g_ours.sizes() == g_ref.sizes(), "bench: greedy token shapes differ");
      auto eq = g_ours.eq(g_ref);
      int64_t first_mismatch = -1;
      auto column_equal = eq.all(0);
      for (int64_t t = 0; t < column_equal.size(0) && first_mismatch < 0; ++t)
        if (!column_equal[t].item<bool>()) first_mismatch = t;
      py["checks"].push_back({{"preset", preset},
                              {"max_abs_diff", chk.max_abs_diff},
                              {"max_abs_ref", chk.max_abs_ref},
                              {"rel_err", chk.rel_err},
                              {"tolerance", 1e-4},
                              {"status", chk.rel_err <= 1e-4 ? "PASS" : "FAIL"},
                              {"greedy_equal", eq.sum().item<int64_t>()},
                              {"greedy_total", eq.numel()},
                              {"greedy_first_mismatch", first_mismatch}});
    }
    return files;
  }

  // Timed sampling, one sweep per repeat over every (preset, batch): ctfgen baseline, CTF, then
  // the Python reference on the same baseline model, back to back. The baseline runs serve both
  // comparisons: their random weights come from the same seed as the exported file.
  void timed_sampling(const std::map<std::string, std::string>& files, bool with_python,
                      json& report_sampling, json& py) const {
    const bool sample = config.has_section("sample");
    const auto& py_presets = config.python_presets_or_default();
    auto in = [](const auto& v, const auto& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
    std::vector<std::string> presets;
    if (sample) presets = config.presets;
    if (with_python)
      for (const auto& p : py_presets)
        if (!in(presets, p)) presets.push_back(p);
    auto batches_of = [&](const std::string& preset) {
      std::vector<int64_t> b;
      if (sample && in(config.presets, preset)) b = config.batches;
      if (with_python && in(py_presets, preset))
        for (auto x : config.python_batches)
          if (!in(b, x)) b.push_back(x);
      std::sort(b.begin(), b.end());
      return b;
    };
    std::map<std::string, std::vector<json>> runs;
    auto key = [](const std::string& p, int64_t b, const std::string& m) {
      return p + "/" + std::to_string(b) + "/" + m;
    };
    for (int r = 0; r < config.repeats; ++r)
      for (const auto& preset : presets)
        for (auto b : batches_of(preset)) {
          const std::string rep = str_cat(" batch ", b, " (repeat ", r + 1, "/", config.repeats, ")");
          const bool ctf = sample && in(config.presets, preset) && in(config.batches, b);
          const bool python = with_python && in(py_presets, preset) && in(config.python_batches, b);
          auto s = spec("sample", preset);
          s.batch = b;
          // The baseline loads the file the Python reference loads (the same random weights
          // as random_gpt would draw; loading is not timed).
          if (files.count(preset)) s.model_file = files.at(preset);
          runs[key(preset, b, "baseline")].push_back(run_case(s, "sample " + preset + " baseline" + rep));
          if (ctf) {
            s.method = "ctf";
            s.model_file.clear();
            runs[key(preset, b, "ctf")].push_back(run_case(s, "sample " + preset + " ctf" + rep));
          }
          if (python)
            runs[key(preset, b, "python")].push_back(run_python(
                {"sample", "--model", files.at(preset), "--batch", std::to_string(b), "--cfg",
                 fmt("%.17g", config.cfg_scale), "--temperature", fmt("%.17g", config.temperature),
                 "--top-k", std::to_string(config.top_k), "--seed", std::to_string(config.seed),
                 "--warmup-steps", std::to_string(config.warmup_steps), "--iters", "1",
                 "--dtype", config.dtype},
                "sample " + preset + rep));
        }
    for (const auto& preset : presets)
      for (auto b : batches_of(preset)) {
        const auto& base_runs = runs[key(preset, b, "baseline")];
        json base = summarize(base_runs, double(b), "images_per_s");
        base["params"] = base_runs.front().at("params_stage1");
        if (runs.count(key(preset, b, "ctf"))) {
          const auto& ctf_runs = runs[key(preset, b, "ctf")];
          json ctf = summarize(ctf_runs, double(b), "images_per_s");
          std::vector<double> s1, s2;
          for (const auto& x : ctf_runs) {
            s1.push_back(x.at("stage1_s").get<double>());
            s2.push_back(x.at("stage2_s").get<double>());
          }
          ctf["stage1_median_s"] = median_of(s1);
          ctf["stage2_median_s"] = median_of(s2);
          ctf["params_stage1"] = ctf_runs.front().at("params_stage1");
          ctf["params_stage2"] = ctf_runs.front().at("params_stage2");
          report_sampling.push_back({{"preset", preset},
                                     {"batch", b},
                                     {"baseline", base},
                                     {"ctf", ctf},
                                     {"ctf_over_baseline", ctf.at("images_per_s").get<double>() /
                                                               base.at("images_per_s").get<double>()},
                                     {"paper", paper_note(preset)}});
        }
        if (runs.count(key(preset, b, "python"))) {
          json p = summarize(runs[key(preset, b, "python")], double(b), "images_per_s");
          py["sampling"].push_back({{"preset", preset},
                                    {"batch", b},
                                    {"ctfgen", base},
                                    {"python", p},
                                    {"ratio", base.at("images_per_s").get<double>() /
                                                  p.at("images_per_s").get<double>()}});
        }
      }
  }

  // Training tokens/s, ctfgen and Python interleaved per repeat, on the exported model.
  void train_section(const std::map<std::string, std::string>& files, bool have_python,
                     json& py) const {
    for (const auto& preset : config.python_presets_or_default()) {
      std::vector<json> ours_runs, plain_runs, py_runs;
      for (int r = 0; r < config.repeats; ++r) {
        auto s = spec("train", preset);
        s.model_file = files.at(preset);
        const std::string rep = str_cat(" (repeat ", r + 1, "/", config.repeats, ")");
        ours_runs.push_back(run_case(s, "train " + preset + rep));
        s.method = "plain-head";
        plain_runs.push_back(run_case(s, "train " + preset + " plain-head" + rep));
        if (have_python)
          py_runs.push_back(run_python({"train", "--model", files.at(preset), "--batch",
                                        std::to_string(config.train_batch), "--iters",
                                        std::to_string(config.train_iters), "--seed",
                                        std::to_string(config.seed)},
                                       "train " + preset + rep));
      }
      const double tokens = double(config.train_batch * config.tokens());
      json row = {{"preset", preset},
                  {"batch", config.train_batch},
                  {"tokens_per_step", int64_t(tokens)},
                  {"ctfgen", summarize(ours_runs, tokens, "tokens_per_s")},
                  {"plain_head", summarize(plain_runs, tokens, "tokens_per_s")}};
      row["speed_vs_plain_head"] = row["ctfgen"]["tokens_per_s"].get<double>() /
                                   row["plain_head"]["tokens_per_s"].get<double>();
      row["loss"] = ours_runs.front().at("loss");  // after the last step of the first repeat
      row["plain_head_loss"] = plain_runs.front().at("loss");
      const double plain_rss = row["plain_head"]["peak_rss_mib"].get<double>();
      if (plain_rss > 0)  // 0 when the child's RSS was not reported
        row["rss_vs_plain_head"] = row["ctfgen"]["peak_rss_mib"].get<double>() / plain_rss;
      if (!py_runs.empty()) {
        row["python"] = summarize(py_runs, tokens, "tokens_per_s");
        row["ratio"] = row["ctfgen"]["tokens_per_s"].get<double>() /
                       row["python"]["tokens_per_s"].get<double>();
      }
      py["train"].push_back(row);
    }
  }

  json decode_section() const {
    json out = json::array();
    for (const auto& preset : config.decode_presets_or_default()) {
      json d = run_case(spec("decode", preset), "decode " + preset);
      const auto& pos = d.at("positions");
      const auto& first = pos.front();
      const auto& last = pos.back();
      // Headline: the measured position closest to the middle of an image.
      const int64_t mid = config.tokens() / 2;
      json head = pos.front();
      for (const auto& p : pos)
        if (std::llabs(p.at("pos").get<int64_t>() - mid) <
            std::llabs(head.at("pos").get<int64_t>() - mid))
          head = p;
      out.push_back({{"preset", preset},
                     {"rows", d.at("rows")},
                     {"num_params", d.at("num_params")},
                     {"weight_bytes", d.at("weight_bytes")},
                     {"weight_dtype", d.at("weight_dtype")},
                     {"dtype", d.at("dtype")},
                     {"device", d.at("device")},
                     {"bandwidth", d.at("bandwidth")},
                     {"positions", pos},
                     {"headline", head},
                     {"last_over_first", last.at("median_ms").get<double>() /
                                             first.at("median_ms").get<double>()},
                     {"first_pos", first.at("pos")},
                     {"last_pos", last.at("pos")},
                     {"peak_rss_mib", d.at("rss_kib").get<double>() / 1024.0}});
    }
    return out;
  }

  json forward_section() const {
    json out = json::array();
    for (const auto& preset : config.forward_presets_or_default()) {
      json f = run_case(spec("forward", preset), "forward " + preset);
      f["peak_rss_mib"] = f.at("rss_kib").get<double>() / 1024.0;
      out.push_back(f);
    }
    return out;
  }
};

json evaluate_targets(const json& report) {
  json t = json::array();
  if (report.contains("python")) {
    for (const auto& c : report["python"]["checks"])
      t.push_back({{"target", "reference logits equal ctfgen's"},
                   {"subject", c["preset"]},
                   {"value", c["rel_err"]},
                   {"op", "<="},
                   {"threshold", 1e-4},
                   {"status", c["status"]},
                   {"note", str_cat("greedy tokens equal ", c["greedy_equal"].get<int64_t>(), "/",
                                    c["greedy_total"].get<int64_t>())}});
    for (const auto& s : report["python"]["sampling"]) {
      const int64_t b = s["batch"];
      const std::string subj = str_cat(s["preset"].get<std::string>(), " batch ", b);
      if (b == 1)
        t.push_back(target("ctfgen >= 2x Python images/s at batch 1", subj, s["ratio"], ">=", 2.0));
      else
        t.push_back(target("ctfgen >= 1x Python images/s at large batch", subj, s["ratio"], ">=",
                           1.0));
    }
  }
  if (report.contains("sampling"))
    for (const auto& s : report["sampling"]) {
      const std::string preset = s["preset"];
      t.push_back(target("CTF >= 1.15x baseline images/s", str_cat(preset, " batch ",
                                                                   s["batch"].get<int64_t>()),
                         s["ctf_over_baseline"], ">=", 1.15,
                         str_cat(paper_found_ctf_faster(preset) ? "applies: " : "informative: ",
                                 paper_note(preset))));
    }
  if (report.contains("decode"))
    for (const auto& d : report["decode"]) {
      const std::string preset = d["preset"];
      const auto& h = d["headline"];
      t.push_back(target("batch-1 decode step <= 2x bandwidth floor",
                         str_cat(preset, " pos ", h["pos"].get<int64_t>()), h["ratio"], "<=", 2.0,
                         str_cat(fmt("%.3g", h["median_ms"].get<double>()), " ms vs floor ",
                                 fmt("%.3g", h["floor_ms"].get<double>()), " ms")));
      t.push_back(target("per-token cost flat in position",
                         str_cat(preset, " pos ", d["last_pos"].get<int64_t>(), " / pos ",
                                 d["first_pos"].get<int64_t>()),
                         d["last_over_first"], "<=", 1.5));
    }
  return t;
}

}  // namespace runner_impl
using namespace runner_impl;

std::string find_reference_script(const BenchConfig& config, const std::string& exe,
                                  const std::string& source_tree) {
  namespace fsys = std::filesystem;
  if (!config.python_script.empty()) {
    CTFGEN_CHECK_USAGE(fsys::exists(config.python_script), "bench: --python-script ",
                       config.python_script, " does not exist");
    return config.python_script;
  }
  std::vector<fsys::path> candidates;
  if (!exe.empty()) {
    const fsys::path dir = fsys::path(exe).parent_path();
    candidates.push_back(dir / ".." / ".." / "bench" / "reference_sampler.py");
    candidates.push_back(dir / ".." / "bench" / "reference_sampler.py");
  }
  candidates.push_back(fsys::current_path() / "bench" / "reference_sampler.py");
  if (!source_tree.empty())
    candidates.push_back(fsys::path(source_tree) / "bench" / "reference_sampler.py");
  for (const auto& c : candidates) {
    std::error_code ec;
    if (fsys::exists(c, ec)) return fsys::weakly_canonical(c, ec).string();
  }
  return "";
}

bool python_has_torch(const std::string& python) {
  if (python.empty()) return false;
  try {
    auto r = subprocess::run({python, "-c", "import torch, numpy"}, {}, 120);
    return r.ok();
  } catch (const Error&) {
    return false;
  }
}

LogitsCheck compare_logits(const at::Tensor& ours, const at::Tensor& reference) {
  CTFGEN_CHECK(ours.sizes() == reference.sizes(), "bench: logits shapes differ: ours ",
               ours.sizes(), ", reference ", reference.sizes());
  auto a = ours.to(torch::kDouble), b = reference.to(torch::kDouble);
  LogitsCheck c;
  c.max_abs_diff = (a - b).abs().max().item<double>();
  c.max_abs_ref = b.abs().max().item<double>();
  c.rel_err = c.max_abs_diff / std::max(c.max_abs_ref, 1e-30);
  return c;
}

json run_bench(const BenchConfig& config, const RunOptions& options) {
  config.validate();
  CTFGEN_CHECK(!options.exe.empty(), "bench: no executable to run the cases with");
  const auto t0 = std::chrono::steady_clock::now();
  WorkDir work(config.work_dir, config.keep_work_dir);
  Driver d{config, options, ""};
  json report;
  report["config"] = config.to_json();
  report["machine"] = runtime::describe(false);
  report["machine"]["threads"] = options.threads;
  report["machine"]["device"] = options.device;
  report["vq_decoding"] = "excluded (identical for CTF and the baseline)";
  report["load_average_start"] = load_average();
  if (config.omp_wait_policy == "inherit") {
    const char* env = std::getenv("OMP_WAIT_POLICY");
    report["omp_wait_policy"] =
        env ? str_cat("inherit (", env, ")") : std::string("inherit (unset: libgomp's default)");
  } else {
    report["omp_wait_policy"] = config.omp_wait_policy;
  }
  const bool need_python = config.has_section("python") || config.has_section("train");
  bool have_python = false;
  json python_facts = json::object();
  json py = {{"checks", json::array()}, {"sampling", json::array()}, {"train", json::array()}};
  if (need_python) {
    d.script = find_reference_script(config, options.exe, options.source_tree);
    have_python = !d.script.empty() && python_has_torch(config.python);
    if (!have_python)
      py["skipped"] = "no usable Python reference: '" + config.python +
                      "' cannot import torch and numpy, or bench/reference_sampler.py was not "
                      "found (--python, --python-script, --no-python)";
  }
  if (py.contains("skipped")) d.log("bench: " + py["skipped"].get<std::string>());
  std::map<std::string, std::string> files;
  if (need_python) files = d.export_and_check(work.path(), have_python, py, python_facts);
  json sampling = json::array();
  const bool python_sampling = have_python && config.has_section("python");
  if (config.has_section("sample") || python_sampling)
    d.timed_sampling(files, python_sampling, sampling, py);
  if (config.has_section("sample")) report["sampling"] = sampling;
  if (config.has_section("train")) d.train_section(files, have_python, py);
  if (need_python) report["python"] = py;
  report["python_facts"] = python_facts;
  if (config.has_section("decode")) report["decode"] = d.decode_section();
  if (config.has_section("forward")) report["forward"] = d.forward_section();
  report["targets"] = evaluate_targets(report);
  report["load_average_end"] = load_average();
  report["wall_s"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace ctfgen::bench
