// Data-parallel training end to end: two `ctfgen train-ar` processes on loopback (Gloo) with
// batch b must produce the same model as one process with batch 2b; resume needs the same world
// size; a stop signal on one rank stops both. Dropout is off (--model-override) because each
// rank draws its own dropout masks.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/rng.h"
#include "data/token_dir.h"
#include "io/checkpoint.h"
#include "test_util.h"

namespace ctfgen::test {
// Named, not anonymous: unity builds put several test files in one translation unit.
namespace distributed_run_test {

// A TCP port that was free a moment ago (the kernel picks it).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = 29500;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) ::close(fd);
  return port;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// 32 random 4x4 token grids over a codebook of 16, two classes.
void make_tokens(const std::string& dir) {
  auto gen = make_generator(5);
  data::TokenSet s;
  s.codes = torch::randint(16, {32, 4, 4}, gen, torch::kLong).to(torch::kInt);
  s.labels = torch::randint(2, {32}, gen, torch::kLong);
  s.meta = {{"tokenizer_hash", "distributed-test"}, {"codebook_size", 16}, {"grid_h", 4},
            {"grid_w", 4}, {"num_classes", 2}};
  data::save_token_dir(dir, s);
}

const std::string kLr = "3e-3";  // learning rate of every run here

std::vector<std::string> train_args(const std::string& tokens, const std::string& out,
                                    int64_t batch, int64_t steps) {
  return {"train-ar", "--tokens", tokens, "--out", out, "--preset", "tiny",
          "--batch", std::to_string(batch), "--steps", std::to_string(steps),
          "--checkpoint-every", "0", "--log-every", "1", "--lr", kLr, "--warmup", "0",
          "--schedule", "constant", "--val-batches", "0", "--seed", "11", "--allow-steps-change",
          "--model-override", "token_dropout_p=0", "--model-override", "resid_dropout_p=0",
          "--model-override", "ffn_dropout_p=0", "--model-override", "class_dropout_prob=0"};
}

struct TwoRanks {
  int exit0 = -1, exit1 = -1;
  std::string out0, err0, out1, err1;
};

// Runs `args` as ranks 0 and 1 of a world of 2 on loopback (MASTER_PORT `port`, 0 = a free
// one). `between` (shell code) runs after both started, with $p0 and $p1 holding their process
// ids; `extra_env` is added to both processes' environment.
TwoRanks run_two(const TempDir& dir, const std::vector<std::string>& args,
                 const std::string& between = "", const std::string& extra_env = "",
                 int port = 0) {
  const std::string env = "MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                          std::to_string(port ? port : free_port()) +
                          " WORLD_SIZE=2 CTFGEN_DIST_TIMEOUT=60 " + extra_env;
  std::string script;
  for (int r = 0; r < 2; ++r) {
    const std::string tag = dir.file("rank" + std::to_string(r));
    script += cli_command(args, env + " RANK=" + std::to_string(r)) + " >" + tag + ".out 2>" +
              tag + ".err & p" + std::to_string(r) + "=$!; ";
  }
  script += (between.empty() ? ":" : between) + "; wait $p0; e0=$?; wait $p1; e1=$?; echo $e0 $e1 >" + dir.file("codes");
  run_shell(script);
  TwoRanks t;
  std::istringstream(slurp(dir.file("codes"))) >> t.exit0 >> t.exit1;
  t.out0 = slurp(dir.file("rank0.out"));
  t.err0 = slurp(dir.file("rank0.err"));
  t.out1 = slurp(dir.file("rank1.out"));
  t.err1 = slurp(dir.file("rank1.err"));
  return t;
}

// Same parameters up to summation order. Adam divides each gradient by its own running RMS, so
// an element whose gradient nearly cancels to zero turns summation-order noise into a visible
// fraction of a step (about 1e-3 of the learning rate here, in a handful of the 28k elements):
// every element must be within 1e-5 relative plus 1% of one step, and all but 0.1% of them
// within 1e-5 relative plus 1e-7.
void expect_same_model(const std::string& a_path, const std::string& b_path, double lr) {
  auto a = io::load_component(a_path, "gpt");
  auto b = io::load_component(b_path, "gpt");
  ASSERT_EQ(a.file.tensors.size(), b.file.tensors.size());
  double worst = 0;
  int64_t total = 0, loose = 0;
  for (const auto& [name, t] : a.file.tensors) {
    const auto u = b.file.get(name).to(torch::kDouble), v = t.to(torch::kDouble);
    ASSERT_TRUE(u.sizes().equals(v.sizes())) << name;
    EXPECT_TRUE(all_close(u, v, 1e-5, 1e-2 * lr)) << name;
    auto diff = (u - v).abs();
    worst = std::max(worst, diff.max().item<double>());
    loose += (diff > 1e-7 + 1e-5 * v.abs()).sum().item<int64_t>();
    total += v.numel();
  }
  EXPECT_LE(loose, total / 1000) << loose << " of " << total << " elements";
  std::cout << "[ info ] largest parameter difference " << worst << "; " << loose << " of "
            << total << " elements beyond 1e-5 relative + 1e-7\n";
}

}  // namespace distributed_run_test

TEST(DistributedTraining, TwoProcessesMatchOneProcessWithTwiceTheBatch) {
  using namespace distributed_run_test;
  TempDir d;
  make_tokens(d.file("tokens"));
  // One process, batch 8, 6 steps.
  auto one = run_cli(train_args(d.file("tokens"), d.file("one"), 8, 6));
  ASSERT_EQ(one.exit_code, 0) << one.err;

  // Two processes, batch 4 each: 4 steps, then a resume to 6.
  auto two = run_two(d, train_args(d.file("tokens"), d.file("two"), 4, 4));
  ASSERT_EQ(two.exit0, 0) << two.err0 << two.err1;
  ASSERT_EQ(two.exit1, 0) << two.err1 << two.err0;
  EXPECT_NE(two.out0.find("model"), std::string::npos) << two.out0;
  EXPECT_EQ(two.out1, "");  // rank 1 reports nothing
  EXPECT_EQ(two.err1.find("[ctfgen info]"), std::string::npos) << two.err1;
  auto ckpt = io::load_component(d.file("two/checkpoint.safetensors"), "train-gpt");
  EXPECT_EQ(ckpt.meta.at("world_size").get<int>(), 2);
  EXPECT_EQ(ckpt.meta.at("position").get<int>(), 32);  // 4 steps x global batch 8
  EXPECT_TRUE(ckpt.file.has("rng.global.rank1"));

  // A different world size cannot resume it.
  auto wrong = run_cli(train_args(d.file("tokens"), d.file("two"), 8, 6));
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("written by a run of 2 process(es), this run has 1"),
            std::string::npos) << wrong.err;

