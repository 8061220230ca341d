// Markdown rendering of the `ctfgen bench` report (runner.h).
#include <cstdio>
#include <sstream>
#include <string>

#include "bench_support/runner.h"

namespace ctfgen::bench {
namespace report_impl {

using json = nlohmann::json;

std::string num(double v, const char* f = "%.3g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

double dbl(const json& j, const char* key) { return j.at(key).get<double>(); }

std::string basename_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void header(std::ostringstream& o, const json& r) {
  const auto& c = r.at("config");
  const auto& m = r.at("machine");
  const auto& b = m.at("blas");
  o << "# ctfgen bench\n\n";
  o << "- device " << m.value("device", std::string("cpu")) << "; weights "
    << c.value("dtype", std::string("fp32")) << "\n";
  o << "- threads " << m.at("threads").get<int>() << "; BLAS " << b.value("name", "")
    << " (kernel " << b.value("coretype", "") << ", OPENBLAS_CORETYPE="
    << b.value("openblas_coretype_env", "") << "); libtorch " << m.value("libtorch_version", "")
    << "\n";
  const auto& p = r.value("python_facts", json::object());
  if (p.contains("torch_version"))
    o << "- Python reference: torch " << p.value("torch_version", "") << ", "
      << p.value("threads", 0) << " threads, BLAS " << basename_of(p.value("blas_library", ""))
      << " (OPENBLAS_CORETYPE=" << p.value("openblas_coretype_env", "") << ")\n";
  const int64_t grid = c.at("grid");
  o << "- grid " << grid << "x" << grid << " = " << grid * grid << " tokens; V "
    << c.at("vocab").get<int64_t>() << "; K " << c.at("coarse_vocab").get<int64_t>()
    << "; stage-2 preset " << c.at("aux_preset").get<std::string>() << "; cfg "
    << num(dbl(c, "cfg_scale")) << " (stage 2: "
    << (dbl(c, "aux_cfg_scale") > 1 ? num(dbl(c, "aux_cfg_scale")) : std::string("off"))
    << "); temperature " << num(dbl(c, "temperature")) << "; top-k "
    << c.at("top_k").get<int64_t>() << "; random weights\n";
  o << "- " << c.at("repeats").get<int>()
    << " interleaved repeats per timed case, median reported; each case in its own process "
       "(peak RSS = that process's ru_maxrss)\n";
  o << "- VQ decoding " << r.value("vq_decoding", "excluded") << "\n";
  o << "- OMP_WAIT_POLICY of every case and of Python: " << r.value("omp_wait_policy", "")
    << "; load average (1, 5, 15 min) at start " << r.value("load_average_start", "")
    << ", at end " << r.value("load_average_end", "") << " (" << m.value("available_cpus", 0)
    << " CPUs)\n";
  o << "- decode-step kernels (nn/decode_kernels.h): "
    << (c.value("plain_kernels", false) ? "OFF (--plain-kernels: plain libtorch path)" : "on")
    << "\n";
  o << "- wall time " << num(dbl(r, "wall_s"), "%.0f") << " s\n";
}

void sampling(std::ostringstream& o, const json& rows) {
  o << "\n## CTF two-stage vs baseline AR sampling (images/s)\n\n"
    << "| preset | batch | baseline img/s | CTF img/s | CTF / baseline | CTF stage 1 s | "
       "CTF stage 2 s | baseline params | CTF params (1 + 2) | baseline peak RSS MiB | CTF peak "
       "RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& s : rows) {
    const auto& b = s.at("baseline");
    const auto& c = s.at("ctf");
    o << "| " << s.at("preset").get<std::string>() << " | " << s.at("batch").get<int64_t>()
      << " | " << num(dbl(b, "images_per_s")) << " | " << num(dbl(c, "images_per_s")) << " | "
      << num(dbl(s, "ctf_over_baseline"), "%.2f") << "x | " << num(dbl(c, "stage1_median_s"))
      << " | " << num(dbl(c, "stage2_median_s")) << " | "
      << num(b.at("params").get<double>() / 1e6) << "M | "
      << num(c.at("params_stage1").get<double>() / 1e6) << "M + "
      << num(c.at("params_stage2").get<double>() / 1e6) << "M | "
      << num(dbl(b, "peak_rss_mib"), "%.0f") << " | " << num(dbl(c, "peak_rss_mib"), "%.0f")
      << " |\n";
  }
}

void python(std::ostringstream& o, const json& p) {
  o << "\n## ctfgen vs PyTorch eager reference (bench/reference_sampler.py)\n\n";
  if (p.contains("skipped")) o << "Skipped: " << p.at("skipped").get<std::string>() << "\n";
  if (!p.at("checks").empty()) {
    o << "Same logits: teacher-forced forward of 2 random sequences in both, and greedy "
         "(argmax) sampling with guidance.\n\n"
      << "| preset | max abs diff | max abs logit | relative error | <= 1e-4 | greedy tokens "
         "equal |\n|---|---|---|---|---|---|\n";
    for (const auto& c : p.at("checks"))
      o << "| " << c.at("preset").get<std::string>() << " | " << num(dbl(c, "max_abs_diff"))
        << " | " << num(dbl(c, "max_abs_ref")) << " | " << num(dbl(c, "rel_err")) << " | "
        << c.at("status").get<std::string>() << " | " << c.at("greedy_equal").get<int64_t>()
        << "/" << c.at("greedy_total").get<int64_t>() << " |\n";
  }
  if (!p.at("sampling").empty()) {
    o << "\n| preset | batch | ctfgen img/s | Python img/s | ctfgen / Python | ctfgen peak RSS "
         "MiB | Python peak RSS MiB |\n|---|---|---|---|---|---|---|\n";
    for (const auto& s : p.at("sampling"))
      o << "| " << s.at("preset").get<std::string>() << " | " << s.at("batch").get<int64_t>()
        << " | " << num(dbl(s.at("ctfgen"), "images_per_s")) << " | "
        << num(dbl(s.at("python"), "images_per_s")) << " | " << num(dbl(s, "ratio"), "%.2f")
        << "x | " << num(dbl(s.at("ctfgen"), "peak_rss_mib"), "%.0f") << " | "
        << num(dbl(s.at("python"), "peak_rss_mib"), "%.0f") << " |\n";
  }
  if (!p.at("train").empty()) {
    o << "\nTraining step (forward_train, cross-entropy, backward, clip 1.0, AdamW); ctfgen takes "
         "the loss through nn/linear_cross_entropy (chunked, no [B*T, V] logits), plain-head "
         "through the full logits (linear, cross_entropy), same process layout:\n\n"
      << "| preset | batch x tokens | ctfgen tokens/s | plain-head tokens/s | Python tokens/s | "
         "ctfgen / Python | ctfgen peak RSS MiB | plain-head peak RSS MiB | Python peak RSS MiB "
         "|\n|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& t : p.at("train")) {
      const bool py = t.contains("python");
      o << "| " << t.at("preset").get<std::string>() << " | " << t.at("batch").get<int64_t>()
        << " x " << t.at("tokens_per_step").get<int64_t>() / t.at("batch").get<int64_t>()
        << " | " << num(dbl(t.at("ctfgen"), "tokens_per_s"), "%.0f") << " | "
        << num(dbl(t.at("plain_head"), "tokens_per_s"), "%.0f") << " | "
        << (py ? num(dbl(t.at("python"), "tokens_per_s"), "%.0f") : "-") << " | "
        << (py ? num(dbl(t, "ratio"), "%.2f") + "x" : "-") << " | "
        << num(dbl(t.at("ctfgen"), "peak_rss_mib"), "%.0f") << " | "
        << num(dbl(t.at("plain_head"), "peak_rss_mib"), "%.0f") << " | "
        << (py ? num(dbl(t.at("python"), "peak_rss_mib"), "%.0f") : "-") << " |\n";
    }
  }
}

void decode(std::ostringstream& o, const json& rows) {
  o << "\n## Batch-1 decode step (1 image with guidance = 2 rows) vs the memory-bandwidth "
       "floor\n\n"
    << "floor = (weight bytes read per step + KV-cache bytes read) / measured read bandwidth "
       "(sum over a buffer far larger than the caches, same process)\n\n"
    << "| preset | params | weight MB / step | read GB/s | position | step ms (median) | "
       "floor ms | step / floor |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& d : rows) {
    for (const auto& p : d.at("positions"))
      o << "| " << d.at("preset").get<std::string>() << " | "
        << num(d.at("num_params").get<double>() / 1e6) << "M | "
        << num(d.at("weight_bytes").get<double>() / 1e6) << " | "
        << num(dbl(d.at("bandwidth"), "read_gbs"), "%.1f") << " | "
        << p.at("pos").get<int64_t>() << " | " << num(dbl(p, "median_ms")) << " | "
        << num(dbl(p, "floor_ms")) << " | " << num(dbl(p, "ratio"), "%.2f") << "x |\n";
  }
  o << "\nPer-token cost against position (KV cache):\n\n"
    << "| preset | last / first position | step ms last / first |\n|---|---|---|\n";
  for (const auto& d : rows)
    o << "| " << d.at("preset").get<std::string>() << " | pos "
      << d.at("last_pos").get<int64_t>() << " / pos " << d.at("first_pos").get<int64_t>()
      << " | " << num(dbl(d, "last_over_first"), "%.2f") << "x |\n";
}

