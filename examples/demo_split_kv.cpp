// The main demo (README, ./scripts/demo.sh): exact split-KV decode attention on the CPU over a
// synthetic 128K-token context (d = 128, one KV head stored in half precision, a GQA group of 4
// query heads). Prints the error of every head against a double-precision reference, the time per
// decode step, the K+V bytes read per second and its ratio to this machine's measured read
// bandwidth (issue 2; DESIGN.md section 5, "Speed").
//
//   build/bin/demo_split_kv [--n 131072] [--d 128] [--steps 20]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "retrokv/core/half.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/cpu/bandwidth.h"
#include "retrokv/cpu/simd.h"

namespace {

using retrokv::half;
using retrokv::Matrix;
using retrokv::MatrixView;

/// Gaussian (rows, cols) matrix rounded to T, filled in parallel slices with fixed seeds.
template <typename T>
Matrix<T> gaussian(int64_t rows, int cols, uint64_t seed) {
  Matrix<T> m(rows, cols);
  const int64_t total = rows * cols, slice = 1 << 20;
#pragma omp parallel for schedule(dynamic)
  for (int64_t s = 0; s < (total + slice - 1) / slice; ++s) {
    std::mt19937_64 rng(seed * 1000003 + s);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (int64_t i = s * slice; i < std::min(total, (s + 1) * slice); ++i) {
      m.data()[i] = retrokv::from_float<T>(normal(rng));
    }
  }
  return m;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 131072;
  int d = 128;
  int steps = 20;
  CLI::App app{"retrokv demo: exact split-KV decode attention on the CPU vs a double reference"};
  app.add_option("--n", n, "context length in tokens")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 28));
  app.add_option("--d", d, "head dimension")->check(CLI::Range(1, 1024));
  app.add_option("--steps", steps, "timed decode steps (the median is reported)")
      ->check(CLI::Range(1, 10000));
  CLI11_PARSE(app, argc, argv);
  constexpr int kGroup = 4;

  std::printf("retrokv split-KV decode attention demo\n");
  std::printf("  context %lld tokens, d = %d, 1 KV head (half) shared by %d query heads (GQA)\n",
              static_cast<long long>(n), d, kGroup);
  std::printf("  %d OpenMP threads, SIMD path %s\n\n", retrokv::num_threads(),
              retrokv::cpu::simd_level_name(retrokv::cpu::simd_level()));

  auto t0 = std::chrono::steady_clock::now();
  const Matrix<half> K = gaussian<half>(n, d, 1);
  const Matrix<half> V = gaussian<half>(n, d, 2);
  // Queries a little aligned with a few keys, so the softmax is peaked as in real heads.
  Matrix<float> q = gaussian<float>(kGroup, d, 3);
  for (int h = 0; h < kGroup; ++h) {
    const half* k = K.row((h + 1) * n / (kGroup + 1));
    for (int j = 0; j < d; ++j) q(h, j) += 1.5f * static_cast<float>(k[j]);
  }
  std::printf("  synthetic KV generated in %.2f s\n", seconds_since(t0));

  const float scale = retrokv::cpu::default_scale(d);
  std::vector<float> o(kGroup * d), lse(kGroup);
  const MatrixView<float> ov(o.data(), kGroup, d);

  // Timed decode steps (after one warm-up), each followed by one pass of a plain multi-threaded
  // read over a buffer of the same size (same threads), so both see the same machine load.
  const double bytes = 2.0 * static_cast<double>(n) * d * sizeof(half);
  retrokv::cpu::ReadBandwidthProbe probe(static_cast<int64_t>(bytes));
  retrokv::cpu::attend_full<half>(q.view(), K.view(), V.view(), scale, ov, lse.data());
  std::vector<double> times, reads;
  for (int s = 0; s < steps; ++s) {
    t0 = std::chrono::steady_clock::now();
    retrokv::cpu::attend_full<half>(q.view(), K.view(), V.view(), scale, ov, lse.data());
    times.push_back(seconds_since(t0));
    reads.push_back(probe.time_pass());
  }
  std::sort(times.begin(), times.end());
  std::sort(reads.begin(), reads.end());
  const double step_s = times[times.size() / 2];
  const double achieved = bytes / step_s;
  const double read_bw = bytes / reads[reads.size() / 2];

  std::printf(
      "\n  head   rel. error ||o - o_ref|| / ||o_ref||   |lse - lse_ref|   (ref: double)\n");
  double worst = 0;
  for (int h = 0; h < kGroup; ++h) {
    const retrokv::ReferenceAttention ref =
        retrokv::reference_attention_double(q.row(h), K.view(), V.view(), scale);
    double num = 0, den = 0;
    for (int j = 0; j < d; ++j) {
      num += (o[h * d + j] - ref.o[j]) * (o[h * d + j] - ref.o[j]);
      den += ref.o[j] * ref.o[j];
    }
    const double err = std::sqrt(num / den);
    worst = std::max(worst, err);
    std::printf("  %4d   %38.2e   %15.2e\n", h, err, std::abs(lse[h] - ref.lse));
  }
  std::printf("\n  time per decode step (median of %d)   %10.3f ms\n", steps, step_s * 1e3);
  std::printf("  K+V read per step                     %10.1f MB\n", bytes / 1e6);
  std::printf("  achieved bandwidth                    %10.2f GB/s\n", achieved / 1e9);
  std::printf("  measured read bandwidth (same size)   %10.2f GB/s\n", read_bw / 1e9);
  std::printf("  ratio achieved / measured             %10.2f\n", achieved / read_bw);
  std::printf("\n  %s: worst relative error %.1e (bound 1e-5)\n", worst <= 1e-5 ? "OK" : "FAIL",
              worst);
  return worst <= 1e-5 ? 0 : 1;
}
