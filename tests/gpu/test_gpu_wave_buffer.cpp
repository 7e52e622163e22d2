// The wave buffer on a device (issue 6): pages of cached and missed clusters give the same
// attention as the double reference over the selected clusters' tokens, repeated selections hit
// the cache, a captured CUDA graph of the gather attention replays correctly across steps whose
// page tables change in place, and running out of GPU memory names the sizes. Skips without a
// device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "retrokv/core/half.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/device.h"
#include "retrokv/cuda/graph.h"
#include "retrokv/cuda/memory.h"
#include "retrokv/cuda/wave_buffer.h"

namespace retrokv::cuda {
namespace {

constexpr int kD = 128;
constexpr int kNq = 8;
constexpr int kNkv = 2;  // two lists: clusters [0, 100) and [100, 200)

class WaveBufferGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
    std::mt19937 rng(std::random_device{}());
    rng_ = rng;
    std::normal_distribution<float> nd(0.f, 1.f);
    offsets_ = {0};
    for (int c = 0; c < 200; ++c) offsets_.push_back(offsets_.back() + 1 + rng_() % 40);
    const int64_t n = offsets_.back();
    K_.resize(static_cast<size_t>(n) * kD);
    V_.resize(K_.size());
    for (auto& x : K_) x = bfloat16(nd(rng_));
    for (auto& x : V_) x = bfloat16(nd(rng_));
  }

  std::vector<std::vector<int32_t>> pick(int per_list) {
    std::vector<std::vector<int32_t>> sel(kNkv);
    for (int l = 0; l < kNkv; ++l) {
      std::vector<int32_t> all(100);
      std::iota(all.begin(), all.end(), l * 100);
      std::shuffle(all.begin(), all.end(), rng_);
      sel[l].assign(all.begin(), all.begin() + per_list);
    }
    return sel;
  }

  std::vector<float> random_q() {
    std::normal_distribution<float> nd(0.f, 2.f);
    std::vector<float> q(static_cast<size_t>(kNq) * kD);
    for (auto& x : q) x = nd(rng_);
    return q;
  }

  // Compares (o, lse) of every query head with the reference over the selected clusters' tokens.
  void expect_matches(const std::vector<float>& q, const std::vector<std::vector<int32_t>>& sel,
                      const DeviceBuffer& o, const DeviceBuffer& lse) {
    std::vector<float> go(static_cast<size_t>(kNq) * kD), gl(kNq);
    o.copy_to_host(go.data(), go.size() * 4);
    lse.copy_to_host(gl.data(), gl.size() * 4);
    ConstMatrixView<bfloat16> Kv(K_.data(), offsets_.back(), kD),
        Vv(V_.data(), offsets_.back(), kD);
    const float scale = 1.f / std::sqrt(static_cast<float>(kD));
    for (int hq = 0; hq < kNq; ++hq) {
      std::vector<int32_t> ids;
      for (int32_t c : sel[hq / (kNq / kNkv)])
        for (int64_t t = offsets_[c]; t < offsets_[c + 1]; ++t)
          ids.push_back(static_cast<int32_t>(t));
      const auto ref =
          reference_attention_double<bfloat16>(&q[static_cast<size_t>(hq) * kD], Kv, Vv, scale,
                                               ids.data(), static_cast<int64_t>(ids.size()));
      double num = 0, den = 0;
      for (int j = 0; j < kD; ++j) {
        ASSERT_FALSE(std::isnan(go[hq * kD + j]));
        num += (go[hq * kD + j] - ref.o[j]) * (go[hq * kD + j] - ref.o[j]);
        den += ref.o[j] * ref.o[j];
      }
      EXPECT_LE(std::sqrt(num / den), 1e-3) << "head " << hq;
      EXPECT_NEAR(gl[hq], ref.lse, 1e-3 * std::max(1.0, std::abs(ref.lse))) << "head " << hq;
    }
  }

  std::mt19937 rng_;
  std::vector<int64_t> offsets_;
  std::vector<bfloat16> K_, V_;
};