void forward(std::ostringstream& o, const json& rows) {
  o << "\n## Large-batch forward (forward_full) vs the measured fp32 GEMM peak\n\n"
    << "| preset | batch x positions | GFLOP | best s | GFLOP/s | GEMM 1024^3 GFLOP/s | "
       "fraction | peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& f : rows) {
    double best = 1e300;
    for (const auto& s : f.at("seconds")) best = std::min(best, s.get<double>());
    o << "| " << f.at("preset").get<std::string>() << " | " << f.at("batch").get<int64_t>()
      << " x " << f.at("seq").get<int64_t>() << " | " << num(dbl(f, "gflop")) << " | "
      << num(best) << " | " << num(dbl(f, "gflops"), "%.1f") << " | "
      << num(dbl(f, "gemm_peak_gflops"), "%.1f") << " | " << num(dbl(f, "fraction"), "%.2f")
      << " | " << num(dbl(f, "peak_rss_mib"), "%.0f") << " |\n";
  }
}

void targets(std::ostringstream& o, const json& rows) {
  o << "\n## Targets\n\n| target | case | measured | target | status | note |\n"
       "|---|---|---|---|---|---|\n";
  for (const auto& t : rows) {
    const double v = dbl(t, "value");
    o << "| " << t.at("target").get<std::string>() << " | " << t.at("subject").get<std::string>()
      << " | " << (v < 0.01 ? num(v, "%.2g") : num(v, "%.2f")) << " | "
      << t.at("op").get<std::string>() << " " << num(dbl(t, "threshold"), "%.3g") << " | "
      << t.at("status").get<std::string>() << " | " << t.value("note", "") << " |\n";
  }
}

}  // namespace report_impl
using namespace report_impl;

std::string format_report(const nlohmann::json& report) {
  std::ostringstream o;
  header(o, report);
  if (report.contains("sampling")) sampling(o, report.at("sampling"));
  if (report.contains("python")) python(o, report.at("python"));
  if (report.contains("decode")) decode(o, report.at("decode"));
  if (report.contains("forward")) forward(o, report.at("forward"));
  if (report.contains("targets")) targets(o, report.at("targets"));
  return o.str();
}

}  // namespace ctfgen::bench
