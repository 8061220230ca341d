// Levelled logging to stderr. Results go to stdout; logs never do.
// Verbosity: 0 = warnings and errors only, 1 = info (default), 2 = debug.
#pragma once
#include <string>

#include "core/error.h"

namespace ctfgen::log {

enum class Level { Warn = 0, Info = 1, Debug = 2 };

void set_verbosity(int v);
int verbosity();
/// Text put before every message, e.g. "rank 1: " in data-parallel runs ("" = none).
void set_prefix(const std::string& prefix);
void write(Level level, const std::string& msg);

template <typename... Args>
void warn(const Args&... a) { write(Level::Warn, str_cat(a...)); }
template <typename... Args>
void info(const Args&... a) { if (verbosity() >= 1) write(Level::Info, str_cat(a...)); }
template <typename... Args>
void debug(const Args&... a) { if (verbosity() >= 2) write(Level::Debug, str_cat(a...)); }

}  // namespace ctfgen::log
