// A plain multi-threaded memory-read measurement: the yardstick for "achieved vs machine read
// bandwidth" of the memory-bound decode kernels (issue 2, "Benchmarks"; DESIGN.md section 5).
// It streams a buffer once with the same threads and SIMD level as the kernels, doing nothing else.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/simd.h"

namespace retrokv::cpu {

/// Sum of x[0..n) read by all OpenMP threads (static split into contiguous slices).
inline double parallel_read_sum(const float* x, int64_t n) {
  const MathKernels mk = math_kernels();
  double total = 0.0;
  const int threads = std::max(1, omp_in_parallel() ? 1 : omp_get_max_threads());
#pragma omp parallel for schedule(static) reduction(+ : total) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    total += mk.sum(x + begin, end - begin);
  }
  return total;
}

/// Reusable read-bandwidth probe over a buffer of `bytes` bytes (touched once at construction).
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(int64_t bytes) {
    RETROKV_CHECK(bytes > 0, "bytes: expected > 0, got ", bytes);
    buf_.resize(static_cast<size_t>((bytes + 3) / 4));
    for (size_t i = 0; i < buf_.size(); ++i) buf_[i] = static_cast<float>(i & 7);
    parallel_read_sum(buf_.data(), static_cast<int64_t>(buf_.size()));  // warm-up pass
  }
  int64_t bytes() const { return static_cast<int64_t>(buf_.size() * sizeof(float)); }
  /// Mean read bandwidth in bytes/s over `passes` timed passes.
  double measure(int passes = 5) {
    RETROKV_CHECK(passes >= 1, "passes: expected >= 1, got ", passes);
    double total = 0.0;
    for (int p = 0; p < passes; ++p) total += time_pass();
    return static_cast<double>(bytes()) * passes / total;
  }
  /// Seconds for one full read of the buffer (callers interleave it with the kernel they compare,
  /// so both see the same machine load).
  double time_pass() {
    const auto t0 = std::chrono::steady_clock::now();
    sink_ += parallel_read_sum(buf_.data(), static_cast<int64_t>(buf_.size()));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  /// The sums, so the compiler cannot drop the reads.
  double sink() const { return sink_; }

 private:
  AlignedBuffer<float> buf_;
  double sink_ = 0.0;
};

}  // namespace retrokv::cpu
