// Writes a WaveIndex file in an older layout (version 1 or 2), field by field from the public
// accessors of a freshly built index, so the tests can check that old files still load. A fixed
// fixture on purpose: it must not follow WaveIndex::save when the format moves on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "retrokv/core/checksum.h"
#include "retrokv/index/wave_index.h"

namespace retrokv {

/// w: built from s.keys / s.values with params p (no appends). version 1: no estimator fields
/// and no key variances; version 2: with them (and no quantized zone).
inline void write_legacy_wave_file(const WaveIndex& w, const SyntheticAttention& s,
                                   const WaveParams& p, uint32_t version, const std::string& path) {
  const int64_t n = w.size();
  const int d = w.dim();
  BinaryWriter bw(WaveIndex::kMagic, version);
  bw.write<int64_t>(p.segment_size);
  bw.write<int32_t>(p.tokens_per_cluster);
  bw.write<int32_t>(p.iterations);
  bw.write<int32_t>(p.n_sink);
  bw.write<int32_t>(p.n_local);
  bw.write<int64_t>(p.update_interval);
  bw.write<uint64_t>(p.seed);
  bw.write<double>(p.budget.retrieval_frac);
  bw.write<int64_t>(p.budget.retrieval_tokens);
  bw.write<double>(p.budget.estimation_frac);
  bw.write<int64_t>(p.budget.estimation_tokens);
  bw.write<double>(p.budget.tolerance);
  if (version >= 2) {
    bw.write<int32_t>(static_cast<int32_t>(p.budget.estimator));
    bw.write<double>(p.budget.variance_cap);
  }
  bw.write<int32_t>(d);
  bw.write<int64_t>(n);
  bw.write<int64_t>(p.n_sink);  // sinks of a fresh build
  bw.write<int64_t>(w.pending());
  bw.write<bool>(true);
  std::vector<double> mean(d, 0.0);
  for (int64_t i = p.n_sink; i < n - p.n_local; ++i)
    for (int t = 0; t < d; ++t) mean[t] += s.keys(i, t);
  std::vector<float> key_mean(d);
  for (int t = 0; t < d; ++t) key_mean[t] = float(mean[t] / double(n - p.n_sink - p.n_local));
  auto rows = [](ConstMatrixView<float> m) {
    return std::vector<float>(m.data, m.data + m.rows * m.cols);
  };
  bw.write_vector(key_mean);
  bw.write_vector(w.steady_ids());
  bw.write_vector(rows(w.steady_keys()));
  bw.write_vector(rows(w.steady_values()));
  bw.write_vector(w.cluster_offsets());
  bw.write_vector(w.reordered_ids());
  bw.write_vector(rows(w.reordered_keys()));
  bw.write_vector(rows(w.reordered_values()));
  bw.write_vector(rows(w.centroids()));
  bw.write_vector(rows(w.value_sums()));
  if (version >= 2) bw.write_vector(rows(w.key_variances()));
  bw.write_vector(w.segments());
  bw.save(path);
}

}  // namespace retrokv
