// Process memory facts and a memory-bandwidth probe, for benchmarks and logs.
#pragma once
#include <c10/core/Device.h>
#include <cstdint>

namespace ctfgen::memory {

/// Peak resident set size of this process (VmHWM in /proc/self/status) in KiB; -1 if unknown.
int64_t peak_rss_kib();

/// Current resident set size (VmRSS) in KiB; -1 if unknown.
int64_t current_rss_kib();

struct Bandwidth {
  double read_gbs = 0;   // bytes read per second / 1e9: a sum over the buffer (best of reps)
  double copy_gbs = 0;   // (bytes read + bytes written) per second / 1e9: copy_ into a 2nd buffer
  int64_t bytes = 0;     // buffer size
  int reps = 0;
};

/// Measures memory bandwidth with libtorch ops on the current intra-op thread count, or of a GPU's
/// memory when `device` is one (the timer waits for the device). `bytes` must be well above the
/// last-level cache for a DRAM figure (default 512 MiB; the copy needs twice that). Best of
/// `reps` after one untimed pass. Throws Error when bytes < 1 MiB or reps < 1.
Bandwidth measure_bandwidth(int64_t bytes = int64_t{512} << 20, int reps = 5,
                            c10::Device device = c10::Device(c10::kCPU));

}  // namespace ctfgen::memory