TEST_F(WaveBufferGpu, StepsMatchTheReferenceAndRepeatedSelectionsHit) {
  WaveBufferConfig cfg;
  cfg.head_dim = kD;
  cfg.page_size = 16;
  cfg.capacity_pages = 60;  // too small for one step's selection: some misses go to staging
  cfg.max_step_pages = 200;
  cfg.n_lists = kNkv;
  WaveBuffer wb(cfg, K_.data(), V_.data(), offsets_);
  DeviceBuffer dq(static_cast<size_t>(kNq) * kD * 4), o(static_cast<size_t>(kNq) * kD * 4),
      lse(kNq * 4);
  const auto sel1 = pick(12);
  for (int step = 0; step < 3; ++step) {
    const auto sel = step < 2 ? sel1 : pick(12);
    const auto q = random_q();
    dq.copy_from_host(q.data(), q.size() * 4);
    o.fill_bytes(0xFF);
    lse.fill_bytes(0xFF);
    synchronize();  // the fills run on the default stream
    const int64_t pages = wb.prepare_step(sel);
    ASSERT_GT(pages, 0);
    const DecodePlan plan =
        plan_paged_decode(1, kNq, kNkv, kD, wb.max_list_pages(), 16, multiprocessor_count());
    DeviceBuffer ws(plan.workspace_bytes);
    check_status(
        paged_decode_attention(dq.as<float>(), wb.paged_kv(), plan, 1.f / std::sqrt(float(kD)),
                               ws.data(), o.as<float>(), lse.as<float>()),
        "paged_decode_attention");
    synchronize();
    expect_matches(q, sel, o, lse);
    if (step == 1) {
      // Every cluster the first step admitted is a hit now.
      const auto& s = wb.policy().stats();
      EXPECT_EQ(s.hits, s.admitted) << "hits " << s.hits << " admitted " << s.admitted;
      EXPECT_GT(s.hits, 0);
    }
  }
}

TEST_F(WaveBufferGpu, CapturedGraphReplaysStepsWithChangingPageTables) {
  WaveBufferConfig cfg;
  cfg.head_dim = kD;
  cfg.page_size = 8;
  cfg.capacity_fraction = 0.2;
  cfg.max_step_pages = 400;
  cfg.n_lists = kNkv;
  WaveBuffer wb(cfg, K_.data(), V_.data(), offsets_);
  CudaStream stream, copy;
  // The plan depends only on the fixed bound, so one capture serves every step.
  const DecodePlan plan =
      plan_paged_decode(1, kNq, kNkv, kD, wb.max_step_pages(), 8, multiprocessor_count());
  DeviceBuffer ws(plan.workspace_bytes), dq(static_cast<size_t>(kNq) * kD * 4),
      o(static_cast<size_t>(kNq) * kD * 4), lse(kNq * 4);
  CudaGraph graph;
  graph.begin_capture(stream.get());
  check_status(
      paged_decode_attention(dq.as<float>(), wb.paged_kv(), plan, 1.f / std::sqrt(float(kD)),
                             ws.data(), o.as<float>(), lse.as<float>(), stream.get()),
      "paged_decode_attention (capture)");
  graph.end_capture(stream.get());
  ASSERT_TRUE(graph.ready());
  for (int step = 0; step < 4; ++step) {
    const auto sel = pick(8 + step);
    const auto q = random_q();
    dq.copy_from_host(q.data(), q.size() * 4);
    o.fill_bytes(0xFF);
    lse.fill_bytes(0xFF);
    synchronize();  // the fills run on the default stream
    // Misses cross PCIe on the copy stream; the compute stream waits on the device only.
    wb.prepare_step(sel, copy.get());
    wb.wait_ready(stream.get());
    graph.launch(stream.get());
    wb.release_step(stream.get());
    stream.synchronize();
    expect_matches(q, sel, o, lse);
  }
}

TEST_F(WaveBufferGpu, BadSelectionThrowsAndKeepsTheCache) {
  WaveBufferConfig cfg;
  cfg.head_dim = kD;
  cfg.capacity_pages = 100;
  cfg.max_step_pages = 8;
  cfg.n_lists = kNkv;
  WaveBuffer wb(cfg, K_.data(), V_.data(), offsets_);
  EXPECT_THROW(wb.prepare_step({{0}, {1000}}), Error);  // id out of range
  EXPECT_THROW(wb.prepare_step({{0}}), Error);          // wrong number of lists
  std::vector<std::vector<int32_t>> many = {{}, {}};
  for (int c = 0; c < 50; ++c) many[0].push_back(c);
  EXPECT_THROW(wb.prepare_step(many), Error);  // more pages than max_step_pages
  EXPECT_EQ(wb.policy().stats().steps, 0);
}

TEST_F(WaveBufferGpu, OutOfMemoryNamesTheSizeAskedAndFree) {
  WaveBufferConfig cfg;
  cfg.head_dim = kD;
  cfg.max_step_pages = int64_t{1} << 40;
  cfg.n_lists = kNkv;
  try {
    WaveBuffer wb(cfg, K_.data(), V_.data(), offsets_);
    FAIL() << "allocated an impossible pool";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("asked for"), std::string::npos) << msg;
    EXPECT_NE(msg.find("free"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace retrokv::cuda
