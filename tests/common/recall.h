// Recall of an index against the exact inner-product top-k, shared by the index tests.
#pragma once

#include <set>
#include <utility>

#include "retrokv/index/knn.h"
#include "retrokv/index/token_index.h"

namespace retrokv {

/// Mean recall@params.k of `index` over the rows of `queries` (one query head each), and the
/// mean keys scanned per query.
template <typename Index>
std::pair<double, double> recall_at(const Index& index, ConstMatrixView<float> keys,
                                    ConstMatrixView<float> queries, const SearchParams& params) {
  const int k = params.k;
  const KnnResult truth = knn_inner_product(queries, keys, k);
  double hits = 0, scanned = 0;
  for (int64_t i = 0; i < queries.rows; ++i) {
    const SearchResult r = index.search(queries.slice_rows(i, 1), params);
    const std::set<int32_t> want(truth.row_ids(i), truth.row_ids(i) + k);
    for (int32_t id : r.ids) hits += want.count(id);
    scanned += static_cast<double>(r.keys_scanned);
  }
  return {hits / (double(k) * queries.rows), scanned / queries.rows};
}

inline SearchParams graph_params(int k, int ef) {
  SearchParams p;
  p.k = k;
  p.ef = ef;
  return p;
}

inline SearchParams ivf_params(int k, int nprobe) {
  SearchParams p;
  p.k = k;
  p.nprobe = nprobe;
  return p;
}

}  // namespace retrokv
