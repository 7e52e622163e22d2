// Everything of the CUDA part that can run without a device, checked on the CPU: the kernels'
// online softmax, the cluster-estimate math, the strided N-way merge, split planning, the
// head_dim dispatch, and the kernels' token addressing walked on the host with the same split
// loop against the double reference (ragged, paged with partial pages, clusters).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/half.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/attention_math.h"
#include "retrokv/cuda/decode_addressing.h"
#include "retrokv/cuda/decode_plan.h"
#include "retrokv/cuda/device.h"
#include "retrokv/cuda/dispatch.h"
#include "retrokv/cuda/memory.h"
#include "retrokv/cuda/select_math.h"

namespace retrokv::cuda {
namespace {

double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

template <typename Fn>
void expect_error_mentions(Fn&& fn, const std::string& word) {
  try {
    fn();
    ADD_FAILURE() << "expected retrokv::Error mentioning " << word;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
  }
}

TEST(OnlineSoftmax, MatchesDoubleSoftmaxAndSplitsMergeExactly) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 3.f);
  constexpr int N = 4;
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 1 + trial * 13;
    std::vector<float> logit(n), v(n * N);
    for (auto& x : logit) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    if (trial % 3 == 0 && n > 1) logit[n / 2] = -INFINITY;  // an empty token is a no-op
    double m = -INFINITY;
    for (float x : logit) m = std::max(m, static_cast<double>(x));
    double z = 0;
    std::vector<double> o(N, 0.0);
    for (int i = 0; i < n; ++i) {
      const double w = std::exp(logit[i] - m);
      z += w;
      for (int j = 0; j < N; ++j) o[j] += w * v[i * N + j];
    }
    for (auto& x : o) x /= z;
    const double lse = m + std::log(z);

    OnlineSoftmax<N> all, a, b;
    all.init();
    a.init();
    b.init();
    for (int i = 0; i < n; ++i) {
      all.push(logit[i] * kLog2e, &v[i * N], 1.f);
      (i % 3 == 0 ? a : b).push(logit[i] * kLog2e, &v[i * N], 1.f);
    }
    a.merge(b.m, b.l, b.o);
    for (auto* s : {&all, &a}) {
      std::vector<float> out(N);
      s->normalized(out.data());
      EXPECT_LT(rel_err(out, o), 1e-5) << "trial " << trial;
      EXPECT_NEAR(s->lse(), lse, 1e-5 * std::max(1.0, std::abs(lse)));
    }
  }
}

TEST(OnlineSoftmax, EmptyStatesGiveMinusInfinityAndZeroNeverNaN) {
  OnlineSoftmax<3> a, b;
  a.init();
  b.init();
  a.merge(b.m, b.l, b.o);
  a.push(-INFINITY, nullptr, 1.f);
  float out[3] = {1.f, 1.f, 1.f};
  a.normalized(out);
  EXPECT_EQ(a.lse(), -INFINITY);
  for (float x : out) EXPECT_EQ(x, 0.f);
  // Merging an empty state into a full one changes nothing.
  const float v[3] = {1.f, 2.f, 3.f};
  b.push(0.5f, v, 1.f);
  const float lse_before = b.lse();
  b.merge(a.m, a.l, a.o);
  EXPECT_EQ(b.lse(), lse_before);
  b.normalized(out);
  EXPECT_FLOAT_EQ(out[2], 3.f);
}

