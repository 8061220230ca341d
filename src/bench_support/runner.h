// The driver of `ctfgen bench`: runs every selected measurement as child processes (each case
// in its own process, so its peak resident memory is its own; the repeats of the two sides of
// every comparison are interleaved), runs the PyTorch reference (bench/reference_sampler.py),
// checks that the reference computes the same logits as ctfgen, and evaluates the targets of
// issue #7. The report is JSON; format_report() renders it as Markdown tables.
#pragma once
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <functional>
#include <string>

#include "bench_support/bench_config.h"

namespace ctfgen::bench {

struct RunOptions {
  std::string exe;   // the ctfgen binary that runs the cases (subprocess::self_exe())
  int threads = 1;   // intra-op threads of every case and of the Python reference
  std::function<void(const std::string&)> log;  // progress lines; may be empty
  std::string source_tree;  // the checkout the binary was built from ("" = unknown): searched last
  std::string device = "cpu";  // where the cases and the Python reference run (core/device.h)
};

/// config.python_script when set (must exist), else bench/reference_sampler.py found next to
/// the binary (<exe dir>/../../bench, <exe dir>/../bench), under the current directory, or under
/// `source_tree` (the checkout the binary was built from, for out-of-tree builds). Returns ""
/// when nothing is found.
std::string find_reference_script(const BenchConfig& config, const std::string& exe,
                                  const std::string& source_tree = "");

/// True when `python` runs and imports torch and numpy.
bool python_has_torch(const std::string& python);

/// Relative error of the reference logits: max |a - b| / max |b|, with the pieces.
struct LogitsCheck {
  double max_abs_diff = 0, max_abs_ref = 0, rel_err = 0;
};
LogitsCheck compare_logits(const at::Tensor& ours, const at::Tensor& reference);

/// Runs the sections of `config` (validated first) and returns the report:
/// {config, machine, python_facts, sampling[], python{checks[], sampling[], train[]}, decode[],
///  forward[], targets[], wall_s}.
nlohmann::json run_bench(const BenchConfig& config, const RunOptions& options);

/// Markdown: header, one table per section, the targets with PASS/MISS.
std::string format_report(const nlohmann::json& report);

}  // namespace ctfgen::bench
