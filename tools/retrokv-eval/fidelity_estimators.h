// retrokv-eval fidelity --decompose: where the wave index's error comes from (issue 5). Given the
// zones a wave index chose, recomputes its attention output in double with the estimation zone
// estimated in several ways, from the centroid formula to oracles that read the cluster's
// tokens, so the error of dropped clusters, of the cluster-mass estimate and of the value mean can
// be told apart. Reference code for measurement only, not a decode path.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "retrokv/core/view.h"
#include "retrokv/index/wave_index.h"

namespace retrokv::eval {

/// How the estimation zone's clusters are turned into (exp-sum, weighted value sum).
enum class EstimateMode {
  kCentroid,   ///< issue's formula: Z_i = s exp(a.c), N_i = exp(a.c) VS_i
  kVarIso,     ///< + isotropic second-moment correction exp(min(½|a|²σ², |a| r))
  kVarDiag,    ///< + diagonal second-moment correction exp(min(½ Σ a_t² σ_t², |a| r))
  kVarDiagX,   ///< kVarDiag plus the value-key cross-covariance term (v̄ + C_vk a), full d x d
  kVarFull,    ///< full-covariance correction ½ aᵀΣa computed from the tokens (upper bound)
  kVarFullX,   ///< kVarFull plus the cross-covariance value term
  kXcov,       ///< centroid mass, value v̄ + C_vk a (first-order value tilt only)
  kVarPca,     ///< per-cluster variances in the head's global PCA basis of the keys
  kSubVar,     ///< every zone cluster split in 4 sub-clusters, each with centroid + capped diag var
  kSubVarTop,  ///< kSubVar for the best-ranked quarter of the zone, kVarDiag for the rest
  kOracleZ,    ///< exact Z_i from the tokens, value = cluster mean (isolates the value error)
  kOracleExact,  ///< the cluster's tokens attended exactly (only dropped clusters remain)
  kQuantized     ///< the cluster's tokens attended exactly from a QuantizedTokens copy
};

inline const char* mode_name(EstimateMode m) {
  switch (m) {
    case EstimateMode::kCentroid:
      return "centroid";
    case EstimateMode::kVarIso:
      return "var_iso";
    case EstimateMode::kVarDiag:
      return "var_diag";
    case EstimateMode::kVarDiagX:
      return "var_diag_xcov";
    case EstimateMode::kVarFull:
      return "var_full";
    case EstimateMode::kVarFullX:
      return "var_full_xcov";
    case EstimateMode::kXcov:
      return "xcov";
    case EstimateMode::kVarPca:
      return "var_pca";
    case EstimateMode::kSubVar:
      return "sub4_var";
    case EstimateMode::kSubVarTop:
      return "sub4top_var";
    case EstimateMode::kOracleZ:
      return "oracle_z";
    case EstimateMode::kOracleExact:
      return "oracle_exact";
    case EstimateMode::kQuantized:
      return "quant";
  }
  return "?";
}

/// Per-cluster second moments of the keys around their centroid (computed from the index's
/// reordered copy): diagonal variance (C, d), its mean over dims, and the radius max |k - c|.
struct ClusterMoments {
  int64_t n_clusters = -1;
  double cap = INFINITY;  // upper clip of every second-moment correction (--decompose-cap)
  std::vector<double> var_diag, var_iso, radius, var_pca;
  Eigen::MatrixXd pca;  // (d, d) columns = eigenvectors of the clustered keys' covariance
  // Sub-clusters: cluster c owns sub ids [sub_first[c], sub_first[c+1]); per sub-cluster the
  // centroid (d), value sum (d), size and diagonal key variance (d).
  std::vector<int64_t> sub_first;
  std::vector<double> sub_cent, sub_vsum, sub_var, sub_size;
  void compute(const WaveIndex& w) {
    const int64_t C = w.n_clusters(), d = w.dim();
    n_clusters = C;
    {
      const ConstMatrixView<float> k = w.reordered_keys();
      Eigen::MatrixXd X(k.rows, d);
      for (int64_t p = 0; p < k.rows; ++p)
        for (int64_t t = 0; t < d; ++t) X(p, t) = k(p, t);
      X.rowwise() -= X.colwise().mean();
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(X.transpose() * X);
      pca = es.eigenvectors();
    }
    {
      const ConstMatrixView<float> k = w.reordered_keys(), v = w.reordered_values();
      const auto& of = w.cluster_offsets();
      sub_first.assign(1, 0);
      sub_cent.clear();
      sub_vsum.clear();
      sub_var.clear();
      sub_size.clear();
      for (int64_t i = 0; i < C; ++i) {
        const int64_t b = of[i], s = of[i + 1] - of[i];
        const int ns = static_cast<int>(std::min<int64_t>(4, s));
        // L2 k-means inside the cluster, seeds evenly spaced, 5 iterations.
        std::vector<std::vector<double>> cen(ns, std::vector<double>(d));
        for (int j = 0; j < ns; ++j)
          for (int64_t t = 0; t < d; ++t) cen[j][t] = k(b + j * s / ns, t);
        std::vector<int> asg(s, 0);
        for (int it = 0; it < 5; ++it) {
          for (int64_t p = 0; p < s; ++p) {
            double best = INFINITY;
            for (int j = 0; j < ns; ++j) {
              double dist = 0.0;
              for (int64_t t = 0; t < d; ++t) {
                const double x = k(b + p, t) - cen[j][t];
                dist += x * x;
              }
              if (dist < best) best = dist, asg[p] = j;
            }
          }
          for (int j = 0; j < ns; ++j) {
            std::vector<double> acc(d, 0.0);
            int cnt = 0;
            for (int64_t p = 0; p < s; ++p)
              if (asg[p] == j) {
                ++cnt;
                for (int64_t t = 0; t < d; ++t) acc[t] += k(b + p, t);
              }
            if (cnt)
              for (int64_t t = 0; t < d; ++t) cen[j][t] = acc[t] / cnt;
          }
        }
        for (int j = 0; j < ns; ++j) {
          std::vector<double> cs(d, 0.0), vs(d, 0.0), vr(d, 0.0);
          int cnt = 0;
          for (int64_t p = 0; p < s; ++p)
            if (asg[p] == j) {
              ++cnt;
              for (int64_t t = 0; t < d; ++t) cs[t] += k(b + p, t), vs[t] += v(b + p, t);
            }
          if (!cnt) continue;
          for (int64_t t = 0; t < d; ++t) cs[t] /= cnt;
          for (int64_t p = 0; p < s; ++p)
            if (asg[p] == j)
              for (int64_t t = 0; t < d; ++t) {
                const double x = k(b + p, t) - cs[t];
                vr[t] += x * x / cnt;
              }
          sub_cent.insert(sub_cent.end(), cs.begin(), cs.end());
          sub_vsum.insert(sub_vsum.end(), vs.begin(), vs.end());
          sub_var.insert(sub_var.end(), vr.begin(), vr.end());
          sub_size.push_back(cnt);
        }
        sub_first.push_back(static_cast<int64_t>(sub_size.size()));
      }
    }
    var_pca.assign(static_cast<size_t>(C * d), 0.0);
    var_diag.assign(static_cast<size_t>(C * d), 0.0);
    var_iso.assign(C, 0.0);
    radius.assign(C, 0.0);
    const auto& off = w.cluster_offsets();
    const ConstMatrixView<float> k = w.reordered_keys(), c = w.centroids();
    for (int64_t i = 0; i < C; ++i) {
      const double s = double(off[i + 1] - off[i]);
      for (int64_t p = off[i]; p < off[i + 1]; ++p) {
        double r2 = 0.0;
        for (int64_t t = 0; t < d; ++t) {
          const double dl = double(k(p, t)) - c(i, t);
          var_diag[i * d + t] += dl * dl / s;
          r2 += dl * dl;
        }
        radius[i] = std::max(radius[i], std::sqrt(r2));
      }
      for (int64_t t = 0; t < d; ++t) var_iso[i] += var_diag[i * d + t] / double(d);
      for (int64_t p = off[i]; p < off[i + 1]; ++p) {
        Eigen::VectorXd dl(d);
        for (int64_t t = 0; t < d; ++t) dl[t] = double(k(p, t)) - c(i, t);
        const Eigen::VectorXd r = pca.transpose() * dl;
        for (int64_t t = 0; t < d; ++t) var_pca[i * d + t] += r[t] * r[t] / s;
      }
    }
  }
};

/// How the estimation zone's tokens are quantized (retrokv extension, issue 5 session 4): keys as
/// residuals from their cluster's centroid, values raw; each b-bit code is an asymmetric min/max
/// level, `x~ = min + scale * code`, with (scale, min) per token (per row) or, for keys with
/// `key_per_channel`, per (cluster, channel) over the cluster's tokens (KIVI's key layout).
struct QuantSpec {
  int key_bits = 4;
  int value_bits = 4;
  bool key_per_channel = false;
  std::string name() const {
    std::string n = "k" + std::to_string(key_bits) + "v" + std::to_string(value_bits);
    return key_per_channel ? n + "c" : n;
  }
  /// Bytes of codes and float (scale, min) pairs for one cluster of s tokens of dim d.
  int64_t cluster_bytes(int64_t s, int64_t d) const {
    const int64_t codes = (s * d * key_bits + 7) / 8 + (s * d * value_bits + 7) / 8;
    const int64_t scales = (key_per_channel ? 2 * d : 2 * s) + 2 * s;
    return codes + scales * static_cast<int64_t>(sizeof(float));
  }
};

/// Reference quantizer (plain float arithmetic, the rule the library header must reproduce):
/// levels L = 2^bits - 1; scale = (max - min) / L, code = clamp(nearbyint((x - min) / scale),
/// 0, L) (0 when scale is 0); dequantized x~ = min + scale * code.
inline void quantize_group_reference(const float* x, int64_t n, int64_t stride, int bits,
                                     float* out) {
  float mn = INFINITY, mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    mn = std::min(mn, x[i * stride]), mx = std::max(mx, x[i * stride]);
  const float levels = static_cast<float>((1 << bits) - 1);
  const float sc = (mx - mn) / levels;
  for (int64_t i = 0; i < n; ++i) {
    float c = 0.f;
    if (sc > 0.f) c = std::min(levels, std::max(0.f, std::nearbyint((x[i * stride] - mn) / sc)));
    out[i * stride] = mn + sc * c;
  }
}

/// Dequantized copy (n_clustered, d) of a wave index's reordered keys and values under `spec`.
struct QuantizedTokens {
  QuantSpec spec;
  int64_t n_clusters = -1;
  int64_t bytes = 0;  // codes + scales of every cluster
  std::vector<float> k, v;
  void compute(const WaveIndex& w, const QuantSpec& s) {
    spec = s;
    const int64_t C = w.n_clusters(), d = w.dim();
    n_clusters = C;
    const ConstMatrixView<float> rk = w.reordered_keys(), rv = w.reordered_values();
    const ConstMatrixView<float> cent = w.centroids();
    const auto& off = w.cluster_offsets();
    k.assign(static_cast<size_t>(rk.rows * d), 0.f);
    v.assign(static_cast<size_t>(rv.rows * d), 0.f);
    bytes = 0;
    std::vector<float> res;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t b = off[c], n = off[c + 1] - off[c];
      bytes += spec.cluster_bytes(n, d);
      res.resize(static_cast<size_t>(n * d));
      for (int64_t p = 0; p < n; ++p)
        for (int64_t t = 0; t < d; ++t) res[p * d + t] = rk(b + p, t) - cent(c, t);
      float* kk = k.data() + b * d;
      if (spec.key_per_channel) {
        for (int64_t t = 0; t < d; ++t)
          quantize_group_reference(res.data() + t, n, d, spec.key_bits, kk + t);
      } else {
        for (int64_t p = 0; p < n; ++p)
          quantize_group_reference(res.data() + p * d, d, 1, spec.key_bits, kk + p * d);
      }
      for (int64_t i = 0; i < n * d; ++i) kk[i] += cent(c, i % d);
      for (int64_t p = 0; p < n; ++p)
        quantize_group_reference(rv.row(b + p), d, 1, spec.value_bits, v.data() + (b + p) * d);
    }
  }
};

