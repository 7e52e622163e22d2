// The two halves of the wave index's tripartite attention (RetroInfer section 4.2): exact
// attention of a GQA group over a list of contiguous KV row ranges (steady zone + retrieved
// clusters, read cluster by cluster), and the centroid estimate of the estimation zone.
// Both produce per-head (o, lse) states with NATURAL-log lse, merged by core/attention_state.h.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retrokv/core/attention_state.h"

namespace retrokv::detail {

/// Contiguous rows [0, n) of keys/values with row stride d: one cluster or the steady zone.
struct KVRange {
  const float* keys;
  const float* values;
  int64_t n;
};

/// Running (unnormalised) softmax state of g heads: max logit m, sum z = Σ exp(s - m) and
/// acc = Σ exp(s - m) v. Ranges are folded in one at a time; the max is updated once per block
/// of rows, so one rescale covers a whole cluster.
class GroupSoftmaxAccumulator {
 public:
  GroupSoftmaxAccumulator(const float* q, int g, int d, float scale)
      : q_(q), g_(g), d_(d), scale_(scale), m_(g, -INFINITY), z_(g, 0.f),
        acc_(static_cast<size_t>(g) * d, 0.0), part_(d), s_(static_cast<size_t>(g) * kBlock) {}

  void add(const KVRange& r) {
    using Vec = Eigen::Map<const Eigen::VectorXf>;
    for (int64_t b = 0; b < r.n; b += kBlock) {
      const int64_t rows = std::min<int64_t>(kBlock, r.n - b);
      for (int64_t j = 0; j < rows; ++j) {
        Vec k(r.keys + (b + j) * d_, d_);
        for (int h = 0; h < g_; ++h) s_[h * kBlock + j] = Vec(q_ + h * d_, d_).dot(k) * scale_;
      }
      for (int h = 0; h < g_; ++h) {
        float* s = s_.data() + h * kBlock;
        float bm = s[0];
        for (int64_t j = 1; j < rows; ++j) bm = std::max(bm, s[j]);
        Eigen::Map<Eigen::VectorXd> acc(acc_.data() + h * d_, d_);
        if (bm > m_[h]) {
          const double f = m_[h] == -INFINITY ? 0.0 : std::exp(double(m_[h]) - bm);
          acc *= f;
          z_[h] *= f;
          m_[h] = bm;
        }
        // A block's partial sum in float, folded into double: long contexts keep ~1e-7 accuracy.
        Eigen::Map<Eigen::VectorXf> part(part_.data(), d_);
        part.setZero();
        float zb = 0.f;
        for (int64_t j = 0; j < rows; ++j) {
          const float e = std::exp(s[j] - m_[h]);
          zb += e;
          part += e * Vec(r.values + (b + j) * d_, d_);
        }
        z_[h] += zb;
        acc += part.cast<double>();
      }
    }
  }

  /// Normalised state of head h into o[d]; returns the natural-log lse (-inf when empty).
  float finish(int h, float* o) const {
    if (z_[h] == 0.0) {
      std::fill(o, o + d_, 0.f);
      return -INFINITY;
    }
    const double inv = 1.0 / z_[h];
    for (int t = 0; t < d_; ++t) o[t] = static_cast<float>(acc_[h * d_ + t] * inv);
    return m_[h] + static_cast<float>(std::log(z_[h]));
  }

 private:
  static constexpr int64_t kBlock = 32;
  const float* q_;
  int g_, d_;
  float scale_;
  std::vector<float> m_;
  std::vector<double> z_, acc_;
  std::vector<float> part_;
  std::vector<float> s_;
};

/// Estimation zone of one head (RetroInfer eq. for Z_E): with l_i = q.c_i*scale,
/// Z_E = Σ s_i exp(l_i), o_E = Σ exp(l_i) VS_i / Z_E, lse_E = log Z_E (natural log).
/// logits: per-cluster l_i; sizes s_i; value_sums rows VS_i (stride d). Empty list: lse=-inf, o=0.
inline float estimate_zone(const float* logits, const int64_t* offsets, const float* value_sums,
                           const int32_t* clusters, int64_t n, int d, float* o) {
  std::fill(o, o + d, 0.f);
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = clusters[i];
    const float size = static_cast<float>(offsets[c + 1] - offsets[c]);
    if (size > 0.f) m = std::max(m, logits[c] + std::log(size));
  }
  if (m == -INFINITY) return -INFINITY;
  double z = 0.0;
  Eigen::Map<Eigen::VectorXf> out(o, d);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = clusters[i];
    const float size = static_cast<float>(offsets[c + 1] - offsets[c]);
    if (size <= 0.f) continue;
    const float w = std::exp(logits[c] - m);  // exp(l_i) / exp(m), times s_i below
    z += static_cast<double>(w) * size;
    out += w * Eigen::Map<const Eigen::VectorXf>(value_sums + static_cast<int64_t>(c) * d, d);
  }
  out *= static_cast<float>(1.0 / z);
  return m + static_cast<float>(std::log(z));
}

}  // namespace retrokv::detail
