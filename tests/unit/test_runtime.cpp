// Process-level runtime settings (core/runtime.h): the allocator tuning.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "core/runtime.h"
#include "test_util.h"

namespace ctfgen::test {

TEST(Runtime, TunedAllocatorServesLargeBlocksFromTheHeap) {
  // test_main calls prepare_process(), which tunes the allocator unless MALLOC_* is set.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_MMAP_MAX_") ||
      std::getenv("CTFGEN_KEEP_MALLOC"))
    GTEST_SKIP() << "allocator settings come from the environment";
  ASSERT_TRUE(runtime::tune_allocator());
  // glibc's default would mmap a fresh 64 MiB block (its threshold is at most 32 MiB); tuned,
  // the block comes from the heap and is kept after free() for the next large tensor.
  const size_t bytes = 64u << 20;
  const auto before = mallinfo2();
  void* p = std::malloc(bytes);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, bytes);
  const auto during = mallinfo2();
  EXPECT_EQ(during.hblks, before.hblks) << "a 64 MiB block was mmapped";
  std::free(p);
  const auto after = mallinfo2();
  EXPECT_GE(static_cast<size_t>(after.arena), bytes) << "the heap did not keep the block";
}

TEST(Runtime, InfoReportsTheAllocator) {
  auto r = run_cli({"info", "--json", "--no-gemm"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"allocator_tuned\": true"), std::string::npos) << r.out;
}

}  // namespace ctfgen::test
