// Shared test helpers: unique temporary directories, running the ctfgen binary, tolerances.
#pragma once
#include <ATen/core/Tensor.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ctfgen::test {

/// A fresh, uniquely named directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

/// Runs the built ctfgen binary with `args` (shell-quoted here) and captures its output.
CliResult run_cli(const std::vector<std::string>& args, const std::string& env = "");

/// The shell command run_cli runs (for composing several processes in one run_shell call).
std::string cli_command(const std::vector<std::string>& args, const std::string& env = "");

/// Runs an arbitrary shell command; returns its exit code, stdout and stderr.
CliResult run_shell(const std::string& command);

/// True when /usr/bin/python3 can import torch and numpy (oracle tests skip otherwise).
bool have_python_torch();

std::string source_dir();

/// Max |a - b| / (atol + rtol * |b|) <= 1 elementwise.
::testing::AssertionResult all_close(const at::Tensor& a, const at::Tensor& b, double rtol = 1e-5,
                                     double atol = 1e-6);

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace ctfgen::test
