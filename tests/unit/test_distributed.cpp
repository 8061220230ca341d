// train/distributed: the environment -> DistConfig mapping (torchrun and Slurm variables, clear
// errors for bad values) and the single-process context's no-op collectives. The multi-process
// runs are in tests/integration/test_distributed.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>

#include "core/error.h"
#include "test_util.h"
#include "train/distributed.h"

namespace ctfgen::test {
// Named, not anonymous: unity builds put several test files in one translation unit.
namespace distributed_env_test {

using Env = std::map<std::string, std::string>;

train::DistConfig from(const Env& env) {
  return train::dist_config_from_env([&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

// The UsageError message for `env`, or "" when it parses.
std::string error_for(const Env& env) {
  try {
    from(env);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

}  // namespace distributed_env_test

TEST(Distributed, NoVariablesMeanOneProcess) {
  using namespace distributed_env_test;
  auto c = from({});
  EXPECT_EQ(c.rank, 0);
  EXPECT_EQ(c.world_size, 1);
  EXPECT_EQ(c.local_rank, 0);
  train::DistContext ctx(c);
  EXPECT_FALSE(ctx.enabled());
  EXPECT_TRUE(ctx.is_main());
  // Every collective is the identity for one process.
  auto t = torch::arange(6).view({3, 2});
  EXPECT_TRUE(ctx.shard(t).equal(t));
  EXPECT_EQ(ctx.sum({1.5, -2.0}), (std::vector<double>{1.5, -2.0}));
  EXPECT_TRUE(ctx.all_gather(t).equal(t.unsqueeze(0)));
  auto p = torch::ones({2}, torch::requires_grad());
  p.mul(3.0).sum().backward();
  EXPECT_EQ(ctx.average_gradients({p}, 0.25), 0.25);
  EXPECT_TRUE(p.grad().equal(torch::full({2}, 3.0)));
  ctx.broadcast_from_main({t});
  ctx.barrier();
}

TEST(Distributed, TorchrunVariables) {
  using namespace distributed_env_test;
  auto c = from({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"},
                 {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29611"},
                 {"CTFGEN_DIST_TIMEOUT", "12.5"}, {"CTFGEN_DIST_BUCKET_MB", "4"}});
  EXPECT_EQ(c.rank, 3);
  EXPECT_EQ(c.world_size, 4);
  EXPECT_EQ(c.local_rank, 1);
  EXPECT_EQ(c.master_addr, "node7");
  EXPECT_EQ(c.master_port, 29611);
  EXPECT_DOUBLE_EQ(c.timeout_s, 12.5);
  EXPECT_EQ(c.bucket_bytes, int64_t{4} << 20);
  EXPECT_EQ(c.backend, "gloo");
}

TEST(Distributed, SlurmVariablesAreTheFallback) {
  using namespace distributed_env_test;
  auto c = from({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                 {"MASTER_ADDR", "10.0.0.1"}});
  EXPECT_EQ(c.rank, 5);
  EXPECT_EQ(c.world_size, 8);
  EXPECT_EQ(c.local_rank, 1);
  EXPECT_EQ(c.master_port, 29500);  // torch's default
  // torchrun's variables win when both are present.
  c = from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"},
            {"MASTER_ADDR", "127.0.0.1"}});
  EXPECT_EQ(c.rank, 0);
  EXPECT_EQ(c.world_size, 2);
  // One Slurm task is one process, MASTER_ADDR or not.
  EXPECT_EQ(from({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}).world_size, 1);
}

TEST(Distributed, TorchrunAgentStoreIsJoinedUnderItsPrefix) {
  using namespace distributed_env_test;
  const Env base = {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}};
  EXPECT_EQ(from(base).store_prefix, "");  // rank 0 serves the store itself
  Env agent = base;
  agent["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  agent["TORCHELASTIC_RESTART_COUNT"] = "2";
  EXPECT_EQ(from(agent).store_prefix, "/worker/attempt_2");
  agent["TORCHELASTIC_RESTART_COUNT"] = "x";
  EXPECT_NE(error_for(agent).find("TORCHELASTIC_RESTART_COUNT='x'"), std::string::npos);
  agent = base;
  agent["TORCHELASTIC_USE_AGENT_STORE"] = "False";
  EXPECT_EQ(from(agent).store_prefix, "");
}

TEST(Distributed, BadVariablesNameTheVariableAndValue) {
  using namespace distributed_env_test;
  const Env ok = {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}};
  auto with = [&](const std::string& k, const std::string& v) {
    Env e = ok;
    e[k] = v;
    return error_for(e);
  };
  EXPECT_EQ(error_for(ok), "");
  EXPECT_NE(with("RANK", "abc").find("RANK='abc'"), std::string::npos) << with("RANK", "abc");
  EXPECT_NE(with("RANK", "-1").find("RANK='-1'"), std::string::npos);
  EXPECT_NE(with("RANK", "1x").find("RANK='1x'"), std::string::npos);
  EXPECT_NE(with("WORLD_SIZE", "0").find("WORLD_SIZE='0'"), std::string::npos);
  EXPECT_NE(with("LOCAL_RANK", "two").find("LOCAL_RANK='two'"), std::string::npos);
  EXPECT_NE(with("MASTER_PORT", "70000").find("MASTER_PORT='70000'"), std::string::npos);
  EXPECT_NE(with("CTFGEN_DIST_TIMEOUT", "-3").find("CTFGEN_DIST_TIMEOUT='-3'"), std::string::npos);
  EXPECT_NE(with("CTFGEN_DIST_BACKEND", "mpi").find("CTFGEN_DIST_BACKEND='mpi'"),
            std::string::npos);
  std::string range = with("RANK", "2");
  EXPECT_NE(range.find("RANK=2 is out of range for WORLD_SIZE=2"), std::string::npos) << range;
  std::string slurm = error_for({{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "4"},
                                 {"MASTER_ADDR", "h"}});
  EXPECT_NE(slurm.find("SLURM_PROCID=4 is out of range for SLURM_NTASKS=4"), std::string::npos)
      << slurm;
  std::string half = error_for({{"RANK", "1"}});
  EXPECT_NE(half.find("WORLD_SIZE"), std::string::npos) << half;
  std::string no_addr = error_for({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  EXPECT_NE(no_addr.find("MASTER_ADDR is not set"), std::string::npos) << no_addr;
}

TEST(Distributed, CliReportsBadRankAsUsageError) {
  TempDir d;
  auto r = run_cli({"train-ar", "--tokens", d.file("none"), "--out", d.file("run")},
                   "RANK=one WORLD_SIZE=2 MASTER_ADDR=127.0.0.1");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("RANK='one'"), std::string::npos) << r.err;
  r = run_cli({"train-vq", "--out", d.file("vq")}, "RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("train-vq does not support data-parallel"), std::string::npos) << r.err;
}

}  // namespace ctfgen::test
