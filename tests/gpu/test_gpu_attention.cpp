// GPU attention kernels against the double CPU reference (issue 6, "Evidence"): split-KV decode
// over ragged KV, gather attention over a page table, estimation over clusters, the N-way merge
// and centroid scoring. Fresh random inputs each run, outputs poisoned with NaN first, rel. error
// <= 1e-3 for fp16/bf16 KV. Skips when no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "retrokv/core/half.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/device.h"
#include "retrokv/cuda/memory.h"
#include "retrokv/cuda/scoring.h"

namespace retrokv::cuda {
namespace {

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

uint32_t fresh_seed() { return std::random_device{}(); }

template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  DeviceBuffer b(std::max<size_t>(v.size() * sizeof(T), 16));
  b.copy_from_host(v.data(), v.size() * sizeof(T));
  return b;
}

template <typename T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  b.copy_to_host(v.data(), n * sizeof(T));
  return v;
}

DeviceBuffer poisoned(size_t bytes) {
  DeviceBuffer b(std::max<size_t>(bytes, 16));
  b.fill_bytes(0xFF);  // every float reads NaN until the kernel writes it
  return b;
}

double rel_err(const float* a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

void expect_state(const float* o, float lse, const ReferenceAttention& ref,
                  const std::string& what) {
  if (ref.lse == -INFINITY) {
    EXPECT_EQ(lse, -INFINITY) << what;
    for (size_t j = 0; j < ref.o.size(); ++j) EXPECT_EQ(o[j], 0.f) << what;
    return;
  }
  EXPECT_LE(rel_err(o, ref.o), 1e-3) << what;
  EXPECT_NEAR(lse, ref.lse, 1e-3 * std::max(1.0, std::abs(ref.lse))) << what;
}

template <typename T>
constexpr DType dtype_v = dtype_of<T>::value;

// ---------------------------------------------------------------- ragged decode
template <typename T>
void run_ragged(int d, int n_q, int n_kv, std::vector<int32_t> lens) {
  std::mt19937 rng(fresh_seed());
  std::normal_distribution<float> nd(0.f, 1.f);
  const int batch = static_cast<int>(lens.size());
  std::vector<int32_t> indptr = {0};
  for (int32_t n : lens) indptr.push_back(indptr.back() + n);
  const int64_t total = indptr.back();
  std::vector<T> K(static_cast<size_t>(total) * n_kv * d), V(K.size());
  for (auto& x : K) x = T(nd(rng));
  for (auto& x : V) x = T(nd(rng));
  std::vector<float> q(static_cast<size_t>(batch) * n_q * d);
  for (auto& x : q) x = 2.f * nd(rng);
  const float scale = 1.f / std::sqrt(static_cast<float>(d));

  auto dK = upload(K), dV = upload(V), dI = upload(indptr), dq = upload(q);
  const int64_t max_len = *std::max_element(lens.begin(), lens.end());
  const DecodePlan plan = plan_ragged_decode(batch, n_q, n_kv, d, max_len, multiprocessor_count());
  DeviceBuffer ws(plan.workspace_bytes);
  auto dO = poisoned(q.size() * sizeof(float));
  auto dL = poisoned(static_cast<size_t>(batch) * n_q * sizeof(float));
  RaggedKV kv{dK.data(), dV.data(), dtype_v<T>, dI.as<int32_t>(), static_cast<int64_t>(n_kv) * d,
              d};
  check_status(
      decode_attention(dq.as<float>(), kv, plan, scale, ws.data(), dO.as<float>(), dL.as<float>()),
      "decode_attention");
  synchronize();
  const auto o = download<float>(dO, q.size());
  const auto lse = download<float>(dL, static_cast<size_t>(batch) * n_q);
  const int group = n_q / n_kv;
  for (int b = 0; b < batch; ++b) {
    for (int hq = 0; hq < n_q; ++hq) {
      const int h = hq / group;
      ConstMatrixView<T> Kb(K.data() + (static_cast<size_t>(indptr[b]) * n_kv + h) * d, lens[b], d,
                            static_cast<int64_t>(n_kv) * d);
      ConstMatrixView<T> Vb(V.data() + (static_cast<size_t>(indptr[b]) * n_kv + h) * d, lens[b], d,
                            static_cast<int64_t>(n_kv) * d);
      const int row = b * n_q + hq;
      const auto ref =
          reference_attention_double<T>(&q[static_cast<size_t>(row) * d], Kb, Vb, scale);
      expect_state(&o[static_cast<size_t>(row) * d], lse[row], ref,
                   "seq " + std::to_string(b) + " head " + std::to_string(hq));
    }
  }
}

TEST_F(Gpu, RaggedDecodeHalfD128Gqa4) { run_ragged<half>(128, 8, 2, {1, 5000, 777, 0}); }
TEST_F(Gpu, RaggedDecodeBf16D128Gqa4) { run_ragged<bfloat16>(128, 8, 2, {4099, 31, 2048}); }
TEST_F(Gpu, RaggedDecodeHalfD64Gqa8) { run_ragged<half>(64, 16, 2, {3000, 129}); }
TEST_F(Gpu, RaggedDecodeBf16D64Mha) { run_ragged<bfloat16>(64, 3, 3, {257, 1}); }
TEST_F(Gpu, RaggedDecodeHalfD128Gqa12ChunksTheGroup) { run_ragged<half>(128, 12, 1, {1500}); }

// ---------------------------------------------------------------- paged (gather) decode
template <typename T>
void run_paged(int d, int ps, int n_q, int n_kv, int batch) {
  std::mt19937 rng(fresh_seed());
  std::normal_distribution<float> nd(0.f, 1.f);
  const int n_pages = 600;
  std::vector<T> Kp(static_cast<size_t>(n_pages) * ps * d), Vp(Kp.size());
  for (auto& x : Kp) x = T(nd(rng));
  for (auto& x : Vp) x = T(nd(rng));
  // Each list: random pages of the pool (a steady zone + clusters), partial page lengths.
  std::vector<int32_t> indptr = {0}, idx, plen;
  std::vector<std::vector<int32_t>> tokens;  // token rows of the pool per list
  for (int l = 0; l < batch * n_kv; ++l) {
    const int np = static_cast<int>(rng() % 200);
    tokens.emplace_back();
    for (int i = 0; i < np; ++i) {
      const int32_t page = static_cast<int32_t>(rng() % n_pages);
      const int32_t len = 1 + static_cast<int32_t>(rng() % ps);
      idx.push_back(page);
      plen.push_back(len);
      for (int s = 0; s < len; ++s) tokens.back().push_back(page * ps + s);
    }
    indptr.push_back(static_cast<int32_t>(idx.size()));
  }
  int64_t max_pages = 0;
  for (int l = 0; l < batch * n_kv; ++l)
    max_pages = std::max<int64_t>(max_pages, indptr[l + 1] - indptr[l]);
  std::vector<float> q(static_cast<size_t>(batch) * n_q * d);
  for (auto& x : q) x = 2.f * nd(rng);
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  auto dK = upload(Kp), dV = upload(Vp), dI = upload(indptr), dX = upload(idx), dN = upload(plen),
       dq = upload(q);
  const DecodePlan plan =
      plan_paged_decode(batch, n_q, n_kv, d, max_pages, ps, multiprocessor_count());
  DeviceBuffer ws(plan.workspace_bytes);
  auto dO = poisoned(q.size() * sizeof(float));
  auto dL = poisoned(static_cast<size_t>(batch) * n_q * sizeof(float));
  PagedKV kv{dK.data(),        dV.data(),        dtype_v<T>,      ps,
             dI.as<int32_t>(), dX.as<int32_t>(), dN.as<int32_t>()};
  check_status(paged_decode_attention(dq.as<float>(), kv, plan, scale, ws.data(), dO.as<float>(),
                                      dL.as<float>()),
               "paged_decode_attention");
  synchronize();
  const auto o = download<float>(dO, q.size());
  const auto lse = download<float>(dL, static_cast<size_t>(batch) * n_q);
  ConstMatrixView<T> Kv(Kp.data(), static_cast<int64_t>(n_pages) * ps, d);
  ConstMatrixView<T> Vv(Vp.data(), static_cast<int64_t>(n_pages) * ps, d);
  const int group = n_q / n_kv;
  for (int b = 0; b < batch; ++b) {
    for (int hq = 0; hq < n_q; ++hq) {
      const auto& t = tokens[b * n_kv + hq / group];
      const int row = b * n_q + hq;
      const auto ref =
          reference_attention_double<T>(&q[static_cast<size_t>(row) * d], Kv, Vv, scale, t.data(),
                                        static_cast<int64_t>(t.size()));
      expect_state(&o[static_cast<size_t>(row) * d], lse[row], ref, "row " + std::to_string(row));
    }
  }
}

TEST_F(Gpu, PagedDecodeHalfD128Page16) { run_paged<half>(128, 16, 8, 2, 3); }
TEST_F(Gpu, PagedDecodeBf16D128Page8) { run_paged<bfloat16>(128, 8, 32, 8, 2); }
TEST_F(Gpu, PagedDecodeBf16D64Page16) { run_paged<bfloat16>(64, 16, 9, 3, 2); }

// ---------------------------------------------------------------- estimation
TEST_F(Gpu, EstimationMatchesTheWaveIndexFormula) {
  std::mt19937 rng(fresh_seed());
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int d : {64, 128}) {
    const int n_clusters = 5000, batch = 2, n_kv = 2, n_q = 8, group = 4;
    std::vector<float> c(static_cast<size_t>(n_clusters) * d), vs(c.size());
    std::vector<int32_t> size(n_clusters);
    for (auto& x : c) x = nd(rng);
    for (auto& x : vs) x = 8.f * nd(rng);
    for (auto& s : size) s = static_cast<int32_t>(rng() % 33);  // some empty
    std::vector<int32_t> indptr = {0}, ids;
    for (int l = 0; l < batch * n_kv; ++l) {
      const int take = static_cast<int>(rng() % 2500);
      for (int i = 0; i < take; ++i) ids.push_back(static_cast<int32_t>(rng() % n_clusters));
      indptr.push_back(static_cast<int32_t>(ids.size()));
    }
    int64_t max_c = 0;
    for (int l = 0; l < batch * n_kv; ++l)
      max_c = std::max<int64_t>(max_c, indptr[l + 1] - indptr[l]);
    std::vector<float> q(static_cast<size_t>(batch) * n_q * d);
    for (auto& x : q) x = nd(rng);
    const float scale = 1.f / std::sqrt(static_cast<float>(d));
    auto dC = upload(c), dVS = upload(vs), dS = upload(size), dI = upload(indptr), dX = upload(ids),
         dq = upload(q);
    const DecodePlan plan = plan_estimation(batch, n_q, n_kv, d, max_c, multiprocessor_count());
    DeviceBuffer ws(plan.workspace_bytes);
    auto dO = poisoned(q.size() * sizeof(float));
    auto dL = poisoned(static_cast<size_t>(batch) * n_q * sizeof(float));
    ClusterSummaries cs{dC.as<float>(), dVS.as<float>(), dS.as<int32_t>(), dI.as<int32_t>(),
                        dX.as<int32_t>()};
    check_status(estimation_attention(dq.as<float>(), cs, plan, scale, ws.data(), dO.as<float>(),
                                      dL.as<float>()),
                 "estimation_attention");
    synchronize();
    const auto o = download<float>(dO, q.size());
    const auto lse = download<float>(dL, static_cast<size_t>(batch) * n_q);
    for (int b = 0; b < batch; ++b) {
      for (int hq = 0; hq < n_q; ++hq) {
        const int l = b * n_kv + hq / group;
        const int row = b * n_q + hq;
        double m = -INFINITY;
        std::vector<double> logit;
        for (int e = indptr[l]; e < indptr[l + 1]; ++e) {
          double dot = 0;
          for (int j = 0; j < d; ++j)
            dot += static_cast<double>(q[row * d + j]) * c[ids[e] * d + j];
          logit.push_back(dot * scale);
          if (size[ids[e]] > 0) m = std::max(m, logit.back());
        }
        ReferenceAttention ref;
        ref.o.assign(d, 0.0);
        if (m > -INFINITY) {
          double z = 0;
          for (int e = indptr[l]; e < indptr[l + 1]; ++e) {
            const double w = std::exp(logit[e - indptr[l]] - m);
            z += size[ids[e]] * w;
            if (size[ids[e]] > 0)
              for (int j = 0; j < d; ++j) ref.o[j] += w * vs[ids[e] * d + j];
          }
          for (auto& x : ref.o) x /= z;
          ref.lse = m + std::log(z);
        }
        expect_state(&o[static_cast<size_t>(row) * d], lse[row], ref, "d " + std::to_string(d));
      }
    }
  }
}

