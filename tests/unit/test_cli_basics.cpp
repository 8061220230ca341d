// The CLI's exit codes and help: 0 ok, 2 usage errors, 1 runtime errors.
#include <gtest/gtest.h>

#include "test_util.h"

namespace ctfgen::test {

TEST(Cli, HelpListsSubcommandsAndExitsZero) {
  auto r = run_cli({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("info"), std::string::npos) << r.out;
}

TEST(Cli, NoSubcommandIsUsageError) {
  auto r = run_cli({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("error:"), std::string::npos);
}

TEST(Cli, UnknownFlagIsUsageError) {
  auto r = run_cli({"info", "--no-such-flag"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--no-such-flag"), std::string::npos) << r.err;
}

TEST(Cli, OutOfRangeVerbosityIsUsageError) {
  auto r = run_cli({"--verbosity", "7", "info", "--no-gemm"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("verbosity"), std::string::npos) << r.err;
}

TEST(Cli, InfoJsonReportsBlasAndThreads) {
  auto r = run_cli({"info", "--json", "--no-gemm"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"blas\""), std::string::npos);
  EXPECT_NE(r.out.find("\"threads\": 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"libtorch_version\""), std::string::npos);
}

}  // namespace ctfgen::test
