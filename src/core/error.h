// Errors thrown by the library. main() catches them once and maps them to exit codes:
// UsageError -> 2 (bad flags or values a user typed), Interrupted -> 130, everything else -> 1.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ctfgen {

/// A runtime failure: bad file, bad data, failed I/O. Message names the file, field or value.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// A bad command-line value or config field; main() exits with code 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what) {}
};

/// Work stopped by SIGINT/SIGTERM after saving its state; main() exits with code 130.
class Interrupted : public Error {
 public:
  explicit Interrupted(const std::string& what) : Error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

/// Concatenates every argument with operator<< into one string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

}  // namespace ctfgen

/// Throws ctfgen::Error with the concatenated message when cond is false.
#define CTFGEN_CHECK(cond, ...)                                   \
  do {                                                            \
    if (!(cond)) throw ::ctfgen::Error(::ctfgen::str_cat(__VA_ARGS__)); \
  } while (0)

/// Throws ctfgen::UsageError (exit code 2) when cond is false.
#define CTFGEN_CHECK_USAGE(cond, ...)                                  \
  do {                                                                 \
    if (!(cond)) throw ::ctfgen::UsageError(::ctfgen::str_cat(__VA_ARGS__)); \
  } while (0)