// ---------------------------------------------------------------- merge
TEST_F(Gpu, MergeStatesMatchesMergeStatesN) {
  std::mt19937 rng(fresh_seed());
  std::normal_distribution<float> nd(0.f, 3.f);
  const int n_states = 7, rows = 100, d = 128;
  std::vector<float> o(static_cast<size_t>(n_states) * rows * d),
      lse(static_cast<size_t>(n_states) * rows);
  for (auto& x : o) x = nd(rng);
  for (size_t i = 0; i < lse.size(); ++i) lse[i] = (rng() % 5 == 0) ? -INFINITY : nd(rng);
  for (int i = 0; i < n_states; ++i)
    lse[static_cast<size_t>(i) * rows + 3] = -INFINITY;  // row 3 empty
  auto dO = upload(o), dL = upload(lse);
  auto oo = poisoned(static_cast<size_t>(rows) * d * sizeof(float));
  auto ol = poisoned(rows * sizeof(float));
  check_status(merge_states(dO.as<float>(), dL.as<float>(), n_states, rows, d, oo.as<float>(),
                            ol.as<float>()),
               "merge_states");
  synchronize();
  const auto go = download<float>(oo, static_cast<size_t>(rows) * d);
  const auto gl = download<float>(ol, rows);
  for (int r = 0; r < rows; ++r) {
    std::vector<float> so(static_cast<size_t>(n_states) * d), sl(n_states), expect(d);
    for (int i = 0; i < n_states; ++i) {
      sl[i] = lse[static_cast<size_t>(i) * rows + r];
      std::copy_n(&o[(static_cast<size_t>(i) * rows + r) * d], d, &so[static_cast<size_t>(i) * d]);
    }
    const float el = merge_states_n(so.data(), sl.data(), n_states, d, expect.data());
    ReferenceAttention ref;
    ref.o.assign(expect.begin(), expect.end());
    ref.lse = el;
    expect_state(&go[static_cast<size_t>(r) * d], gl[r], ref, "row " + std::to_string(r));
  }
}

