// Test entry point: same BLAS kernel setup as the ctfgen program, 1 thread for reproducible
// timings on a shared 2-core machine, quiet logs.
#include <gtest/gtest.h>

#include "core/log.h"
#include "core/runtime.h"

int main(int argc, char** argv) {
  ctfgen::runtime::prepare_process(argc, argv);
  ctfgen::runtime::set_threads(1);
  ctfgen::log::set_verbosity(0);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
