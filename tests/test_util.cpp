#include "test_util.h"

#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/rng.h"
#include "io/safetensors.h"

namespace ctfgen::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/ctfgen_test_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* p = ::mkdtemp(buf.data());
  if (!p) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

static std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

static std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

CliResult run_shell(const std::string& command) {
  TempDir d;
  std::string full = "(" + command + ") >" + d.file("out") + " 2>" + d.file("err") + " </dev/null";
  int status = std::system(full.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(d.file("out"));
  r.err = slurp(d.file("err"));
  return r;
}

namespace {
std::string command_of(const char* binary, const std::vector<std::string>& args, const std::string& env) {
  std::string cmd = env + (env.empty() ? "" : " ") + quote(binary) + " --threads 1";
  // CTFGEN_TEST_DEVICE (tests/test_main.cpp) reaches every command the tests run.
  if (const char* dev = std::getenv("CTFGEN_TEST_DEVICE"); dev && *dev) cmd += " --device " + quote(dev);
  for (const auto& a : args) cmd += " " + quote(a);
  return cmd;
}

}  // namespace

std::string cli_command(const std::vector<std::string>& args, const std::string& env) {
  return command_of(CTFGEN_BINARY, args, env);
}

CliResult run_cli(const std::vector<std::string>& args, const std::string& env) {
  return run_shell(cli_command(args, env));
}

CliResult run_crashtest_cli(const std::vector<std::string>& args, const std::string& env) {
  return run_shell(command_of(CTFGEN_CRASHTEST_BINARY, args, env));
}

bool have_python_torch() {
  static int ok = -1;
  if (ok < 0)
    ok = std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0 ? 1 : 0;
  // In CI the oracles must run: a missing package is a failure there, not a silent skip.
  const char* ci = std::getenv("CI");
  if (ok != 1 && ci && std::string(ci) == "true")
    ADD_FAILURE() << "CI=true but /usr/bin/python3 cannot import torch and numpy: the Python "
                     "oracle tests would be skipped (scripts/setup.sh installs python3-torch and "
                     "python3-numpy)";
  return ok == 1;
}

std::string source_dir() { return CTFGEN_SOURCE_DIR; }

::testing::AssertionResult all_close(const at::Tensor& a, const at::Tensor& b, double rtol,
                                     double atol) {
  if (!a.sizes().equals(b.sizes()))
    return ::testing::AssertionFailure() << "shape " << a.sizes() << " vs " << b.sizes();
  auto ad = a.detach().to(torch::kCPU, torch::kDouble);
  auto bd = b.detach().to(torch::kCPU, torch::kDouble);
  auto excess = ((ad - bd).abs() / (atol + rtol * bd.abs())).max().item<double>();
  if (excess <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "max |a-b| = " << (ad - bd).abs().max().item<double>() << " exceeds atol " << atol
         << " + rtol " << rtol << " * |b|";
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

at::Tensor patterned_tensor(at::ScalarType type, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  auto a = torch::arange(n, torch::kLong);
  at::Tensor v;
  if (type == at::kByte) v = (a % 251).to(type);
  else if (type == at::kBool) v = (a % 3) == 0;
  else v = (a % 7 - 3).to(type);
  return v.reshape(shape);
}

at::Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  auto gen = make_generator(seed);
  return torch::randint(V, {B, T}, gen, torch::kLong);
}

vq::VQConfig tiny_vq_config(int64_t codebook_size, int64_t in_channels) {
  vq::VQConfig c;
  c.codebook_size = codebook_size;
  c.codebook_dim = 4;
  c.in_channels = in_channels;
  c.base_channels = 8;
  c.encoder_ch_mult = c.decoder_ch_mult = {1, 2};
  c.encoder_num_res_blocks = 1;
  c.decoder_num_res_blocks = 1;
  c.z_channels = 8;
  c.norm_groups = 4;
  c.image_size = 8;
  return c;
}

at::Tensor gpt_oracle_logits(std::vector<std::pair<std::string, at::Tensor>> tensors,
                             const at::Tensor& tokens, const at::Tensor& labels,
                             const std::string& config_json) {
  TempDir dir;
  tensors.emplace_back("input.tokens", tokens);
  tensors.emplace_back("input.labels", labels);
  io::save_safetensors(dir.file("in.safetensors"), tensors, {{"config", config_json}});
  auto r = run_shell("/usr/bin/python3 " + source_dir() + "/tests/python/gpt_oracle.py " +
                     dir.file("in.safetensors") + " " + dir.file("out.safetensors"));
  if (r.exit_code != 0) {
    ADD_FAILURE() << "gpt_oracle.py failed: " << r.out << r.err;
    return {};
  }
  return io::load_safetensors(dir.file("out.safetensors")).get("logits");
}

}  // namespace ctfgen::test