/// Output of one query head q (d) over the wave index's steady zone and retrieval clusters
/// (exact) and estimation clusters (estimated by `mode`), in double; o receives d values.
inline void decomposed_attend(const WaveIndex& w, const ClusterMoments& mom, const float* q,
                              float scale, const WaveSelection& sel, EstimateMode mode, double* o,
                              const QuantizedTokens* qt = nullptr) {
  const int64_t d = w.dim();
  std::vector<double> a(d);
  double a2 = 0.0;
  for (int64_t t = 0; t < d; ++t) {
    a[t] = double(q[t]) * scale;
    a2 += a[t] * a[t];
  }
  const double anorm = std::sqrt(a2);
  auto dot = [&](const float* x) {
    double s = 0.0;
    for (int64_t t = 0; t < d; ++t) s += a[t] * x[t];
    return s;
  };
  // Terms are accumulated relative to the steady zone's first logit; double has the range.
  const ConstMatrixView<float> sk = w.steady_keys(), sv = w.steady_values();
  const ConstMatrixView<float> rk = w.reordered_keys(), rv = w.reordered_values();
  const ConstMatrixView<float> cent = w.centroids(), vsum = w.value_sums();
  const auto& off = w.cluster_offsets();
  double ref = sk.rows > 0 ? dot(sk.row(0)) : 0.0;
  double z = 0.0;
  std::vector<double> num(d, 0.0);
  auto add_token = [&](const float* k, const float* v) {
    const double e = std::exp(dot(k) - ref);
    z += e;
    for (int64_t t = 0; t < d; ++t) num[t] += e * v[t];
  };
  for (int64_t i = 0; i < sk.rows; ++i) add_token(sk.row(i), sv.row(i));
  for (int32_t c : sel.retrieval)
    for (int64_t p = off[c]; p < off[c + 1]; ++p) add_token(rk.row(p), rv.row(p));
  std::vector<double> xc(d);
  const int64_t n_top = (static_cast<int64_t>(sel.estimation.size()) + 3) / 4;
  for (size_t zi = 0; zi < sel.estimation.size(); ++zi) {
    const int32_t c = sel.estimation[zi];
    if (mode == EstimateMode::kSubVar ||
        (mode == EstimateMode::kSubVarTop && static_cast<int64_t>(zi) < n_top)) {
      for (int64_t j = mom.sub_first[c]; j < mom.sub_first[c + 1]; ++j) {
        double l = 0.0, q2 = 0.0;
        for (int64_t t = 0; t < d; ++t) {
          l += a[t] * mom.sub_cent[j * d + t];
          q2 += a[t] * a[t] * mom.sub_var[j * d + t];
        }
        const double e = std::exp(l + std::min(0.5 * q2, mom.cap) - ref);
        z += mom.sub_size[j] * e;
        for (int64_t t = 0; t < d; ++t) num[t] += e * mom.sub_vsum[j * d + t];
      }
      continue;
    }
    const double s = double(off[c + 1] - off[c]);
    if (mode == EstimateMode::kOracleExact) {
      for (int64_t p = off[c]; p < off[c + 1]; ++p) add_token(rk.row(p), rv.row(p));
      continue;
    }
    if (mode == EstimateMode::kQuantized) {
      for (int64_t p = off[c]; p < off[c + 1]; ++p)
        add_token(qt->k.data() + p * d, qt->v.data() + p * d);
      continue;
    }
    if (mode == EstimateMode::kOracleZ) {
      double zc = 0.0;
      for (int64_t p = off[c]; p < off[c + 1]; ++p) zc += std::exp(dot(rk.row(p)) - ref);
      z += zc;
      for (int64_t t = 0; t < d; ++t) num[t] += zc * vsum(c, t) / s;
      continue;
    }
    double corr = 0.0;
    std::vector<double> ad_tok;
    if (mode == EstimateMode::kVarFull || mode == EstimateMode::kVarFullX) {
      double q2 = 0.0;
      for (int64_t p = off[c]; p < off[c + 1]; ++p) {
        double ad = 0.0;
        for (int64_t t = 0; t < d; ++t) ad += a[t] * (double(rk(p, t)) - cent(c, t));
        q2 += ad * ad / s;
      }
      corr = std::min(0.5 * q2, anorm * mom.radius[c]);
    } else if (mode == EstimateMode::kVarPca) {
      Eigen::VectorXd av(d);
      for (int64_t t = 0; t < d; ++t) av[t] = a[t];
      const Eigen::VectorXd r = mom.pca.transpose() * av;
      double q2 = 0.0;
      for (int64_t t = 0; t < d; ++t) q2 += r[t] * r[t] * mom.var_pca[c * d + t];
      corr = std::min(0.5 * q2, anorm * mom.radius[c]);
    } else if (mode == EstimateMode::kVarIso) {
      corr = std::min(0.5 * a2 * mom.var_iso[c], anorm * mom.radius[c]);
    } else if (mode == EstimateMode::kVarDiag || mode == EstimateMode::kVarDiagX ||
               mode == EstimateMode::kSubVarTop) {
      double q2 = 0.0;
      for (int64_t t = 0; t < d; ++t) q2 += a[t] * a[t] * mom.var_diag[c * d + t];
      corr = std::min(0.5 * q2, anorm * mom.radius[c]);
    }
    corr = std::min(corr, mom.cap);
    const double e = std::exp(dot(cent.row(c)) + corr - ref);
    z += s * e;
    for (int64_t t = 0; t < d; ++t) num[t] += e * vsum(c, t);
    if (mode == EstimateMode::kVarDiagX || mode == EstimateMode::kVarFullX ||
        mode == EstimateMode::kXcov) {
      // Σ_j (v_j - v̄)(a.δ_j): the first-order value tilt, read from the tokens (upper bound of
      // what a stored low-rank C_vk could give).
      std::fill(xc.begin(), xc.end(), 0.0);
      for (int64_t p = off[c]; p < off[c + 1]; ++p) {
        double ad = 0.0;
        for (int64_t t = 0; t < d; ++t) ad += a[t] * (double(rk(p, t)) - cent(c, t));
        for (int64_t t = 0; t < d; ++t) xc[t] += (double(rv(p, t)) - vsum(c, t) / s) * ad;
      }
      for (int64_t t = 0; t < d; ++t) num[t] += e * xc[t];
    }
  }
  for (int64_t t = 0; t < d; ++t) o[t] = num[t] / z;
}

}  // namespace retrokv::eval

