// CPU partial attention for decoding (issue 2, "CPU kernels"; DESIGN.md sections 1-2): a GQA
// group of query heads over a token range or an id list, reading each key and value once for the
// whole group, with an online (running-max) softmax in one pass; and exact full-context attention
// by split-KV: chunks in parallel (OpenMP), merged by their natural-log LSE.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/parallel.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/simd.h"

namespace retrokv::cpu {

/// Default softmax scale 1/sqrt(d).
inline float default_scale(int d) {
  RETROKV_CHECK(d > 0, "d: expected > 0, got ", d);
  return 1.f / std::sqrt(static_cast<float>(d));
}

namespace detail {

/// Tokens per online-softmax step: scores of a block are computed for all heads, then the
/// running max is updated once per block (not per token) before the values are accumulated.
inline constexpr int kAttendBlock = 64;

template <typename T>
void check_attend_shapes(ConstMatrixView<float> q, ConstMatrixView<T> K, ConstMatrixView<T> V,
                         float scale, MatrixView<float> o, const float* lse) {
  RETROKV_CHECK(q.rows >= 1, "q: expected at least one query head (g, d), got ", q.rows, " rows");
  RETROKV_CHECK(q.cols >= 1, "q: expected d >= 1 columns, got ", q.cols);
  RETROKV_CHECK(q.data != nullptr, "q: null data");
  RETROKV_CHECK(K.cols == q.cols, "K: expected ", q.cols, " columns (as q), got ", K.cols);
  RETROKV_CHECK(V.cols == q.cols, "V: expected ", q.cols, " columns (as q), got ", V.cols);
  RETROKV_CHECK(V.rows == K.rows, "V: expected ", K.rows, " rows (as K), got ", V.rows);
  RETROKV_CHECK(o.rows == q.rows && o.cols == q.cols, "o: expected shape (", q.rows, ", ", q.cols,
                "), got (", o.rows, ", ", o.cols, ")");
  RETROKV_CHECK(o.data != nullptr, "o: null data");
  RETROKV_CHECK(lse != nullptr, "lse: null pointer (expected ", q.rows, " floats)");
  RETROKV_CHECK(std::isfinite(scale), "scale: expected a finite number, got ", scale);
  RETROKV_CHECK(q.cols <= std::numeric_limits<int>::max(), "q: d too large: ", q.cols);
  for (int64_t h = 0; h < q.rows; ++h) {
    const float* row = q.row(h);
    for (int64_t j = 0; j < q.cols; ++j) {
      RETROKV_CHECK(std::isfinite(row[j]), "q: expected finite values, got ", row[j], " at (", h,
                    ", ", j, ")");
    }
  }
}

/// Per-thread scratch of the online softmax: scaled queries, running max / sum, accumulators.
struct AttendScratch {
  std::vector<float> q;       // (g, d) queries times scale
  std::vector<float> scores;  // (g, kAttendBlock) logits, then weights
  std::vector<float> acc;     // (g, d) unnormalised output
  std::vector<float> m, l;    // (g) running max and sum of exp(logit - m)
};

/// Online softmax over `count` rows of K, V (as given by the two row sources) for the g heads of
/// q; writes o (g, d) normalised and natural-log lse[g]. Shapes are already checked.
template <typename T>
void attend_rows(ConstMatrixView<float> q, RowSource<T> krows, RowSource<T> vrows, int64_t count,
                 float scale, MatrixView<float> o, float* lse, AttendScratch& s) {
  const int g = static_cast<int>(q.rows);
  const int d = static_cast<int>(q.cols);
  if (count == 0) {
    for (int h = 0; h < g; ++h) {
      std::fill(o.row(h), o.row(h) + d, 0.f);
      lse[h] = -std::numeric_limits<float>::infinity();
    }
    return;
  }
  constexpr int B = kAttendBlock;
  s.q.resize(static_cast<size_t>(g) * d);
  s.scores.resize(static_cast<size_t>(g) * B);
  s.acc.assign(static_cast<size_t>(g) * d, 0.f);
  s.m.assign(g, -std::numeric_limits<float>::infinity());
  s.l.assign(g, 0.f);
  // Pre-scaled queries: the block's logits come out of the dot product already scaled.
  for (int h = 0; h < g; ++h) {
    for (int j = 0; j < d; ++j) s.q[static_cast<size_t>(h) * d + j] = q(h, j) * scale;
  }
  const RowKernels<T> rk = row_kernels<T>();
  const MathKernels mk = math_kernels();
  for (int64_t b0 = 0; b0 < count; b0 += B) {
    const int nb = static_cast<int>(std::min<int64_t>(B, count - b0));
    RowSource<T> kb = krows, vb = vrows;
    if (kb.ids) {
      kb.ids += b0;
      vb.ids += b0;
    } else {
      kb.begin += b0;
      vb.begin += b0;
    }
    // Scoring this block's keys prefetches its values; accumulating the values prefetches the
    // next block's keys (two alternating streams defeat the hardware prefetchers otherwise).
    rk.dot_rows(s.q.data(), d, g, kb, nb, d, s.scores.data(), B, vb, nb);
    for (int h = 0; h < g; ++h) {
      float* sh = s.scores.data() + static_cast<size_t>(h) * B;
      float bm = sh[0];
      for (int i = 1; i < nb; ++i) bm = std::max(bm, sh[i]);
      if (bm > s.m[h]) {
        // New running max: rescale what was accumulated so far (nothing on the first block).
        if (s.l[h] > 0.f) {
          const float alpha = std::exp(s.m[h] - bm);
          s.l[h] *= alpha;
          float* a = s.acc.data() + static_cast<size_t>(h) * d;
          for (int j = 0; j < d; ++j) a[j] *= alpha;
        }
        s.m[h] = bm;
      }
      s.l[h] += mk.exp_shift_sum(sh, nb, s.m[h]);
    }
    RowSource<T> knext = kb;
    if (knext.ids) {
      knext.ids += nb;
    } else {
      knext.begin += nb;
    }
    const int n_next = static_cast<int>(std::min<int64_t>(nb, count - b0 - nb));
    rk.axpy_rows(s.scores.data(), B, g, vb, nb, d, s.acc.data(), d, knext, n_next);
  }
  for (int h = 0; h < g; ++h) {
    // l >= 1 here (the max logit contributes exp(0)); a NaN logit would leave it NaN, as it should.
    const float inv = 1.f / s.l[h];
    const float* a = s.acc.data() + static_cast<size_t>(h) * d;
    float* out = o.row(h);
    for (int j = 0; j < d; ++j) out[j] = a[j] * inv;
    lse[h] = s.m[h] + std::log(s.l[h]);
  }
}

inline AttendScratch& thread_scratch() {
  thread_local AttendScratch scratch;
  return scratch;
}

}  // namespace detail

/// Partial attention of a GQA group of g query heads (q: (g, d) float) over tokens [begin, end)
/// of K, V (n, d) of T = float | half | bfloat16, reading each key once for the whole group.
/// Writes o (g, d) normalised and lse[g] (natural-log, scaled logits q.k*scale). Empty range ->
/// lse = -inf, o = 0. Single-threaded (callers parallelise over ranges, heads or sequences).
template <typename T>
void attend_range(ConstMatrixView<float> q, ConstMatrixView<T> K, ConstMatrixView<T> V,
                  int64_t begin, int64_t end, float scale, MatrixView<float> o, float* lse) {
  detail::check_attend_shapes(q, K, V, scale, o, lse);
  RETROKV_CHECK(begin >= 0 && begin <= end && end <= K.rows, "begin, end: expected 0 <= begin (",
                begin, ") <= end (", end, ") <= n (", K.rows, ")");
  detail::attend_rows<T>(q, RowSource<T>{K.data, K.ld, nullptr, begin},
                         RowSource<T>{V.data, V.ld, nullptr, begin}, end - begin, scale, o, lse,
                         detail::thread_scratch());
}

/// Same over a list of token ids (duplicates allowed = counted twice; ids checked in [0, n)).
/// o (g, d) normalised, lse[g] natural-log; an empty list gives lse = -inf, o = 0.
template <typename T>
void attend_ids(ConstMatrixView<float> q, ConstMatrixView<T> K, ConstMatrixView<T> V,
                const int32_t* ids, int64_t n_ids, float scale, MatrixView<float> o, float* lse) {
  detail::check_attend_shapes(q, K, V, scale, o, lse);
  RETROKV_CHECK(n_ids >= 0, "n_ids: expected >= 0, got ", n_ids);
  RETROKV_CHECK(ids != nullptr || n_ids == 0, "ids: null pointer for n_ids = ", n_ids);
  for (int64_t i = 0; i < n_ids; ++i) {
    RETROKV_CHECK(ids[i] >= 0 && ids[i] < K.rows, "ids: expected token ids in [0, ", K.rows,
                  "), got ", ids[i], " at index ", i);
  }
  detail::attend_rows<T>(q, RowSource<T>{K.data, K.ld, ids, 0}, RowSource<T>{V.data, V.ld, ids, 0},
                         n_ids, scale, o, lse, detail::thread_scratch());
}

/// Chunk length attend_full uses for n tokens when the caller passes 0: a function of n only (so
/// results do not depend on the thread count), large enough to amortise the merge, small enough
/// to give every core several chunks at long contexts.
inline int64_t default_attend_chunk(int64_t n) {
  return std::clamp<int64_t>((n + 63) / 64, 1024, 8192);
}

/// Exact full-context attention of a GQA group q (g, d) over all n tokens of K, V (n, d), by
/// split-KV: the context is cut into chunks of `chunk` tokens (0 picks default_attend_chunk(n))
/// processed in parallel (OpenMP), whose (o, lse) states are LSE-merged in chunk order, so the
/// result is deterministic for any thread count. Writes o (g, d) and natural-log lse[g].
template <typename T>
void attend_full(ConstMatrixView<float> q, ConstMatrixView<T> K, ConstMatrixView<T> V, float scale,
                 MatrixView<float> o, float* lse, int64_t chunk = 0) {
  detail::check_attend_shapes(q, K, V, scale, o, lse);
  RETROKV_CHECK(chunk >= 0, "chunk: expected >= 0 (0 = automatic), got ", chunk);
  const int64_t n = K.rows;
  if (chunk == 0) chunk = default_attend_chunk(n);
  const int64_t n_chunks = n == 0 ? 0 : (n + chunk - 1) / chunk;
  if (n_chunks <= 1) {
    attend_range<T>(q, K, V, 0, n, scale, o, lse);
    return;
  }
  const int64_t g = q.rows, d = q.cols;
  // Partial states laid out (g, n_chunks, d) so each head's merge reads contiguous rows.
  std::vector<float> part_o(static_cast<size_t>(g * n_chunks * d));
  std::vector<float> part_lse(static_cast<size_t>(g * n_chunks));
  parallel_for_chunks(n, chunk, [&](int64_t c, int64_t begin, int64_t end) {
    std::vector<float> co(static_cast<size_t>(g * d)), cl(static_cast<size_t>(g));
    detail::attend_rows<T>(q, RowSource<T>{K.data, K.ld, nullptr, begin},
                           RowSource<T>{V.data, V.ld, nullptr, begin}, end - begin, scale,
                           MatrixView<float>(co.data(), g, d), cl.data(), detail::thread_scratch());
    for (int64_t h = 0; h < g; ++h) {
      std::copy(co.begin() + h * d, co.begin() + (h + 1) * d,
                part_o.begin() + (h * n_chunks + c) * d);
      part_lse[h * n_chunks + c] = cl[h];
    }
  });
  for (int64_t h = 0; h < g; ++h) {
    lse[h] = merge_states_n(part_o.data() + h * n_chunks * d, part_lse.data() + h * n_chunks,
                            static_cast<int>(n_chunks), static_cast<int>(d), o.row(h));
  }
}

/// Inner products (unscaled) of g queries q (g, d) with key rows [begin, end) of K (n, d):
/// scores (g, end - begin) row-major. Parallel over blocks of rows for long ranges.
template <typename T>
void dot_scan(ConstMatrixView<float> q, ConstMatrixView<T> K, int64_t begin, int64_t end,
              float* scores) {
  RETROKV_CHECK(q.rows >= 1, "q: expected at least one query (g, d), got ", q.rows, " rows");
  RETROKV_CHECK(K.cols == q.cols, "K: expected ", q.cols, " columns (as q), got ", K.cols);
  RETROKV_CHECK(q.cols <= std::numeric_limits<int>::max(), "q: d too large: ", q.cols);
  RETROKV_CHECK(begin >= 0 && begin <= end && end <= K.rows, "begin, end: expected 0 <= begin (",
                begin, ") <= end (", end, ") <= n (", K.rows, ")");
  RETROKV_CHECK(scores != nullptr || begin == end, "scores: null pointer");
  for (int64_t h = 0; h < q.rows; ++h) {
    for (int64_t j = 0; j < q.cols; ++j) {
      RETROKV_CHECK(std::isfinite(q(h, j)), "q: expected finite values, got ", q(h, j), " at (", h,
                    ", ", j, ")");
    }
  }
  const int64_t len = end - begin;
  const int g = static_cast<int>(q.rows), d = static_cast<int>(q.cols);
  const RowKernels<T> rk = row_kernels<T>();
  // Blocks of 1024 rows (<= int), 64K+ rows per parallel task.
  parallel_for(len, 65536, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i += 1024) {
      const int nb = static_cast<int>(std::min<int64_t>(1024, e - i));
      const RowSource<T> rows{K.data, K.ld, nullptr, begin + i};
      rk.dot_rows(q.data, q.ld, g, rows, nb, d, scores + i, len, rows, 0);
    }
  });
}

}  // namespace retrokv::cpu
