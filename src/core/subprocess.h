// Running a child program and measuring it: captured stdout/stderr, exit status, wall time and
// the child's peak resident memory (ru_maxrss from wait4). Used by `ctfgen bench` to run each
// benchmark case in its own process.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ctfgen::subprocess {

struct Result {
  int exit_code = -1;       // exit status, or -1 when the child was killed by a signal
  int term_signal = 0;      // the signal that ended the child, else 0
  bool timed_out = false;   // killed (SIGKILL) after the timeout
  std::string out, err;     // everything it wrote to stdout / stderr
  int64_t max_rss_kib = 0;  // peak resident set size of the child (wait4 ru_maxrss), KiB
  double wall_s = 0;        // from start to exit
  double user_s = 0, sys_s = 0;  // CPU time of the child

  bool ok() const { return exit_code == 0 && !timed_out; }
};

/// Runs `argv` (argv[0] is an executable path; without a '/' the PATH is searched) with this
/// process's environment plus `env_add` entries "NAME=value" (replacing same-named variables),
/// stdin from /dev/null, stdout and stderr captured. timeout_s > 0 kills the child with SIGKILL
/// once that many seconds have passed. Throws Error when argv is empty or the child cannot be
/// started; a child that fails is reported in the Result, not thrown.
Result run(const std::vector<std::string>& argv, const std::vector<std::string>& env_add = {},
           double timeout_s = 0);

/// Absolute path of the running executable (/proc/self/exe); throws Error if unreadable.
std::string self_exe();

/// Last `max_chars` characters of `text` (for error messages quoting a child's stderr).
std::string tail(const std::string& text, size_t max_chars = 2000);

}  // namespace ctfgen::subprocess
