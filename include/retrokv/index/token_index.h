// The one interface every token index shares (DESIGN.md section 3): build over the keys of one
// KV head, search for a query or a GQA group with a budget, count "keys scanned" so that Flat,
// IVF, RoarGraph and the wave index are measured in the same unit.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "retrokv/core/view.h"

namespace retrokv {

/// What a search returns: token ids ranked best first, with their scores (the group score: the
/// max over the group's query heads of q.k, unscaled), and the work it took.
struct SearchResult {
  std::vector<int32_t> ids;
  std::vector<float> scores;
  /// Keys whose inner product with a query was computed (a key scored for g query heads of a
  /// group counts once).
  int64_t keys_scanned = 0;
};

/// Per-search knobs. Fields an index does not use are ignored.
struct SearchParams {
  int k = 100;                          ///< how many token ids to return
  int ef = 0;                           ///< graph beam width (0: the index's default)
  int nprobe = 0;                       ///< IVF lists to probe (0: the index's default)
  const int32_t* warm_start = nullptr;  ///< ids to start a graph search from (e.g. last step's)
  int n_warm_start = 0;
};

/// Abstract token index over the keys (n, d) of one KV head. Build-time parameters live in each
/// index's own params struct. `search` is const and safe to call from many threads at once.
class TokenIndex {
 public:
  virtual ~TokenIndex() = default;
  virtual std::string name() const = 0;
  virtual int64_t size() const = 0;
  virtual int dim() const = 0;
  /// queries: (g, d) — one query (g = 1) or the g query heads of one GQA group. The group's
  /// score of a key is max over the g heads of q.k.
  virtual SearchResult search(ConstMatrixView<float> queries, const SearchParams& params) const = 0;
  /// Bytes held by the index structure (not counting the keys it may reference).
  virtual int64_t memory_bytes() const = 0;
};

}  // namespace retrokv