  auto resumed = run_two(d, train_args(d.file("tokens"), d.file("two"), 4, 6));
  ASSERT_EQ(resumed.exit0, 0) << resumed.err0 << resumed.err1;
  ASSERT_EQ(resumed.exit1, 0) << resumed.err1 << resumed.err0;
  EXPECT_NE(resumed.err0.find("resumed"), std::string::npos) << resumed.err0;

  expect_same_model(d.file("one/model.safetensors"), d.file("two/model.safetensors"),
                    std::stod(kLr));
  // The logged losses are the global-batch means: they match one process's too.
  std::istringstream log_one(slurp(d.file("one/log.jsonl"))), log_two(slurp(d.file("two/log.jsonl")));
  std::string l1, l2;
  int lines = 0;
  while (std::getline(log_one, l1) && std::getline(log_two, l2)) {
    auto j1 = nlohmann::json::parse(l1), j2 = nlohmann::json::parse(l2);
    EXPECT_EQ(j1["step"], j2["step"]);
    EXPECT_NEAR(j1["loss"].get<double>(), j2["loss"].get<double>(), 1e-5 * j1["loss"].get<double>());
    ++lines;
  }
  EXPECT_EQ(lines, 6);
}

TEST(DistributedTraining, StopSignalOnOneRankStopsBoth) {
  using namespace distributed_run_test;
  TempDir d;
  make_tokens(d.file("tokens"));
  // SIGTERM to rank 1 once rank 0 has logged a step; both must save and exit with 130.
  const std::string log = d.file("run/log.jsonl");
  auto t = run_two(d, train_args(d.file("tokens"), d.file("run"), 4, 1000000),
                   "for i in $(seq 1 600); do [ -s '" + log + "' ] && break; sleep 0.05; done; "
                   "kill -TERM $p1");
  EXPECT_EQ(t.exit0, 130) << t.err0 << t.err1;
  EXPECT_EQ(t.exit1, 130) << t.err1 << t.err0;
  auto ckpt = io::load_component(d.file("run/checkpoint.safetensors"), "train-gpt");
  const int64_t step = ckpt.meta.at("step").get<int64_t>();
  EXPECT_GE(step, 1);
  EXPECT_LT(step, 1000000);
  EXPECT_NE(t.err0.find("stop requested"), std::string::npos) << t.err0;
}

TEST(DistributedTraining, JoinsTheStoreOfTorchrunsAgent) {
  using namespace distributed_run_test;
  TempDir d;
  make_tokens(d.file("tokens"));
  // torchrun's static rendezvous: its agent serves the TCPStore on MASTER_PORT and sets
  // TORCHELASTIC_USE_AGENT_STORE=True; the workers must join it instead of serving their own.
  const int port = free_port();
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(port);
  options.isServer = true;
  options.waitWorkers = false;
  options.timeout = std::chrono::seconds(60);
  auto agent = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
  auto t = run_two(d, train_args(d.file("tokens"), d.file("run"), 4, 2), "",
                   "TORCHELASTIC_USE_AGENT_STORE=True TORCHELASTIC_RESTART_COUNT=0", port);
  EXPECT_EQ(t.exit0, 0) << t.err0 << t.err1;
  EXPECT_EQ(t.exit1, 0) << t.err1 << t.err0;
  // (Had rank 0 tried to serve a store of its own, the port would have been taken.)
}

}  // namespace ctfgen::test