namespace retrokv::eval {

/// How decomposed_select ranks clusters for the retrieval zone.
enum class RankMode {
  kSoftmax,  ///< the index's: Σ_h softmax_h(a.c)
  kMassVar,  ///< Σ_h mass share with the diagonal second-moment estimate s exp(a.c + corr)
  kBound,    ///< Σ_h share of the upper bound s exp(a.c + |a| r)
  kOracle    ///< Σ_h share of the exact cluster mass (reads the tokens)
};

inline const char* rank_name(RankMode m) {
  switch (m) {
    case RankMode::kSoftmax:
      return "softmax";
    case RankMode::kMassVar:
      return "massvar";
    case RankMode::kBound:
      return "bound";
    case RankMode::kOracle:
      return "oracle";
  }
  return "?";
}

/// Retrieval zone = clusters in `mode` rank order until they hold >= retrieval_tokens tokens;
/// estimation zone = the next est_frac of all clusters (ceil).
inline WaveSelection decomposed_select(const WaveIndex& w, const ClusterMoments& mom,
                                       ConstMatrixView<float> q, float scale, RankMode mode,
                                       int64_t retrieval_tokens, double est_frac) {
  const int64_t C = w.n_clusters(), d = w.dim();
  const auto& off = w.cluster_offsets();
  const ConstMatrixView<float> cent = w.centroids(), rk = w.reordered_keys();
  std::vector<double> score(C, 0.0), lg(C);
  for (int64_t h = 0; h < q.rows; ++h) {
    std::vector<double> a(d);
    double a2 = 0.0;
    for (int64_t t = 0; t < d; ++t) {
      a[t] = double(q(h, t)) * scale;
      a2 += a[t] * a[t];
    }
    double mx = -INFINITY;
    for (int64_t c = 0; c < C; ++c) {
      double l = 0.0;
      for (int64_t t = 0; t < d; ++t) l += a[t] * cent(c, t);
      const double s = double(off[c + 1] - off[c]);
      if (mode == RankMode::kMassVar) {
        double q2 = 0.0;
        for (int64_t t = 0; t < d; ++t) q2 += a[t] * a[t] * mom.var_diag[c * d + t];
        l += std::log(s) + std::min(0.5 * q2, std::sqrt(a2) * mom.radius[c]);
      } else if (mode == RankMode::kBound) {
        l += std::log(s) + std::sqrt(a2) * mom.radius[c];
      } else if (mode == RankMode::kOracle) {
        double m = -INFINITY;
        std::vector<double> ls;
        for (int64_t p = off[c]; p < off[c + 1]; ++p) {
          double x = 0.0;
          for (int64_t t = 0; t < d; ++t) x += a[t] * rk(p, t);
          ls.push_back(x);
          m = std::max(m, x);
        }
        double z = 0.0;
        for (double x : ls) z += std::exp(x - m);
        l = m + std::log(z);
      }
      lg[c] = l;
      mx = std::max(mx, l);
    }
    double z = 0.0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(lg[c] - mx);
    for (int64_t c = 0; c < C; ++c) score[c] += std::exp(lg[c] - mx) / z;
  }
  std::vector<int32_t> rank(C);
  for (int64_t c = 0; c < C; ++c) rank[c] = static_cast<int32_t>(c);
  std::stable_sort(rank.begin(), rank.end(),
                   [&](int32_t x, int32_t y) { return score[x] > score[y]; });
  WaveSelection sel;
  int64_t r = 0;
  while (r < C && sel.retrieval_tokens < retrieval_tokens) {
    sel.retrieval.push_back(rank[r]);
    sel.retrieval_tokens += off[rank[r] + 1] - off[rank[r]];
    ++r;
  }
  const int64_t n_e = std::min<int64_t>(
      C - r, static_cast<int64_t>(std::ceil(est_frac * static_cast<double>(C) - 1e-9)));
  for (int64_t i = r; i < r + n_e; ++i) {
    sel.estimation.push_back(rank[i]);
    sel.estimation_tokens += off[rank[i] + 1] - off[rank[i]];
  }
  return sel;
}

}  // namespace retrokv::eval
