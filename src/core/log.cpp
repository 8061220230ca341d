#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace ctfgen::log {
namespace {
std::atomic<int> g_verbosity{1};
std::mutex g_mutex;
std::string g_prefix;  // guarded by g_mutex
}  // namespace

void set_verbosity(int v) { g_verbosity = v; }
int verbosity() { return g_verbosity; }

void set_prefix(const std::string& prefix) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_prefix = prefix;
}

void write(Level level, const std::string& msg) {
  static const char* kTags[] = {"warning", "info", "debug"};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "[ctfgen %s] %s%s\n", kTags[static_cast<int>(level)], g_prefix.c_str(),
               msg.c_str());
  std::fflush(stderr);
}

}  // namespace ctfgen::log
