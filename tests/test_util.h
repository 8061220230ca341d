// Shared test helpers: unique temporary directories, running the ctfgen binary, tolerances.
#pragma once
#include <ATen/core/Tensor.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"

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

/// Runs an arbitrary shell command; returns its exit code, stdout and stderr.
CliResult run_shell(const std::string& command);

/// True when /usr/bin/python3 can import torch and numpy (oracle tests skip otherwise).
bool have_python_torch();

std::string source_dir();

/// Max |a - b| / (atol + rtol * |b|) <= 1 elementwise.
::testing::AssertionResult all_close(const at::Tensor& a, const at::Tensor& b, double rtol = 1e-5,
                                     double atol = 1e-6);

/// A named dtype/shape pair for the serialisation round-trip tests (npy, safetensors).
struct DtypeCase {
  std::string name;
  at::ScalarType type;
  std::vector<int64_t> shape;
};

/// A deterministic tensor of `type` and `shape` the Python interop scripts recreate: bytes
/// i % 251, bools (i % 3 == 0), other types (i % 7 - 3), i = flat index.
at::Tensor patterned_tensor(at::ScalarType type, const std::vector<int64_t>& shape);

/// The message of the ctfgen::Error that f() throws, or "<no error>".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

/// Uniform random token ids [B, T] in [0, V) from a generator seeded with `seed`.
at::Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed);

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace ctfgen::test
