// docs/cli.md must equal what `ctfgen docs` prints, so the reference never drifts from --help.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "test_util.h"

namespace ctfgen::test {

TEST(CliDocs, CommittedReferenceMatchesHelp) {
  auto r = run_cli({"docs"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(source_dir() + "/docs/cli.md");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), r.out) << "docs/cli.md is stale: regenerate with "
                                "`build/apps/ctfgen docs > docs/cli.md`";
}

}  // namespace ctfgen::test
