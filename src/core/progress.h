// Progress reporting for long work: a live bar with rate and ETA when stderr is a terminal,
// a plain line every `plain_interval_s` seconds otherwise. Silent at verbosity 0.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace ctfgen {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it", double plain_interval_s = 10.0);
  ~Progress();
  /// Advances by n and sets an optional status text (for example "loss 2.31").
  void advance(int64_t n = 1, const std::string& status = "");
  void set_status(const std::string& status) { status_ = status; }
  /// Starts the count at n (work done by an earlier run, e.g. before a resume): shown in the
  /// count and the fraction, left out of the rate and the ETA.
  void start_at(int64_t n) { done_ = initial_ = n; }
  /// Prints the final line (done count, elapsed time, mean rate).
  void finish();
  int64_t done() const { return done_; }

 private:
  void render(bool final);
  std::string label_, unit_, status_;
  int64_t total_, done_ = 0, initial_ = 0;
  double plain_interval_s_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace ctfgen