TEST(ClusterEstimate, BiasAndValueScaleGiveTheWaveIndexFormula) {
  // Z_E = sum s_i exp(q.c_i*scale), o_E = sum exp(q.c_i*scale) VS_i / Z_E, lse_E = log Z_E.
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> sz(0, 40);
  constexpr int D = 8;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  for (int trial = 0; trial < 10; ++trial) {
    const int n = 5 + 17 * trial;
    std::vector<float> q(D), c(n * D), vs(n * D);
    std::vector<int> size(n);
    for (auto& x : q) x = 2.f * nd(rng);
    for (auto& x : c) x = nd(rng);
    for (auto& x : vs) x = 10.f * nd(rng);
    for (auto& s : size) s = sz(rng);  // includes empty clusters
    double z = 0;
    std::vector<double> num(D, 0.0);
    for (int i = 0; i < n; ++i) {
      double dot = 0;
      for (int j = 0; j < D; ++j) dot += static_cast<double>(q[j]) * c[i * D + j];
      const double w = std::exp(dot * scale);
      z += size[i] * w;
      if (size[i] > 0)
        for (int j = 0; j < D; ++j) num[j] += w * vs[i * D + j];
    }
    std::vector<double> o(D);
    for (int j = 0; j < D; ++j) o[j] = num[j] / z;
    OnlineSoftmax<D> st;
    st.init();
    for (int i = 0; i < n; ++i) {
      float dot = 0;
      for (int j = 0; j < D; ++j) dot += q[j] * c[i * D + j];
      const float s = static_cast<float>(size[i]);
      st.push(dot * scale * kLog2e + cluster_logit_bias_log2(s), &vs[i * D],
              cluster_value_scale(s));
    }
    std::vector<float> out(D);
    st.normalized(out.data());
    EXPECT_LT(rel_err(out, o), 1e-5);
    EXPECT_NEAR(st.lse(), std::log(z), 1e-5 * std::max(1.0, std::abs(std::log(z))));
  }
  EXPECT_EQ(cluster_logit_bias_log2(0.f), -INFINITY);
  EXPECT_EQ(cluster_value_scale(0.f), 0.f);
  EXPECT_FLOAT_EQ(cluster_logit_bias_log2(16.f), 4.f);
}

TEST(MergeStrided, EqualsMergeStatesNForEveryLayoutIncludingEmptyStates) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 2.f);
  const int d = 5;
  for (int n : {0, 1, 2, 7, 33}) {
    const int rows = 3;
    // Layout (rows, n, d): state stride d, row stride n*d — the split-KV workspace.
    std::vector<float> o(static_cast<size_t>(rows) * n * d), lse(static_cast<size_t>(rows) * n);
    for (auto& x : o) x = nd(rng);
    for (size_t i = 0; i < lse.size(); ++i) lse[i] = (i % 4 == 1) ? -INFINITY : nd(rng);
    for (int r = 0; r < rows; ++r) {
      std::vector<float> o_contig(static_cast<size_t>(n) * d), lse_contig(n);
      for (int i = 0; i < n; ++i) {
        lse_contig[i] = lse[r * n + i];
        for (int j = 0; j < d; ++j) o_contig[i * d + j] = o[(r * n + i) * d + j];
      }
      std::vector<float> expect(d);
      const float expect_lse =
          merge_states_n(o_contig.data(), lse_contig.data(), n, d, expect.data());
      for (int j = 0; j < d; ++j) {
        float got_lse;
        const float got =
            merge_strided_element(o.data() + static_cast<size_t>(r) * n * d + j, d,
                                  lse.data() + static_cast<size_t>(r) * n, 1, n, &got_lse);
        EXPECT_FALSE(std::isnan(got));
        EXPECT_NEAR(got, expect[j], 1e-5f * std::max(1.f, std::abs(expect[j])));
        if (std::isinf(expect_lse)) {
          EXPECT_EQ(got_lse, expect_lse);
        } else {
          EXPECT_NEAR(got_lse, expect_lse, 1e-5f * std::max(1.f, std::abs(expect_lse)));
        }
      }
    }
  }
}

TEST(OrderedFloatKey, SortsLikeTheFloatsIncludingInfinitiesAndDenormals) {
  std::mt19937 rng(13);
  std::vector<float> v = {-INFINITY, -1e30f, -1.f, -1e-40f, 0.f,
                          1e-40f,    1e-38f, 2.f,  3e38f,   INFINITY};
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 20000; ++i) {
    const uint32_t u = bits(rng);
    float f;
    std::memcpy(&f, &u, sizeof f);
    if (!std::isnan(f)) v.push_back(f);
  }
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    const float a = v[i], b = v[i + 1];
    if (a < b) {
      EXPECT_LT(ordered_float_key(a), ordered_float_key(b)) << a << " " << b;
    } else if (a > b) {
      EXPECT_GT(ordered_float_key(a), ordered_float_key(b)) << a << " " << b;
    }
  }
  EXPECT_GT(ordered_float_key(-INFINITY), 0u);  // key 0 is free for padding
  EXPECT_LT(ordered_float_key(-0.f), ordered_float_key(1e-45f));
}

