// The partial attention state (o, lse) and its log-sum-exp merge (DESIGN.md section 1).
// `o[d]` is the normalised weighted sum of values over a token subset; `lse` is the NATURAL-log
// log-sum-exp of the scaled logits q.k*scale over that subset. Empty subset: lse = -inf, o = 0.
// The merge is associative and commutative; two empty states merge to an empty state, never NaN.
// Written once for host and device (RETROKV_HOST_DEVICE), as FlashInfer's state_t merge.
#pragma once

#include <cmath>
#include <vector>

#include "retrokv/core/config.h"

namespace retrokv {

inline constexpr float kLn2 = 0.69314718055994530942f;
inline constexpr float kLog2e = 1.44269504088896340736f;

/// Natural-log LSE -> base-2 LSE (FlashInfer's convention). -inf stays -inf.
RETROKV_HOST_DEVICE float lse_to_base2(float lse_natural) { return lse_natural * kLog2e; }
/// Base-2 LSE (FlashInfer) -> natural-log LSE (retrokv, FlashAttention). -inf stays -inf.
RETROKV_HOST_DEVICE float lse_from_base2(float lse_base2) { return lse_base2 * kLn2; }

/// Weights of two states in their merge: w_a = exp(lse_a - m), w_b = exp(lse_b - m) with
/// m = max(lse_a, lse_b); returns the merged natural-log LSE. Both empty: weights 0, -inf.
RETROKV_HOST_DEVICE float merge_weights(float lse_a, float lse_b, float* w_a, float* w_b) {
  const float m = lse_a > lse_b ? lse_a : lse_b;
  if (m == -INFINITY) {  // guards (-inf) - (-inf) = NaN
    *w_a = 0.f;
    *w_b = 0.f;
    return -INFINITY;
  }
  *w_a = ::expf(lse_a - m);
  *w_b = ::expf(lse_b - m);
  return m + ::logf(*w_a + *w_b);
}

/// Non-owning state: `o` points at d floats; `lse` is natural-log.
struct AttentionStateRef {
  const float* o;
  float lse;
};

/// Merges a and b into out[d] (out may alias a.o or b.o); returns the merged natural-log LSE.
RETROKV_HOST_DEVICE float merge_states(AttentionStateRef a, AttentionStateRef b, float* out,
                                       int d) {
  float w_a, w_b;
  const float lse = merge_weights(a.lse, b.lse, &w_a, &w_b);
  const float sum = w_a + w_b;
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  for (int i = 0; i < d; ++i) out[i] = (w_a * a.o[i] + w_b * b.o[i]) * inv;
  return lse;
}

/// Merges n states, o: (n, d) row-major, lse: (n) natural-log, into out[d]; returns the LSE.
/// One pass for the max, one for the weights: no intermediate rescaling.
RETROKV_HOST_DEVICE float merge_states_n(const float* o, const float* lse, int n, int d,
                                         float* out) {
  float m = -INFINITY;
  for (int i = 0; i < n; ++i) m = lse[i] > m ? lse[i] : m;
  for (int j = 0; j < d; ++j) out[j] = 0.f;
  if (m == -INFINITY) return -INFINITY;
  float sum = 0.f;
  for (int i = 0; i < n; ++i) {
    const float w = ::expf(lse[i] - m);
    if (w == 0.f) continue;
    sum += w;
    for (int j = 0; j < d; ++j) out[j] += w * o[i * d + j];
  }
  const float inv = 1.f / sum;
  for (int j = 0; j < d; ++j) out[j] *= inv;
  return m + ::logf(sum);
}

/// Owning state (host only), empty by default.
struct AttentionState {
  std::vector<float> o;
  float lse = -INFINITY;

  AttentionState() = default;
  explicit AttentionState(int d) : o(static_cast<size_t>(d), 0.f) {}
  static AttentionState empty(int d) { return AttentionState(d); }
  int dim() const { return static_cast<int>(o.size()); }
  bool is_empty() const { return lse == -INFINITY; }
  AttentionStateRef ref() const { return {o.data(), lse}; }
  /// this <- merge(this, other). Dimensions must match (checked by the caller's shapes).
  void merge(const AttentionState& other) {
    if (o.empty()) o.assign(other.o.size(), 0.f);
    lse = merge_states(ref(), other.ref(), o.data(), dim());
  }
};

/// Merges a list of host states (all of dimension d) into one.
inline AttentionState merge_all(const std::vector<AttentionState>& states, int d) {
  AttentionState out(d);
  for (const auto& s : states) out.merge(s);
  return out;
}

}  // namespace retrokv
