// A tiny progress bar for long work (index builds, k-NN of training queries): silent unless
// stderr is a terminal and the work has run for over a second, so tests and logs stay clean.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>

namespace retrokv {

/// Thread-safe: advance() may be called from many threads. Call it per chunk of work, not per
/// element (each call reads the clock). Set RETROKV_NO_PROGRESS=1 to silence it everywhere.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total)
      : label_(std::move(label)),
        total_(total),
        start_(Clock::now()),
        enabled_(::isatty(2) == 1 && std::getenv("RETROKV_NO_PROGRESS") == nullptr) {}
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar() { finish(); }

  /// Adds n units of finished work; redraws at most ~10 times a second.
  void advance(int64_t n = 1) {
    const int64_t done = done_.fetch_add(n, std::memory_order_relaxed) + n;
    if (!enabled_) return;
    const auto now = Clock::now();
    if (now - start_ < kDelay) return;
    const int64_t now_ms = ms_since_start(now);
    int64_t last = last_draw_ms_.load(std::memory_order_relaxed);
    if (now_ms - last < 100) return;
    if (!last_draw_ms_.compare_exchange_strong(last, now_ms)) return;  // another thread draws
    std::lock_guard<std::mutex> lock(mutex_);
    if (!finished_) draw(done, now);
  }
  /// Ends the bar (prints the final line if anything was shown). Idempotent.
  void finish() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_) return;
    finished_ = true;
    if (drawn_) {
      draw(done_.load(), Clock::now());
      std::fputc('\n', stderr);
      std::fflush(stderr);
    }
  }
  int64_t done() const { return done_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kDelay{1000};

  int64_t ms_since_start(Clock::time_point t) const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t - start_).count();
  }
  void draw(int64_t done, Clock::time_point now) {
    const double frac = total_ > 0 ? std::min(1.0, double(done) / double(total_)) : 1.0;
    const int width = 30, filled = static_cast<int>(frac * width);
    std::string bar(filled, '#');
    bar.append(width - filled, '.');
    std::fprintf(stderr, "\r%s [%s] %3d%% (%lld/%lld) %.1fs", label_.c_str(), bar.c_str(),
                 static_cast<int>(frac * 100), static_cast<long long>(done),
                 static_cast<long long>(total_), ms_since_start(now) / 1000.0);
    std::fflush(stderr);
    drawn_ = true;
  }

  std::string label_;
  int64_t total_;
  Clock::time_point start_;
  bool enabled_;
  std::atomic<int64_t> done_{0};
  std::atomic<int64_t> last_draw_ms_{-1000};
  std::mutex mutex_;
  bool finished_ = false;
  bool drawn_ = false;
};

}  // namespace retrokv