// The GPU radix top-k run sequentially: four 8-bit passes with radix_pick_digit, then the
// kernels' emit rule (keys above the threshold, plus the first `ties` equal keys in index order).
std::vector<int64_t> radix_top_k(const std::vector<uint32_t>& key, int64_t k) {
  std::vector<int64_t> out;
  if (k <= 0) return out;
  uint32_t prefix = 0, mask = 0;
  int64_t remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    int hist[256] = {};
    for (uint32_t x : key)
      if ((x & mask) == prefix) ++hist[(x >> shift) & 255u];
    int64_t rest;
    prefix |= static_cast<uint32_t>(radix_pick_digit(hist, remaining, &rest)) << shift;
    remaining = rest;
    mask |= 255u << shift;
  }
  int64_t ties = 0;
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] > prefix || (key[i] == prefix && ties++ < remaining)) out.push_back(i);
  }
  return out;
}

TEST(RadixSelect, EqualsSortingByKeyThenIndexWithManyTies) {
  std::mt19937 rng(17);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 3000);
    // Few distinct values in the low bits and in the high bits: ties at every digit.
    std::vector<uint32_t> key(n);
    for (auto& x : key) {
      x = trial % 2 == 0 ? static_cast<uint32_t>(rng() % 7) << (8 * (rng() % 4))
                         : ordered_float_key(std::normal_distribution<float>(0.f, 1.f)(rng));
    }
    const int64_t k = static_cast<int64_t>(rng() % (n + 1));
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return key[a] > key[b]; });
    std::vector<int64_t> expect(order.begin(), order.begin() + k);
    std::sort(expect.begin(), expect.end());
    EXPECT_EQ(radix_top_k(key, k), expect) << "trial " << trial << " n " << n << " k " << k;
  }
}

TEST(DecodePlan, SplitsCoverEveryUnitOnceAndRespectTheMinimum) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 500; ++trial) {
    const int batch = 1 + static_cast<int>(rng() % 16);
    const int n_kv = 1 + static_cast<int>(rng() % 8);
    const int group = 1 + static_cast<int>(rng() % 12);
    const int64_t max_units = static_cast<int64_t>(rng() % 300000);
    const int64_t min_units = 1 + static_cast<int64_t>(rng() % 512);
    const int n_sms = 1 + static_cast<int>(rng() % 132);
    const DecodePlan p = plan_decode(batch, n_kv * group, n_kv, 128, max_units, min_units, n_sms);
    ASSERT_GE(p.n_splits, 1);
    ASSERT_GE(static_cast<int64_t>(p.n_splits) * p.units_per_split, max_units);
    ASSERT_LT(static_cast<int64_t>(p.n_splits - 1) * p.units_per_split,
              std::max<int64_t>(max_units, 1));
    if (p.n_splits > 1) {
      ASSERT_GE(p.units_per_split, min_units);
      ASSERT_EQ(p.workspace_bytes,
                static_cast<size_t>(batch) * n_kv * group * p.n_splits * (128 + 1) * sizeof(float));
    } else {
      ASSERT_EQ(p.workspace_bytes, 0u);
    }
    ASSERT_EQ(p.group_per_block, group <= 4 ? 4 : 8);
    ASSERT_EQ(p.n_group_chunks, (group + p.group_per_block - 1) / p.group_per_block);
    ASSERT_LE(static_cast<int64_t>(p.n_splits),
              std::max<int64_t>(
                  1, (static_cast<int64_t>(n_sms) * 4 + batch * n_kv * p.n_group_chunks - 1) /
                         (batch * n_kv * p.n_group_chunks)));
  }
}

