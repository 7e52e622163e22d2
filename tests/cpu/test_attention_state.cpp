// The attention-state merge: exact with empty states, never NaN, order-independent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/error.h"
#include "retrokv/cuda/device.h"

namespace retrokv {
namespace {

TEST(AttentionState, EmptyMergesAreExactAndNeverNaN) {
  const int d = 8;
  AttentionState empty_a(d), empty_b(d);
  AttentionState both = empty_a;
  both.merge(empty_b);
  EXPECT_EQ(both.lse, -INFINITY);
  for (float x : both.o) EXPECT_EQ(x, 0.f);

  AttentionState s(d);
  for (int i = 0; i < d; ++i) s.o[i] = 0.25f * i - 1.f;
  s.lse = 3.5f;
  AttentionState left = empty_a;
  left.merge(s);
  AttentionState right = s;
  right.merge(empty_b);
  for (int i = 0; i < d; ++i) {
    EXPECT_EQ(left.o[i], s.o[i]);
    EXPECT_EQ(right.o[i], s.o[i]);
  }
  EXPECT_EQ(left.lse, s.lse);
  EXPECT_EQ(right.lse, s.lse);
}

TEST(AttentionState, MergeNOfAllEmptyIsEmpty) {
  float o[3 * 4] = {};
  float lse[3] = {-INFINITY, -INFINITY, -INFINITY};
  float out[4] = {1, 2, 3, 4};
  EXPECT_EQ(merge_states_n(o, lse, 3, 4, out), -INFINITY);
  for (float x : out) EXPECT_EQ(x, 0.f);
}

TEST(AttentionState, MergeIsOrderIndependent) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int d = 64, n = 9;
  std::vector<AttentionState> states(n, AttentionState(d));
  for (int i = 0; i < n; ++i) {
    for (auto& x : states[i].o) x = nd(rng);
    states[i].lse = i == 3 ? -INFINITY : 5.f * nd(rng);
  }
  AttentionState ref = merge_all(states, d);
  std::vector<float> flat_o(n * d), flat_lse(n), out(d);
  for (int i = 0; i < n; ++i) {
    std::copy(states[i].o.begin(), states[i].o.end(), flat_o.begin() + i * d);
    flat_lse[i] = states[i].lse;
  }
  const float lse_n = merge_states_n(flat_o.data(), flat_lse.data(), n, d, out.data());
  EXPECT_NEAR(lse_n, ref.lse, 1e-6f * std::max(1.f, std::fabs(ref.lse)));
  for (int j = 0; j < d; ++j) EXPECT_NEAR(out[j], ref.o[j], 1e-6f);
  for (int trial = 0; trial < 10; ++trial) {
    std::shuffle(states.begin(), states.end(), rng);
    AttentionState m = merge_all(states, d);
    EXPECT_NEAR(m.lse, ref.lse, 1e-6f * std::max(1.f, std::fabs(ref.lse)));
    for (int j = 0; j < d; ++j) EXPECT_NEAR(m.o[j], ref.o[j], 1e-6f);
  }
}

TEST(AttentionState, Base2AdaptersRoundTrip) {
  EXPECT_NEAR(lse_to_base2(std::log(8.f)), 3.f, 1e-6f);
  EXPECT_NEAR(lse_from_base2(3.f), std::log(8.f), 1e-6f);
  EXPECT_EQ(lse_to_base2(-INFINITY), -INFINITY);
}

TEST(CudaPart, DeviceCountIsZeroOrMoreAndStubThrows) {
  const int n = cuda::device_count();
  EXPECT_GE(n, 0);
  if (!cuda::built_with_cuda()) {
    EXPECT_EQ(n, 0);
    try {
      cuda::require_device();
      FAIL() << "require_device must throw without CUDA";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace retrokv
