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

// ctfgen's own at::parallel_for loops really split over the threads: without OpenMP at compile
// time ATen's template runs them inline on one thread (cmake/OpenMP.cmake).
TEST(Runtime, ParallelLoopsUseTheThreads) {
  runtime::set_threads(2);
  const int used = runtime::parallel_loop_threads();
  EXPECT_EQ(runtime::describe(false).at("parallel_loop_threads").get<int>(), used);
  runtime::set_threads(1);
  EXPECT_EQ(used, 2);
  EXPECT_EQ(runtime::parallel_loop_threads(), 1);
}

}  // namespace ctfgen::test