TEST(DecodePlan, BadShapesThrowNamingTheArgument) {
  expect_error_mentions([] { plan_decode(1, 6, 4, 128, 10, 1, 1); }, "n_q_heads");
  expect_error_mentions([] { plan_decode(0, 8, 4, 128, 10, 1, 1); }, "batch");
  expect_error_mentions([] { plan_decode(1, 8, 4, 128, -1, 1, 1); }, "max_units");
  expect_error_mentions([] { plan_paged_decode(1, 8, 4, 128, 10, 12, 1); }, "page_size");
}

TEST(Dispatch, HeadDimBecomesACompileTimeConstantOrThrows) {
  auto run = [](int d) { return RETROKV_DISPATCH_HEAD_DIM(d, D, [&] { return D * 2; }); };
  EXPECT_EQ(run(64), 128);
  EXPECT_EQ(run(128), 256);
  expect_error_mentions([&] { run(96); }, "head_dim");
}

// Host walk of the kernels' work decomposition: every split of every list through the same
// addressing policy and split_token_range, an OnlineSoftmax per split, then the strided merge.
template <int D, typename T, typename Addr>
std::vector<float> walk_splits(const Addr& addr, const std::vector<float>& q, const DecodePlan& p,
                               float scale, std::vector<float>* lse_out) {
  const int group = p.n_q_heads / p.n_kv_heads;
  std::vector<float> o(static_cast<size_t>(p.batch) * p.n_q_heads * D);
  lse_out->assign(static_cast<size_t>(p.batch) * p.n_q_heads, 0.f);
  for (int b = 0; b < p.batch; ++b) {
    for (int h = 0; h < p.n_kv_heads; ++h) {
      for (int g = 0; g < group; ++g) {
        const int row = b * p.n_q_heads + h * group + g;
        std::vector<float> part_o(static_cast<size_t>(p.n_splits) * D), part_lse(p.n_splits);
        for (int s = 0; s < p.n_splits; ++s) {
          int64_t t0, t1;
          detail::split_token_range(addr, b, h, p.n_kv_heads, s, p.units_per_split, &t0, &t1);
          OnlineSoftmax<D> st;
          st.init();
          for (int64_t t = t0; t < t1; ++t) {
            detail::TokenRow<T> r;
            if (!addr.row(b, h, p.n_kv_heads, t, &r)) continue;
            float dot = 0.f;
            float v[D];
            for (int j = 0; j < D; ++j) {
              dot += q[static_cast<size_t>(row) * D + j] * to_float(r.k[j]);
              v[j] = to_float(r.v[j]);
            }
            st.push(dot * scale * kLog2e + r.bias2, v, r.vscale);
          }
          st.normalized(&part_o[static_cast<size_t>(s) * D]);
          part_lse[s] = st.lse();
        }
        for (int j = 0; j < D; ++j) {
          o[static_cast<size_t>(row) * D + j] = merge_strided_element(
              &part_o[j], D, part_lse.data(), 1, p.n_splits, &(*lse_out)[row]);
        }
      }
    }
  }
  return o;
}

