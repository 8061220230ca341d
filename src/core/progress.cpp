#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include "core/log.h"

namespace ctfgen {
namespace {
std::string fmt_time(double s) {
  char buf[32];
  int t = static_cast<int>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
  return buf;
}
}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit, double plain_interval_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      plain_interval_s_(plain_interval_s), tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

Progress::~Progress() {
  if (!finished_ && tty_ && log::verbosity() >= 1 && done_ > 0) std::fprintf(stderr, "\n");
}

void Progress::advance(int64_t n, const std::string& status) {
  done_ += n;
  if (!status.empty()) status_ = status;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_).count();
  if ((tty_ && since >= 0.2) || (!tty_ && since >= plain_interval_s_)) {
    last_ = now;
    render(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  render(true);
}

void Progress::render(bool final) {
  if (log::verbosity() < 1) return;
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = el > 0 ? (done_ - initial_) / el : 0.0;
  char line[512];
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done_) / total_);
    double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
    std::string bar;
    if (tty_) {
      int w = 24, fill = static_cast<int>(frac * w);
      bar = "[" + std::string(fill, '#') + std::string(w - fill, '.') + "] ";
    }
    std::snprintf(line, sizeof line, "%s: %s%lld/%lld %s (%.0f%%) %.1f %s/s %s %s %s",
                  label_.c_str(), bar.c_str(), static_cast<long long>(done_),
                  static_cast<long long>(total_), unit_.c_str(), 100 * frac, rate, unit_.c_str(),
                  final ? "elapsed" : "eta", fmt_time(final ? el : eta).c_str(), status_.c_str());
  } else {
    std::snprintf(line, sizeof line, "%s: %lld %s, %.1f %s/s, %s %s", label_.c_str(),
                  static_cast<long long>(done_), unit_.c_str(), rate, unit_.c_str(),
                  fmt_time(el).c_str(), status_.c_str());
  }
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
  else
    std::fprintf(stderr, "[ctfgen progress] %s\n", line);
  std::fflush(stderr);
}

}  // namespace ctfgen
