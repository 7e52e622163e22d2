// One whole wave-index decode step on the GPU (RetroInfer section 4, DESIGN.md section 4):
// centroid scoring picks the retrieval and estimation zones, the wave buffer pages the retrieved
// clusters in, gather attention covers them exactly, estimation covers the next zone, and the
// two states merge. Checked against the same three-zone computation in double on the CPU over
// the zones the GPU chose (the zone choice itself is checked in test_gpu_attention). Skips
// without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "retrokv/core/half.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/device.h"
#include "retrokv/cuda/memory.h"
#include "retrokv/cuda/scoring.h"
#include "retrokv/cuda/wave_buffer.h"

namespace retrokv::cuda {
namespace {

template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  DeviceBuffer b(std::max<size_t>(v.size() * sizeof(T), 16));
  b.copy_from_host(v.data(), v.size() * sizeof(T));
  return b;
}

TEST(GpuWaveStep, ScoringEstimationGatherAndMergeMatchTheThreeZoneReference) {
  if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> nd(0.f, 1.f);
  constexpr int d = 128, n_kv = 2, n_q = 8, group = n_q / n_kv, C = 400, r = 8, e = 60;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  // Clusters of 1..31 consecutive tokens per KV head; cluster ids are global: list h owns
  // [h*C, (h+1)*C), and the host KV is cluster-contiguous over all lists.
  std::vector<int64_t> offsets = {0};
  for (int c = 0; c < n_kv * C; ++c) offsets.push_back(offsets.back() + 1 + rng() % 31);
  const int64_t n_tok = offsets.back();
  std::vector<bfloat16> K(static_cast<size_t>(n_tok) * d), V(K.size());
  // Keys share a per-cluster direction so centroids are informative.
  for (int c = 0; c < n_kv * C; ++c) {
    std::vector<float> dir(d);
    for (auto& x : dir) x = 1.5f * nd(rng);
    for (int64_t t = offsets[c]; t < offsets[c + 1]; ++t)
      for (int j = 0; j < d; ++j) {
        K[t * d + j] = bfloat16(dir[j] + 0.5f * nd(rng));
        V[t * d + j] = bfloat16(nd(rng));
      }
  }
  std::vector<float> cent(static_cast<size_t>(n_kv) * C * d, 0.f), vsum(cent.size(), 0.f);
  std::vector<int32_t> size(n_kv * C);
  for (int c = 0; c < n_kv * C; ++c) {
    size[c] = static_cast<int32_t>(offsets[c + 1] - offsets[c]);
    for (int64_t t = offsets[c]; t < offsets[c + 1]; ++t)
      for (int j = 0; j < d; ++j) {
        cent[c * d + j] += to_float(K[t * d + j]) / size[c];
        vsum[c * d + j] += to_float(V[t * d + j]);
      }
  }
  std::vector<float> q(static_cast<size_t>(n_q) * d);
  for (auto& x : q) x = nd(rng);

  auto dq = upload(q), dc = upload(cent), dvs = upload(vsum), dsz = upload(size);
  auto dci = upload(std::vector<int32_t>{0, C, 2 * C});
  auto dei = upload(std::vector<int32_t>{0, e, 2 * e});
  DeviceBuffer ws(scoring_workspace_bytes(n_q, n_kv, n_kv * C)), scores(n_kv * C * 4),
      rid(n_kv * r * 4), eid(n_kv * e * 4);
  check_status(score_centroids(dq.as<float>(), CentroidSet{dc.as<float>(), dci.as<int32_t>()}, 1,
                               n_q, n_kv, d, C, r, e, scale, ws.data(), scores.as<float>(),
                               rid.as<int32_t>(), eid.as<int32_t>()),
               "score_centroids");
  const int sms = multiprocessor_count();
  DeviceBuffer parts_o(2 * n_q * d * 4), parts_lse(2 * n_q * 4), o(n_q * d * 4), lse(n_q * 4);
  parts_o.fill_bytes(0xFF);
  parts_lse.fill_bytes(0xFF);
  o.fill_bytes(0xFF);
  lse.fill_bytes(0xFF);
  const DecodePlan est_plan = plan_estimation(1, n_q, n_kv, d, e, sms);
  DeviceBuffer est_ws(est_plan.workspace_bytes);
  check_status(estimation_attention(
                   dq.as<float>(),
                   ClusterSummaries{dc.as<float>(), dvs.as<float>(), dsz.as<int32_t>(),
                                    dei.as<int32_t>(), eid.as<int32_t>()},
                   est_plan, scale, est_ws.data(), parts_o.as<float>(), parts_lse.as<float>()),
               "estimation_attention");
  std::vector<int32_t> r_host(n_kv * r), e_host(n_kv * e);
  rid.copy_to_host(r_host.data(), r_host.size() * 4);
  eid.copy_to_host(e_host.data(), e_host.size() * 4);
  std::vector<std::vector<int32_t>> sel(n_kv);
  for (int h = 0; h < n_kv; ++h)
    sel[h].assign(r_host.begin() + h * r, r_host.begin() + (h + 1) * r);

  WaveBufferConfig cfg;
  cfg.head_dim = d;
  cfg.page_size = 16;
  cfg.capacity_pages = 8;  // smaller than a step: exercises cached and staged clusters
  cfg.max_step_pages = 64;
  cfg.n_lists = n_kv;
  WaveBuffer wb(cfg, K.data(), V.data(), offsets);
  wb.prepare_step(sel);
  const DecodePlan gather_plan = plan_paged_decode(1, n_q, n_kv, d, wb.max_list_pages(), 16, sms);
  DeviceBuffer g_ws(gather_plan.workspace_bytes);
  check_status(
      paged_decode_attention(dq.as<float>(), wb.paged_kv(), gather_plan, scale, g_ws.data(),
                             parts_o.as<float>() + n_q * d, parts_lse.as<float>() + n_q),
      "paged_decode_attention");
  check_status(merge_states(parts_o.as<float>(), parts_lse.as<float>(), 2, n_q, d, o.as<float>(),
                            lse.as<float>()),
               "merge_states");
  synchronize();
  std::vector<float> go(n_q * d), gl(n_q);
  o.copy_to_host(go.data(), go.size() * 4);
  lse.copy_to_host(gl.data(), gl.size() * 4);

  ConstMatrixView<bfloat16> Kv(K.data(), n_tok, d), Vv(V.data(), n_tok, d);
  for (int hq = 0; hq < n_q; ++hq) {
    const int h = hq / group;
    const float* qh = &q[static_cast<size_t>(hq) * d];
    std::vector<int32_t> ids;
    for (int i = 0; i < r; ++i) {
      const int32_t c = r_host[h * r + i];
      ASSERT_GE(c, h * C);
      ASSERT_LT(c, (h + 1) * C);
      for (int64_t t = offsets[c]; t < offsets[c + 1]; ++t) ids.push_back(static_cast<int32_t>(t));
    }
    const auto exact = reference_attention_double<bfloat16>(qh, Kv, Vv, scale, ids.data(),
                                                            static_cast<int64_t>(ids.size()));
    // Estimation zone in double: Z_E = sum s_i exp(q.c_i*scale), numerator sum exp(.) VS_i.
    double m = -INFINITY;
    std::vector<double> logit(e);
    for (int i = 0; i < e; ++i) {
      const int32_t c = e_host[h * e + i];
      ASSERT_GE(c, h * C);
      double dot = 0;
      for (int j = 0; j < d; ++j) dot += static_cast<double>(qh[j]) * cent[c * d + j];
      logit[i] = dot * scale;
      m = std::max(m, logit[i]);
    }
    double z = 0;
    std::vector<double> num(d, 0.0);
    for (int i = 0; i < e; ++i) {
      const int32_t c = e_host[h * e + i];
      const double w = std::exp(logit[i] - m);
      z += size[c] * w;
      for (int j = 0; j < d; ++j) num[j] += w * vsum[c * d + j];
    }
    const double lse_e = m + std::log(z);
    // Merge exact and estimate in double.
    const double mm = std::max(exact.lse, lse_e);
    const double wa = std::exp(exact.lse - mm), wb_ = std::exp(lse_e - mm);
    double err = 0, den = 0;
    for (int j = 0; j < d; ++j) {
      const double ref = (wa * exact.o[j] + wb_ * num[j] / z) / (wa + wb_);
      ASSERT_FALSE(std::isnan(go[hq * d + j]));
      err += (go[hq * d + j] - ref) * (go[hq * d + j] - ref);
      den += ref * ref;
    }
    EXPECT_LE(std::sqrt(err / den), 1e-3) << "head " << hq;
    const double ref_lse = mm + std::log(wa + wb_);
    EXPECT_NEAR(gl[hq], ref_lse, 1e-3 * std::max(1.0, std::abs(ref_lse))) << "head " << hq;
  }
}

}  // namespace
}  // namespace retrokv::cuda