TEST(KernelAddressing, RaggedAndPagedWalksMatchTheDoubleReference) {
  constexpr int D = 64;
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int batch = 3, n_kv = 2, group = 3, n_q = n_kv * group;
  const std::vector<int32_t> lens = {0, 700, 301};  // an empty sequence gives lse = -inf
  std::vector<int32_t> indptr = {0};
  for (int32_t n : lens) indptr.push_back(indptr.back() + n);
  const int64_t total = indptr.back();
  // (n, h, d) layout.
  std::vector<half> K(static_cast<size_t>(total) * n_kv * D), V(K.size());
  for (auto& x : K) x = half(nd(rng));
  for (auto& x : V) x = half(nd(rng));
  std::vector<float> q(static_cast<size_t>(batch) * n_q * D);
  for (auto& x : q) x = nd(rng);
  const float scale = 1.f / std::sqrt(static_cast<float>(D));

  detail::RaggedAddr<half, D> ragged{K.data(), V.data(), indptr.data(), n_kv * D, D};
  const DecodePlan plan = plan_decode(batch, n_q, n_kv, D, 700, 64, 4);
  ASSERT_GT(plan.n_splits, 1);
  std::vector<float> lse;
  const std::vector<float> o = walk_splits<D, half>(ragged, q, plan, scale, &lse);

  // Paged copy of the same tokens: page size 16, each list's pages shuffled in the pool and the
  // tokens split into chunks of random length so pages are partially filled.
  const int ps = 16;
  std::vector<half> Kp, Vp;
  std::vector<int32_t> pindptr = {0}, pidx, plen;
  std::vector<std::vector<int32_t>> page_tokens;  // global token of each slot, per page
  for (int b = 0; b < batch; ++b) {
    for (int h = 0; h < n_kv; ++h) {
      int32_t t = 0;
      while (t < lens[b]) {
        const int32_t take = std::min<int32_t>(lens[b] - t, 1 + static_cast<int32_t>(rng() % ps));
        const int32_t page = static_cast<int32_t>(page_tokens.size());
        page_tokens.emplace_back();
        for (int32_t i = 0; i < take; ++i) page_tokens.back().push_back(indptr[b] + t + i);
        pidx.push_back(page);
        plen.push_back(take);
        t += take;
      }
      pindptr.push_back(static_cast<int32_t>(pidx.size()));
      (void)h;
    }
  }
  // Fill the pool with each page's tokens for its KV head (poison the unused slots).
  Kp.assign(page_tokens.size() * ps * D, half(NAN));
  Vp.assign(Kp.size(), half(NAN));
  for (int b = 0; b < batch; ++b) {
    for (int h = 0; h < n_kv; ++h) {
      const int l = b * n_kv + h;
      for (int e = pindptr[l]; e < pindptr[l + 1]; ++e) {
        const auto& toks = page_tokens[pidx[e]];
        for (size_t s = 0; s < toks.size(); ++s) {
          for (int j = 0; j < D; ++j) {
            Kp[(pidx[e] * ps + s) * D + j] = K[(static_cast<size_t>(toks[s]) * n_kv + h) * D + j];
            Vp[(pidx[e] * ps + s) * D + j] = V[(static_cast<size_t>(toks[s]) * n_kv + h) * D + j];
          }
        }
      }
    }
  }
  int64_t max_pages = 0;
  for (size_t l = 0; l + 1 < pindptr.size(); ++l)
    max_pages = std::max<int64_t>(max_pages, pindptr[l + 1] - pindptr[l]);
  detail::PagedAddr<half, D> paged{Kp.data(),   Vp.data(),   pindptr.data(),
                                   pidx.data(), plen.data(), 4};
  const DecodePlan pplan = plan_decode(batch, n_q, n_kv, D, max_pages, 8, 4);
  ASSERT_GT(pplan.n_splits, 1);
  std::vector<float> plse;
  const std::vector<float> po = walk_splits<D, half>(paged, q, pplan, scale, &plse);

  for (int b = 0; b < batch; ++b) {
    for (int h = 0; h < n_kv; ++h) {
      // This KV head's rows of this sequence as an (n, d) view with ld = n_kv * d.
      ConstMatrixView<half> Kb(K.data() + (static_cast<size_t>(indptr[b]) * n_kv + h) * D, lens[b],
                               D, n_kv * D);
      ConstMatrixView<half> Vb(V.data() + (static_cast<size_t>(indptr[b]) * n_kv + h) * D, lens[b],
                               D, n_kv * D);
      for (int g = 0; g < group; ++g) {
        const int row = b * n_q + h * group + g;
        const ReferenceAttention ref =
            reference_attention_double<half>(&q[static_cast<size_t>(row) * D], Kb, Vb, scale);
        const std::vector<float> got(o.begin() + row * D, o.begin() + (row + 1) * D);
        const std::vector<float> pgot(po.begin() + row * D, po.begin() + (row + 1) * D);
        if (lens[b] == 0) {
          EXPECT_EQ(lse[row], -INFINITY);
          EXPECT_EQ(plse[row], -INFINITY);
          for (int j = 0; j < D; ++j) EXPECT_EQ(got[j], 0.f);
          continue;
        }
        EXPECT_LT(rel_err(got, ref.o), 1e-5) << "ragged row " << row;
        EXPECT_LT(rel_err(pgot, ref.o), 1e-5) << "paged row " << row;
        EXPECT_NEAR(lse[row], ref.lse, 1e-5 * std::abs(ref.lse) + 1e-5);
        EXPECT_NEAR(plse[row], ref.lse, 1e-5 * std::abs(ref.lse) + 1e-5);
      }
    }
  }
}

