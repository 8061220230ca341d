// Test entry point: same BLAS kernel setup as the ctfgen program, 1 thread for reproducible
// timings on a shared 2-core machine, quiet logs. CTFGEN_TEST_DEVICE=cuda (or cuda:N) runs the
// pipelines and every ctfgen command the tests start on that device (core/device.h).
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/device.h"
#include "core/log.h"
#include "core/runtime.h"

int main(int argc, char** argv) {
  ctfgen::runtime::prepare_process(argc, argv);
  ctfgen::runtime::set_threads(1);
  ctfgen::log::set_verbosity(0);
  if (const char* dev = std::getenv("CTFGEN_TEST_DEVICE"); dev && *dev)
    ctfgen::set_default_device(ctfgen::parse_device(dev));
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
