// Per-thread math of the CUDA attention kernels, shared with the host so the CPU tests check it:
// the online softmax of flash-decoding, the wave index's cluster estimate as an attention state
// (RetroInfer section 4, estimation zone) and the strided N-way merge of (o, lse) states.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/config.h"

namespace retrokv::cuda {

/// Running softmax-weighted sum of N value dimensions over a stream of (logit, value) pairs.
/// Logits are BASE-2 (q.k * scale * log2(e)) so kernels use exp2f; lse() returns the NATURAL-log
/// LSE. Empty: m = -inf, l = 0, o = 0. A -inf logit is a no-op (an empty token or cluster).
template <int N>
struct OnlineSoftmax {
  float m;     // running max of the base-2 logits
  float l;     // sum of exp2(logit - m)
  float o[N];  // unnormalised sum of exp2(logit - m) * value

  RETROKV_HOST_DEVICE void init() {
    m = -INFINITY;
    l = 0.f;
    for (int i = 0; i < N; ++i) o[i] = 0.f;
  }

  /// Adds one token: base-2 logit, value v[N] multiplied by v_scale.
  RETROKV_HOST_DEVICE void push(float logit2, const float* v, float v_scale) {
    if (logit2 == -INFINITY) return;
    const float m_new = fmaxf(m, logit2);
    const float a = exp2f(m - m_new);  // m == -inf gives 0, never NaN (m_new is finite)
    const float p = exp2f(logit2 - m_new);
    const float b = p * v_scale;
    l = l * a + p;
    for (int i = 0; i < N; ++i) o[i] = o[i] * a + b * v[i];
    m = m_new;
  }

  /// this <- this + (m2, l2, o2), another partial sum in the same base-2 form.
  RETROKV_HOST_DEVICE void merge(float m2, float l2, const float* o2) {
    const float m_new = fmaxf(m, m2);
    if (m_new == -INFINITY) return;  // both empty: (-inf) - (-inf) must not be formed
    const float a = exp2f(m - m_new);
    const float b = exp2f(m2 - m_new);
    l = l * a + l2 * b;
    for (int i = 0; i < N; ++i) o[i] = o[i] * a + o2[i] * b;
    m = m_new;
  }

  /// Natural-log LSE of the scaled logits seen so far; -inf when empty.
  RETROKV_HOST_DEVICE float lse() const { return l > 0.f ? (m + log2f(l)) * kLn2 : -INFINITY; }

  /// Normalised output o / l (0 when empty, never NaN).
  RETROKV_HOST_DEVICE void normalized(float* out) const {
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int i = 0; i < N; ++i) out[i] = o[i] * inv;
  }
};

/// Estimation zone of the wave index: a cluster of `size` keys with centroid c and value sum VS
/// stands for `size` tokens whose logit is q.c*scale. Its share of the estimate,
/// Z_E += size * exp(q.c*scale) and numerator += exp(q.c*scale) * VS, is exactly the attention
/// state lse_i = q.c*scale + log(size) (natural log), o_i = VS / size. Merging those states over
/// the estimation clusters gives o_E = sum exp(q.c_i*scale) VS_i / Z_E and lse_E = log Z_E.
/// The kernels add this base-2 bias to the base-2 logit; size 0 gives -inf (contributes nothing).
RETROKV_HOST_DEVICE float cluster_logit_bias_log2(float size) {
  return size > 0.f ? log2f(size) : -INFINITY;
}
/// The value scale 1/size that turns a value sum into the cluster's mean value (0 for size 0).
RETROKV_HOST_DEVICE float cluster_value_scale(float size) { return size > 0.f ? 1.f / size : 0.f; }

/// One element of the merge of n states: o_j at o[i * o_stride] for state i, natural-log lse at
/// lse[i * lse_stride]. Returns the merged o_j; *lse_out gets the merged natural-log LSE.
/// Sequential pairwise merge with retrokv::merge_weights, so empty states never give NaN.
RETROKV_HOST_DEVICE float merge_strided_element(const float* o, int64_t o_stride, const float* lse,
                                                int64_t lse_stride, int n, float* lse_out) {
  float acc = 0.f;
  float acc_lse = -INFINITY;
  for (int i = 0; i < n; ++i) {
    float w_a, w_b;
    const float merged = merge_weights(acc_lse, lse[i * lse_stride], &w_a, &w_b);
    const float sum = w_a + w_b;
    if (sum > 0.f) acc = (w_a * acc + w_b * o[i * o_stride]) / sum;
    acc_lse = merged;
  }
  *lse_out = acc_lse;
  return acc;
}

/// Order-preserving map of a float to uint32 for radix selection: a < b (as floats, -0 == +0
/// aside) implies key(a) < key(b); -inf maps to 0x007fffff, so key 0 is below every float and
/// serves as padding. NaN sorts above +inf (positive NaN) or below -inf (negative NaN).
RETROKV_HOST_DEVICE uint32_t ordered_float_key(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}

}  // namespace retrokv::cuda
