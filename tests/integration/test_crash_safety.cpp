// Crash safety of checkpoints: `ctfgen train-ar` is killed with SIGKILL in the middle of a
// checkpoint write at many byte offsets (CTFGEN_TEST_CRASH_AFTER_BYTES, read only by the
// test-only program tests/crash_main.cpp, which observes fs::atomic_write). The previous checkpoint must survive intact every time, and resuming from it
// must finish with exactly the weights of an uninterrupted run.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "core/fs.h"
#include "core/rng.h"
#include "data/token_dir.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

std::string make_tokens(const TempDir& dir) {
  data::TokenSet s;
  auto gen = make_generator(11);
  s.codes = torch::randint(16, {48, 2, 2}, gen, torch::kInt);
  s.labels = torch::arange(48, torch::kLong).remainder(3);
  s.meta = {{"tokenizer_hash", "crash-test"}, {"codebook_size", 16}, {"grid_h", 2}, {"grid_w", 2},
            {"num_classes", 3}};
  const std::string path = dir.file("tokens");
  data::save_token_dir(path, s);
  return path;
}

// With `env` (the crash injection), the test-only ctfgen_crashtest program runs it.
CliResult train(const std::string& tokens, const std::string& out, int steps, const std::string& env = "") {
  const std::vector<std::string> args{
      "train-ar", "--tokens", tokens, "--out", out, "--preset", "tiny", "--batch", "8",
      "--steps", std::to_string(steps), "--checkpoint-every", "2", "--val-batches", "0",
      "--allow-steps-change"};  // runs of 2 steps resume to 6 (warm-up only: same rates)
  return env.empty() ? run_cli(args) : run_crashtest_cli(args, env);
}

int64_t checkpoint_step(const std::string& path) {
  auto c = io::load_component(path);
  return c.meta.at("step").get<int64_t>();
}

}  // namespace

TEST(CrashSafety, KillDuringCheckpointWriteKeepsThePreviousOne) {
  TempDir dir;
  const std::string tokens = make_tokens(dir);
  auto ref = train(tokens, dir.file("reference"), 6);
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const auto ref_model = io::load_safetensors(dir.file("reference/model.safetensors"));

  // A first run leaves a valid checkpoint at step 2.
  const std::string run = dir.file("run");
  ASSERT_EQ(train(tokens, run, 2).exit_code, 0);
  const std::string ckpt = run + "/checkpoint.safetensors";
  const auto good = fs::sha256_file(ckpt);
  const auto size = std::filesystem::file_size(ckpt);
  ASSERT_EQ(checkpoint_step(ckpt), 2);

  // Kill the resumed run inside its next checkpoint write at offsets across the whole file:
  // the header, the first tensor bytes, the middle, the last byte.
  for (size_t at : {size_t{0}, size_t{1}, size_t{8}, size_t{100}, size / 3, size / 2, size - 1}) {
    auto r = train(tokens, run, 6, "CTFGEN_TEST_CRASH_AFTER_BYTES=" + std::to_string(at));
    ASSERT_NE(r.exit_code, 0) << "offset " << at << " did not crash";
    EXPECT_EQ(fs::sha256_file(ckpt), good) << "checkpoint changed by a crash at byte " << at;
    EXPECT_EQ(checkpoint_step(ckpt), 2);
  }
  // The shipped program has no crash injection: the same environment changes nothing there.
  const TempDir plain;
  const auto shipped = run_cli({"train-ar", "--tokens", tokens, "--out", plain.file("run"), "--preset",
                                "tiny", "--batch", "8", "--steps", "2", "--val-batches", "0"},
                               "CTFGEN_TEST_CRASH_AFTER_BYTES=0");
  EXPECT_EQ(shipped.exit_code, 0) << shipped.err;
  EXPECT_TRUE(fs::exists(plain.file("run/model.safetensors")));
  // Leftover temporary files never shadow the checkpoint; resuming finishes the run with the
  // uninterrupted run's weights.
  auto done = train(tokens, run, 6);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  const auto model = io::load_safetensors(run + "/model.safetensors");
  ASSERT_EQ(model.tensors.size(), ref_model.tensors.size());
  for (const auto& [name, t] : ref_model.tensors)
    EXPECT_TRUE(torch::equal(model.get(name), t)) << name;
}

}  // namespace ctfgen::test
