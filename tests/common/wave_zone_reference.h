// The wave index's decode step rebuilt from its public kernels, for the tests that check attend()
// against them: the exact steady and retrieval zones of a selection, and the LSE merge of the
// three zone states of one head. The estimation zone is left to the caller (it is what differs
// between the estimators).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "retrokv/core/attention_state.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/index/wave_index.h"

namespace retrokv {

/// Zone states of a GQA group q (g, d): rows [0, g) of zs and zl[0, g) the exact steady zone,
/// rows [g, 2g) and zl[g, 2g) the exact retrieval clusters of sel in rank order; rows
/// [2g, 3g) and zl[2g, 3g) are for the caller's estimate.
struct WaveZoneStates {
  Matrix<float> zs;
  std::vector<float> zl;
  WaveZoneStates(const WaveIndex& w, ConstMatrixView<float> q, float scale,
                 const WaveSelection& sel)
      : zs(3 * q.rows, w.dim()), zl(3 * q.rows) {
    const int64_t g = q.rows;
    const int d = w.dim();
    cpu::attend_range<float>(q, w.steady_keys(), w.steady_values(), 0,
                             int64_t(w.steady_ids().size()), scale,
                             MatrixView<float>(zs.row(0), g, d), zl.data());
    std::vector<int32_t> rows;
    for (int32_t c : sel.retrieval)
      for (int64_t p = w.cluster_offsets()[c]; p < w.cluster_offsets()[c + 1]; ++p)
        rows.push_back(int32_t(p));
    cpu::attend_ids<float>(q, w.reordered_keys(), w.reordered_values(), rows.data(),
                           int64_t(rows.size()), scale, MatrixView<float>(zs.row(g), g, d),
                           zl.data() + g);
  }
  /// The caller's estimate goes here: (g, d) state and g natural-log LSEs.
  MatrixView<float> estimate_o() { return MatrixView<float>(zs.row(2 * g()), g(), zs.cols()); }
  float* estimate_lse() { return zl.data() + 2 * g(); }
  /// Head h's three states merged (merge_states_n, zones in order): the output in want (d), the
  /// LSE returned.
  float merged(int64_t h, std::vector<float>& want) const {
    const int64_t d = zs.cols();
    std::vector<float> states(size_t(3) * d);
    float l[3];
    for (int z = 0; z < 3; ++z) {
      std::copy(zs.row(z * g() + h), zs.row(z * g() + h) + d, states.data() + z * d);
      l[z] = zl[z * g() + h];
    }
    want.resize(d);
    return merge_states_n(states.data(), l, 3, static_cast<int>(d), want.data());
  }

 private:
  int64_t g() const { return zs.rows() / 3; }
};

}  // namespace retrokv