// ---------------------------------------------------------------- centroid scoring
TEST_F(Gpu, CentroidScoringSumsGroupSoftmaxAndSelectsTheTopClusters) {
  std::mt19937 rng(fresh_seed());
  std::normal_distribution<float> nd(0.f, 1.f);
  const int d = 128, batch = 2, n_kv = 2, n_q = 8, group = 4, r = 20, e = 200;
  std::vector<int32_t> indptr = {0, 3000, 3150, 3160, 11352};  // one list shorter than r + e
  const int64_t total = indptr.back();
  std::vector<float> c(static_cast<size_t>(total) * d), q(static_cast<size_t>(batch) * n_q * d);
  for (auto& x : c) x = nd(rng);
  for (auto& x : q) x = 3.f * nd(rng);
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  int64_t max_c = 0;
  for (int l = 0; l < batch * n_kv; ++l)
    max_c = std::max<int64_t>(max_c, indptr[l + 1] - indptr[l]);
  auto dC = upload(c), dI = upload(indptr), dq = upload(q);
  DeviceBuffer ws(scoring_workspace_bytes(n_q, n_kv, total));
  auto ds = poisoned(static_cast<size_t>(total) * sizeof(float));
  auto dr = poisoned(static_cast<size_t>(batch) * n_kv * r * sizeof(int32_t));
  auto de = poisoned(static_cast<size_t>(batch) * n_kv * e * sizeof(int32_t));
  check_status(score_centroids(dq.as<float>(), CentroidSet{dC.as<float>(), dI.as<int32_t>()}, batch,
                               n_q, n_kv, d, max_c, r, e, scale, ws.data(), ds.as<float>(),
                               dr.as<int32_t>(), de.as<int32_t>()),
               "score_centroids");
  synchronize();
  const auto gs = download<float>(ds, total);
  const auto rid = download<int32_t>(dr, static_cast<size_t>(batch) * n_kv * r);
  const auto eid = download<int32_t>(de, static_cast<size_t>(batch) * n_kv * e);
  for (int l = 0; l < batch * n_kv; ++l) {
    const int b = l / n_kv, h = l % n_kv;
    const int64_t n = indptr[l + 1] - indptr[l];
    std::vector<double> score(n, 0.0);
    for (int g = 0; g < group; ++g) {
      const float* qg = &q[(static_cast<size_t>(b) * n_q + h * group + g) * d];
      std::vector<double> lg(n);
      double m = -INFINITY, z = 0;
      for (int64_t i = 0; i < n; ++i) {
        double dot = 0;
        for (int j = 0; j < d; ++j) dot += static_cast<double>(qg[j]) * c[(indptr[l] + i) * d + j];
        lg[i] = dot * scale;
        m = std::max(m, lg[i]);
      }
      for (int64_t i = 0; i < n; ++i) z += std::exp(lg[i] - m);
      for (int64_t i = 0; i < n; ++i) score[i] += std::exp(lg[i] - m) / z;
    }
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(gs[indptr[l] + i], score[i], 1e-5 + 1e-3 * score[i]) << "list " << l;
    // Zones: the reference rank of every selected cluster, allowing fp32 near-ties at the edges.
    std::vector<double> sorted = score;
    std::sort(sorted.rbegin(), sorted.rend());
    const int64_t k_a = std::min<int64_t>(r, n), k_b = std::min<int64_t>(r + e, n);
    std::vector<int> seen(n, 0);
    for (int i = 0; i < r; ++i) {
      const int32_t id = rid[static_cast<size_t>(l) * r + i];
      if (i >= k_a) {
        EXPECT_EQ(id, -1);
        continue;
      }
      ASSERT_GE(id, indptr[l]);
      ASSERT_LT(id, indptr[l + 1]);
      if (i > 0) {
        EXPECT_LT(rid[static_cast<size_t>(l) * r + i - 1], id) << "ascending ids";
      }
      EXPECT_GE(score[id - indptr[l]], sorted[k_a - 1] - 1e-5) << "retrieval zone, list " << l;
      ++seen[id - indptr[l]];
    }
    for (int i = 0; i < e; ++i) {
      const int32_t id = eid[static_cast<size_t>(l) * e + i];
      if (i >= k_b - k_a) {
        EXPECT_EQ(id, -1);
        continue;
      }
      ASSERT_GE(id, indptr[l]);
      ASSERT_LT(id, indptr[l + 1]);
      EXPECT_GE(score[id - indptr[l]], sorted[k_b - 1] - 1e-5) << "estimation zone, list " << l;
      EXPECT_LE(score[id - indptr[l]], sorted[k_a > 0 ? k_a - 1 : 0] + 1e-5);
      ++seen[id - indptr[l]];
    }
    for (int64_t i = 0; i < n; ++i) EXPECT_LE(seen[i], 1) << "cluster selected twice";
  }
}

// ---------------------------------------------------------------- errors
TEST_F(Gpu, OutOfMemoryNamesTheSizeAskedAndFree) {
  const size_t huge = size_t{1} << 50;
  try {
    DeviceBuffer b(huge);
    FAIL() << "allocated 1 PiB";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::to_string(huge)), std::string::npos) << msg;
    EXPECT_NE(msg.find("free"), std::string::npos) << msg;
  }
  DeviceBuffer ok(1024);  // the device still works afterwards
  EXPECT_EQ(ok.bytes(), 1024u);
}

TEST_F(Gpu, UnsupportedHeadDimThrowsBeforeLaunching) {
  DeviceBuffer buf(4096);
  const DecodePlan plan = plan_ragged_decode(1, 1, 1, 96, 10, 1);
  RaggedKV kv{buf.data(), buf.data(), DType::kFloat16, buf.as<int32_t>(), 96, 96};
  try {
    decode_attention(buf.as<float>(), kv, plan, 1.f, nullptr, buf.as<float>(), buf.as<float>());
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("head_dim"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace retrokv::cuda
