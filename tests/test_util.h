// Shared test helpers: unique temporary directories, running the ctfgen binary, tolerances.
#pragma once
#include <ATen/core/Tensor.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "vq/vq_config.h"

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

/// The same with the test-only ctfgen_crashtest program (crash injection: tests/crash_main.cpp).
CliResult run_crashtest_cli(const std::vector<std::string>& args, const std::string& env = "");

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

/// Logits of tests/python/gpt_oracle.py (float64 PyTorch) for a GPT or aux model's tensors and
/// config JSON on tokens [B, T] and labels [B]. Fails the test (ADD_FAILURE) and returns an
/// undefined tensor if the script fails.
at::Tensor gpt_oracle_logits(std::vector<std::pair<std::string, at::Tensor>> tensors,
                             const at::Tensor& tokens, const at::Tensor& labels,
                             const std::string& config_json);

/// A tiny VQ config for tests: 8x8 images, 2x down-sampling (4x4 tokens), 4-dim codes, one
/// ResnetBlock per level, 8 base channels.
vq::VQConfig tiny_vq_config(int64_t codebook_size, int64_t in_channels);

/// Uniform random token ids [B, T] in [0, V) from a generator seeded with `seed`.
at::Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed);

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace ctfgen::test
