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

namespace retrokv::detail {

/// Estimation zone of a GQA group (RetroInfer's estimate): per head h, with l_i = q_h.c_i*scale,
/// Z_E = Σ s_i exp(l_i), o_E = Σ exp(l_i) VS_i / Z_E, lse_E = log Z_E (natural log).
/// logits: (g, n_clusters) row-major; offsets: cluster c has s_c = offsets[c+1] - offsets[c]
/// tokens; value_sums: rows VS_c (stride d); clusters: the n zone members. Writes o (g, d) rows of
/// stride d and lse[g]; an empty zone gives lse = -inf, o = 0. Each VS_c is read once for all
/// heads (the zone's value sums are the bulk of the memory traffic).
/// Variance correction (WaveEstimator::kVariance) when key_var is non-null: key_var (C, d) holds
/// each cluster's per-dimension key variance and a2 (g, d) the squared scaled queries
/// (q_h*scale)²; every l_i becomes l_i + min(½ Σ_t a2_ht key_var_it, cap), i.e. both the mass
/// and the value weight of the cluster are raised by the second-order term of log-mean-exp.
inline void estimate_zone(const float* logits, int64_t n_clusters, int g, const int64_t* offsets,
                          const float* value_sums, const int32_t* clusters, int64_t n, int d,
                          float* o, float* lse, const float* key_var = nullptr,
                          const float* a2 = nullptr, float cap = 0.f) {
  std::fill(o, o + static_cast<int64_t>(g) * d, 0.f);
  std::vector<float> m(g, -INFINITY);
  std::vector<double> z(g, 0.0);
  // l (n, g): the zone's (corrected) logits, computed once for both passes.
  std::vector<float> l(static_cast<size_t>(n) * g);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = clusters[i];
    const float log_size = std::log(static_cast<float>(offsets[c + 1] - offsets[c]));
    for (int h = 0; h < g; ++h) {
      float li = logits[h * n_clusters + c];
      if (key_var) {
        // Eigen's dot keeps several SIMD accumulators; a plain float loop is a serial chain of
        // dependent adds (no reassociation without -ffast-math) and tripled this zone's time.
        const float q2 =
            Eigen::Map<const Eigen::VectorXf>(key_var + static_cast<int64_t>(c) * d, d)
                .dot(Eigen::Map<const Eigen::VectorXf>(a2 + static_cast<int64_t>(h) * d, d));
        li += std::min(0.5f * q2, cap);
      }
      l[i * g + h] = li;
      // m_h = max over the zone of l_i + log s_i keeps every s_i exp(l_i - m_h) <= 1.
      m[h] = std::max(m[h], li + log_size);
    }
  }
  if (n == 0 || m[0] == -INFINITY) {
    std::fill(lse, lse + g, -INFINITY);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = clusters[i];
    const float size = static_cast<float>(offsets[c + 1] - offsets[c]);
    const float* RETROKV_RESTRICT vs = value_sums + static_cast<int64_t>(c) * d;
    for (int h = 0; h < g; ++h) {
      const float wt = std::exp(l[i * g + h] - m[h]);
      z[h] += static_cast<double>(wt) * size;
      // A plain loop the compiler vectorises: a short Eigen expression per row costs more in
      // setup than the d multiply-adds it does.
      float* RETROKV_RESTRICT oh = o + static_cast<int64_t>(h) * d;
      for (int t = 0; t < d; ++t) oh[t] += wt * vs[t];
    }
  }
  for (int h = 0; h < g; ++h) {
    Eigen::Map<Eigen::VectorXf>(o + static_cast<int64_t>(h) * d, d) *=
        static_cast<float>(1.0 / z[h]);
    lse[h] = m[h] + static_cast<float>(std::log(z[h]));
  }
}

}  // namespace retrokv::detail