TEST(KernelAddressing, ClusterWalkMatchesTheEstimationFormula) {
  constexpr int D = 64;
  std::mt19937 rng(8);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int n_clusters = 300, batch = 2, n_kv = 2, group = 2, n_q = 4;
  std::vector<float> c(static_cast<size_t>(n_clusters) * D), vs(c.size());
  std::vector<int32_t> size(n_clusters);
  for (auto& x : c) x = nd(rng);
  for (auto& x : vs) x = 5.f * nd(rng);
  for (auto& s : size) s = static_cast<int32_t>(rng() % 30);
  std::vector<int32_t> indptr = {0}, ids;
  for (int l = 0; l < batch * n_kv; ++l) {
    const int take = 40 + 50 * l;
    for (int i = 0; i < take; ++i) ids.push_back(static_cast<int32_t>(rng() % n_clusters));
    indptr.push_back(static_cast<int32_t>(ids.size()));
  }
  std::vector<float> q(static_cast<size_t>(batch) * n_q * D);
  for (auto& x : q) x = nd(rng);
  const float scale = 0.125f;
  detail::ClusterAddr<D> addr{c.data(), vs.data(), size.data(), indptr.data(), ids.data()};
  const DecodePlan plan = plan_decode(batch, n_q, n_kv, D, 190, 16, 8);
  ASSERT_GT(plan.n_splits, 1);
  std::vector<float> lse;
  const std::vector<float> o = walk_splits<D, float>(addr, q, plan, scale, &lse);
  for (int b = 0; b < batch; ++b) {
    for (int h = 0; h < n_kv; ++h) {
      const int l = b * n_kv + h;
      for (int g = 0; g < group; ++g) {
        const int row = b * n_q + h * group + g;
        double z = 0;
        std::vector<double> num(D, 0.0);
        for (int e = indptr[l]; e < indptr[l + 1]; ++e) {
          double dot = 0;
          for (int j = 0; j < D; ++j)
            dot += static_cast<double>(q[row * D + j]) * c[ids[e] * D + j];
          const double w = std::exp(dot * scale);
          z += size[ids[e]] * w;
          if (size[ids[e]] > 0)
            for (int j = 0; j < D; ++j) num[j] += w * vs[ids[e] * D + j];
        }
        for (auto& x : num) x /= z;
        const std::vector<float> got(o.begin() + row * D, o.begin() + (row + 1) * D);
        EXPECT_LT(rel_err(got, num), 1e-5);
        EXPECT_NEAR(lse[row], std::log(z), 1e-5 * std::abs(std::log(z)) + 1e-5);
      }
    }
  }
}

TEST(CudaHost, WithoutADeviceEveryCallFailsLoudly) {
  if (device_count() > 0) GTEST_SKIP() << "a device is present; the gpu tests cover this";
  EXPECT_THROW(DeviceBuffer(64), Error);
  EXPECT_THROW(require_device(), Error);
  EXPECT_NO_THROW(DeviceBuffer(0));
  EXPECT_NO_THROW(check_status(kCudaSuccess, "x"));
  EXPECT_THROW(check_status(2, "cudaMalloc"), Error);
  if (!built_with_cuda()) {
    const DecodePlan p = plan_ragged_decode(1, 1, 1, 64, 10, 1);
    expect_error_mentions(
        [&] { decode_attention(nullptr, RaggedKV{}, p, 1.f, nullptr, nullptr, nullptr); },
        "built without CUDA");
  }
}

}  // namespace
}  // namespace retrokv::cuda
