// The estimated third of the wave index's tripartite attention (RetroInfer section 4.2): the
// estimation zone's (o, lse) from cluster centroids, value sums and sizes, NATURAL-log lse, to be
// LSE-merged (core/attention_state.h) with the exact steady + retrieval part (cpu/attention.h).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/config.h"
#include "retrokv/cpu/simd.h"

namespace retrokv::detail {

/// Estimation zone of a GQA group (RetroInfer's estimate): per head h, with l_i = q_h.c_i*scale,
/// Z_E = Σ s_i exp(l_i), o_E = Σ exp(l_i) VS_i / Z_E, lse_E = log Z_E (natural log).
/// logits: (g, n_clusters) row-major; offsets: cluster c has s_c = offsets[c+1] - offsets[c]
/// tokens; value_sums: rows VS_c (stride d) of VT = float or half (the wave index reads fp16 sums,
/// WaveIndex::step_value_sums); clusters: the n zone members. Writes o (g, d) rows of
/// stride d and lse[g]; an empty zone gives lse = -inf, o = 0. Each VS_c is read once for all
/// heads (the zone's value sums are the bulk of the memory traffic).
/// Variance correction (WaveEstimator::kVariance) when key_var is non-null: key_var (C, d) holds
/// each cluster's per-dimension key variance and a2 (g, d) the squared scaled queries
/// (q_h*scale)²; every l_i becomes l_i + min(½ Σ_t a2_ht key_var_it, cap), i.e. both the mass
/// and the value weight of the cluster are raised by the second-order term of log-mean-exp.
template <typename VT>
inline void estimate_zone(const float* logits, int64_t n_clusters, int g, const int64_t* offsets,
                          const VT* value_sums, const int32_t* clusters, int64_t n, int d, float* o,
                          float* lse, const float* key_var = nullptr, const float* a2 = nullptr,
                          float cap = 0.f) {
  std::fill(o, o + static_cast<int64_t>(g) * d, 0.f);
  if (n <= 0) {
    std::fill(lse, lse + g, -INFINITY);
    return;
  }
  // Per-thread buffers reused across calls (a short-context decode step is tens of microseconds,
  // so per-call heap allocations show); thread_local keeps concurrent callers independent.
  struct Scratch {
    std::vector<float> w, size, m;
    std::vector<double> z;
  };
  thread_local Scratch ws;
  // w (g, n): the zone's (corrected) logits per head, then in place their weights
  // exp(l_i - m_h), m_h = max_i l_i (so every weight is <= 1; the sizes are applied in double).
  ws.w.resize(static_cast<size_t>(n) * g);
  ws.size.resize(static_cast<size_t>(n));
  float* RETROKV_RESTRICT w = ws.w.data();
  float* RETROKV_RESTRICT size = ws.size.data();
  const cpu::RowKernels<VT> rk = cpu::row_kernels<VT>();
  const cpu::RowSource<VT> rows{value_sums, d, clusters, 0};
  if (key_var) {
    // w_h[i] = Σ_t a2_ht key_var_it for all zone clusters and heads in one pass of the
    // runtime-dispatched row kernel (each variance row read once for the group).
    const cpu::RowSource<float> vars{key_var, d, clusters, 0};
    cpu::row_kernels<float>().dot_rows(a2, d, g, vars, static_cast<int>(n), d, w, n, vars, 0);
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = clusters[i];
    size[i] = static_cast<float>(offsets[c + 1] - offsets[c]);
    for (int h = 0; h < g; ++h) {
      float li = logits[h * n_clusters + c];
      if (key_var) li += std::min(0.5f * w[h * n + i], cap);
      w[h * n + i] = li;
    }
  }
  // One vectorised exp per head row (the project's runtime-dispatched SIMD kernel) instead of a
  // scalar expf per (cluster, head) and a logf per cluster.
  const cpu::MathKernels mk = cpu::math_kernels();
  ws.m.resize(g);
  ws.z.resize(g);
  float* RETROKV_RESTRICT m = ws.m.data();
  double* RETROKV_RESTRICT z = ws.z.data();
  for (int h = 0; h < g; ++h) {
    float* RETROKV_RESTRICT wh = w + static_cast<int64_t>(h) * n;
    m[h] = *std::max_element(wh, wh + n);
    mk.exp_shift_sum(wh, static_cast<int>(n), m[h]);
    // Four partial sums: one chain of dependent double adds would be latency-bound.
    double zp[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; ++k) zp[k] += static_cast<double>(wh[i + k]) * size[i + k];
    for (; i < n; ++i) zp[0] += static_cast<double>(wh[i]) * size[i];
    z[h] = (zp[0] + zp[1]) + (zp[2] + zp[3]);
  }
  // o_h += Σ_i w_h[i] VS_i by the project's runtime-dispatched row kernel (AVX-512 / AVX2):
  // a plain loop here is compiled for the baseline ISA (SSE) and was the bulk of this function.
  // Each VS_i is read once for all heads.
  rk.axpy_rows(w, n, g, rows, static_cast<int>(n), d, o, d, rows, 0);
  for (int h = 0; h < g; ++h) {
    Eigen::Map<Eigen::VectorXf>(o + static_cast<int64_t>(h) * d, d) *=
        static_cast<float>(1.0 / z[h]);
    lse[h] = m[h] + static_cast<float>(std::log(z[h]));
  }
}

}  // namespace retrokv::detail
