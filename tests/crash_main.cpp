// ctfgen_crashtest: the ctfgen program plus crash injection, for tests/integration/
// test_crash_safety.cpp only (never installed). With CTFGEN_TEST_CRASH_AFTER_BYTES=N in the
// environment, atomic writes kill the process with SIGKILL once N bytes of a temporary file are
// written: what a power cut or kill -9 at that point leaves behind.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "command.h"
#include "core/fs.h"

namespace {
size_t crash_after = 0;
void crash_when_reached(size_t written) {
  if (written >= crash_after) ::kill(::getpid(), SIGKILL);
}
}  // namespace

int main(int argc, char** argv) {
  if (const char* env = std::getenv("CTFGEN_TEST_CRASH_AFTER_BYTES")) {
    crash_after = static_cast<size_t>(std::strtoull(env, nullptr, 10));
    ctfgen::fs::set_write_observer(&crash_when_reached);
  }
  return ctfgen::cli::run_main(argc, argv);
}
