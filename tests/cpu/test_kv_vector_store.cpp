// Tests of KVVectorStore (issue 7 "API"): `full` against the double-precision reference, every
// sparse policy with budget = everything against full, error bounds at a small budget, decode
// (append) consistency, save/load round trips, concurrency, and rejected calls that change nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/random_data.h"
#include "common/test_util.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/store/kv_vector_store.h"

namespace retrokv {
namespace {

constexpr Policy kAllPolicies[] = {Policy::kFull, Policy::kFlatTopK, Policy::kRoarGraph,
                                   Policy::kWave, Policy::kQuest};
constexpr Policy kSparsePolicies[] = {Policy::kFlatTopK, Policy::kRoarGraph, Policy::kWave,
                                      Policy::kQuest};

/// One layer's worth of synthetic GQA data: K, V (n, H*d), prompt queries Q (n, Hq*d) and decode
/// queries (steps, Hq*d), each KV head an independent OOD attention head (random_data.h).
struct LayerData {
  int H = 0, g = 0, d = 0;
  int64_t n = 0;
  Matrix<float> K, V, Q, decode;
};

LayerData make_layer(int64_t n, int H, int g, int d, int64_t steps, uint64_t seed) {
  LayerData x;
  x.H = H;
  x.g = g;
  x.d = d;
  x.n = n;
  x.K.resize(n, H * d);
  x.V.resize(n, H * d);
  x.Q.resize(n, H * g * d);
  x.decode.resize(steps, H * g * d);
  for (int h = 0; h < H; ++h) {
    SyntheticAttention s = make_ood_synthetic(n, d, n * g, steps * g, seed * 101 + h);
    for (int64_t i = 0; i < n; ++i) {
      std::copy(s.keys.row(i), s.keys.row(i) + d, x.K.row(i) + h * d);
      std::copy(s.values.row(i), s.values.row(i) + d, x.V.row(i) + h * d);
      for (int j = 0; j < g; ++j)
        std::copy(s.train_queries.row(j * n + i), s.train_queries.row(j * n + i) + d,
                  x.Q.row(i) + (h * g + j) * d);
    }
    for (int64_t t = 0; t < steps; ++t)
      for (int j = 0; j < g; ++j)
        std::copy(s.test_queries.row(j * steps + t), s.test_queries.row(j * steps + t) + d,
                  x.decode.row(t) + (h * g + j) * d);
  }
  return x;
}

StoreConfig make_config(const LayerData& x, Policy policy, int n_layers = 1) {
  StoreConfig c;
  c.n_layers = n_layers;
  c.n_q_heads = x.H * x.g;
  c.n_kv_heads = x.H;
  c.head_dim = x.d;
  c.policy = policy;
  c.params.roar.max_train_queries = 4096;  // keeps the kNN step of the build short
  c.params.roar.L = 200;
  return c;
}

ConstMatrixView<float> rows(const Matrix<float>& m, int64_t begin, int64_t count) {
  return ConstMatrixView<float>(m.data() + begin * m.cols(), count, m.cols());
}

/// Exact attention of every query head over positions [0, n) of x, in double.
std::vector<std::vector<double>> reference(const LayerData& x, const float* q, int64_t n,
                                           float scale) {
  std::vector<std::vector<double>> out;
  for (int hq = 0; hq < x.H * x.g; ++hq) {
    const int h = hq / x.g;
    ConstMatrixView<float> K(x.K.data() + h * x.d, n, x.d, x.K.cols());
    ConstMatrixView<float> V(x.V.data() + h * x.d, n, x.d, x.V.cols());
    out.push_back(reference_attention_double<float>(q + hq * x.d, K, V, scale).o);
  }
  return out;
}

/// max over query heads of ||o - ref|| / ||ref||.
double max_rel_error(const std::vector<float>& o, const std::vector<std::vector<double>>& ref,
                     int d) {
  double worst = 0;
  for (size_t h = 0; h < ref.size(); ++h) {
    double num = 0, den = 0;
    for (int j = 0; j < d; ++j) {
      const double e = o[h * d + j] - ref[h][j];
      num += e * e;
      den += ref[h][j] * ref[h][j];
    }
    worst = std::max(worst, std::sqrt(num / std::max(den, 1e-300)));
  }
  return worst;
}

/// mean over query heads of ||o - ref|| / ||ref||.
double mean_rel_error(const std::vector<float>& o, const std::vector<std::vector<double>>& ref,
                      int d) {
  double sum = 0;
  for (size_t h = 0; h < ref.size(); ++h)
    sum +=
        max_rel_error(std::vector<float>(o.begin() + h * d, o.begin() + (h + 1) * d), {ref[h]}, d);
  return sum / static_cast<double>(ref.size());
}

/// In-distribution clustered data: keys around n/16 random centres, decode queries aimed at a
/// few centres, so attention is peaked on whole clusters (what key clustering and page bounds
/// assume). Same layout as make_layer.
LayerData make_clustered_layer(int64_t n, int H, int g, int d, int64_t steps, uint64_t seed) {
  LayerData x = make_layer(n, H, g, d, steps, seed);  // Q (prompt queries) kept from the OOD set
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const int64_t n_c = std::max<int64_t>(1, n / 16);
  for (int h = 0; h < H; ++h) {
    Matrix<float> centres = random_matrix(n_c, d, seed * 7 + h, 1.5f);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = static_cast<int64_t>(rng() % n_c);
      for (int j = 0; j < d; ++j) x.K(i, h * d + j) = centres(c, j) + 0.5f * normal(rng);
    }
    for (int64_t t = 0; t < steps; ++t)
      for (int q = 0; q < g; ++q) {
        float* row = x.decode.row(t) + (h * g + q) * d;
        for (int j = 0; j < d; ++j) row[j] = 0.3f * normal(rng);
        for (int a = 0; a < 3; ++a) {
          const int64_t c = static_cast<int64_t>(rng() % n_c);
          for (int j = 0; j < d; ++j) row[j] += 0.6f * centres(c, j);
        }
      }
  }
  return x;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b, int n_heads, int d) {
  std::vector<std::vector<double>> ref(n_heads, std::vector<double>(d));
  for (int h = 0; h < n_heads; ++h)
    for (int j = 0; j < d; ++j) ref[h][j] = b[h * d + j];
  return max_rel_error(a, ref, d);
}

std::vector<float> attend(KVVectorStore& s, SeqId seq, int layer, const float* q) {
  std::vector<float> o(static_cast<size_t>(s.config().q_width()));
  s.attend(seq, layer, q, o.data());
  return o;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string temp_file(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("retrokv_test_store_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// ---- exactness --------------------------------------------------------------------------------

TEST(KVVectorStore, FullEqualsReferenceAttention) {
  const LayerData x = make_layer(1500, 2, 3, 32, 4, 1);
  for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    StoreConfig c = make_config(x, Policy::kFull, 2);
    c.kv_dtype = dt;
    KVVectorStore s(c);
    const SeqId seq = s.add_sequence();
    s.prefill(seq, 1, x.K.view(), x.V.view(), x.Q.view());
    // The reference reads the same rounded values the store holds.
    Matrix<float> Kr = x.K, Vr = x.V;
    if (dt != DType::kFloat32) {
      for (int64_t i = 0; i < Kr.rows() * Kr.cols(); ++i) {
        Kr.data()[i] =
            dt == DType::kFloat16 ? to_float(half(Kr.data()[i])) : to_float(bfloat16(Kr.data()[i]));
        Vr.data()[i] =
            dt == DType::kFloat16 ? to_float(half(Vr.data()[i])) : to_float(bfloat16(Vr.data()[i]));
      }
    }
    LayerData xr = x;
    xr.K = Kr;
    xr.V = Vr;
    for (int64_t t = 0; t < x.decode.rows(); ++t) {
      const auto o = attend(s, seq, 1, x.decode.row(t));
      EXPECT_LT(max_rel_error(o, reference(xr, x.decode.row(t), x.n, c.effective_scale()), x.d),
                1e-5)
          << dtype_name(dt) << " step " << t;
    }
    const LayerStats st = s.stats(1);
    EXPECT_EQ(st.attend_calls, x.decode.rows());
    EXPECT_EQ(st.head_steps, x.decode.rows() * x.H);
    EXPECT_DOUBLE_EQ(st.exact_fraction(), 1.0);
    EXPECT_EQ(s.stats(0).attend_calls, 0);
  }
}

TEST(KVVectorStore, EverySparsePolicyWithFullBudgetEqualsFull) {
  const LayerData x = make_layer(1200, 2, 2, 32, 3, 2);
  for (Policy p : kSparsePolicies) {
    StoreConfig c = make_config(x, p);
    c.params.budget_fraction = 1.0;
    c.params.wave.budget.estimation_frac = 0.0;
    KVVectorStore s(c);
    const SeqId seq = s.add_sequence();
    s.prefill(seq, 0, x.K.view(), x.V.view(), x.Q.view());
    for (int64_t t = 0; t < x.decode.rows(); ++t) {
      const auto o = attend(s, seq, 0, x.decode.row(t));
      EXPECT_LT(max_rel_error(o, reference(x, x.decode.row(t), x.n, c.effective_scale()), x.d),
                1e-5)
          << policy_name(p);
    }
    EXPECT_DOUBLE_EQ(s.stats(0).exact_fraction(), 1.0) << policy_name(p);
  }
}

// Mean relative output error per query head at a 2% budget (+ 4 sinks + 64 local), n = 4000,
// d = 32, 2 KV heads x 3 query heads, 8 steps. Measured (mean / max):
//   OOD set (random_data.h):  flat_topk 0.178/0.84, roar_graph 0.182/0.84, quest 1.59/3.0,
//                             wave 1.43/3.0
//   clustered set (below):    flat_topk 0.41/2.0, roar_graph 0.57/2.0, quest 2.6/5.0,
//                             wave 0.35/1.1
// On the OOD set the key-side policies (quest's page bounds, wave's key clusters) pick the wrong
// tokens, as RetrievalAttention reports for key-only indexes; the query-trained graph matches
// the exact top-k; on the clustered set wave's cluster-level retrieval + estimate is best.
// Bounds leave ~1.4x headroom over the measured means.
TEST(KVVectorStore, SmallBudgetErrorIsBounded) {
  const int64_t n = 4000;  // the bounds were measured at this size (also under sanitizers)
  struct Case {
    Policy p;
    double ood_bound, clustered_bound;
  };
  const LayerData sets[2] = {make_layer(n, 2, 3, 32, 8, 3),
                             make_clustered_layer(n, 2, 3, 32, 8, 3)};
  double flat_mean[2] = {0, 0};
  for (const Case& cs : {Case{Policy::kFlatTopK, 0.25, 0.6}, Case{Policy::kRoarGraph, 0.25, 0.8},
                         Case{Policy::kQuest, 2.2, 3.6}, Case{Policy::kWave, 2.0, 0.5}}) {
    for (int set = 0; set < 2; ++set) {
      const LayerData& x = sets[set];
      StoreConfig c = make_config(x, cs.p);
      c.params.budget_fraction = 0.02;
      KVVectorStore s(c);
      const SeqId seq = s.add_sequence();
      s.prefill(seq, 0, x.K.view(), x.V.view(), x.Q.view());
      double worst = 0, mean = 0;
      for (int64_t t = 0; t < x.decode.rows(); ++t) {
        const auto o = attend(s, seq, 0, x.decode.row(t));
        const auto ref = reference(x, x.decode.row(t), x.n, c.effective_scale());
        worst = std::max(worst, max_rel_error(o, ref, x.d));
        mean += mean_rel_error(o, ref, x.d) / double(x.decode.rows());
      }
      const LayerStats st = s.stats(0);
      std::printf(
          "[ measure  ] %-9s %-10s rel error mean %.4f max %.4f  exact share %.4f  "
          "keys scanned/step %.0f\n",
          set ? "clustered" : "OOD", policy_name(cs.p), mean, worst, st.exact_fraction(),
          double(st.keys_scanned) / st.head_steps);
      EXPECT_LT(mean, set ? cs.clustered_bound : cs.ood_bound) << policy_name(cs.p) << set;
      EXPECT_LT(st.exact_fraction(), 0.06) << policy_name(cs.p);
      EXPECT_GT(st.keys_scanned, 0) << policy_name(cs.p);
      if (cs.p == Policy::kFlatTopK) flat_mean[set] = mean;
      // Trained on queries of the decode distribution, the graph finds what the exact scan finds.
      if (cs.p == Policy::kRoarGraph && set == 0) {
        EXPECT_LT(mean, 1.15 * flat_mean[0] + 0.01);
      }
      if (cs.p == Policy::kWave) {
        EXPECT_GT(st.estimated_clusters, 0);
        EXPECT_GT(st.estimated_tokens, 0);
      }
    }
  }
}

// ---- decode ------------------------------------------------------------------------------------

// Prefill n0 positions, then append one position and attend per step; compare with a store that
// prefilled [0, n0 + t + 1) at once. Full and budget = everything: equal. Small budget: the
// error against exact stays bounded through several index updates.
double decode_bound(Policy p) {
  switch (p) {
    case Policy::kFlatTopK:
    case Policy::kRoarGraph:
      return 0.06;  // measured 0.036 / 0.038
    case Policy::kQuest:
      return 1.35;  // measured 0.95
    default:
      return 1.4;  // wave, measured 0.99
  }
}

TEST(KVVectorStore, AppendStaysConsistentWithPrefillingEverything) {
  const int64_t n0 = 300, steps = sanitizer_build() ? 100 : 140;
  const LayerData x = make_layer(n0 + steps, 2, 2, 32, steps, 4);
  for (Policy p : kAllPolicies) {
    for (double frac : {1.0, 0.1}) {
      if (p == Policy::kFull && frac < 1.0) continue;
      StoreConfig c = make_config(x, p);
      c.params.budget_fraction = frac;
      c.params.update_interval = 64;
      c.params.n_local = 16;
      c.params.wave.segment_size = 128;
      c.params.roar.L = 100;  // the build beam; the default 500 makes each insert slow here
      if (frac == 1.0) c.params.wave.budget.estimation_frac = 0.0;
      KVVectorStore s(c);
      const SeqId seq = s.add_sequence();
      s.prefill(seq, 0, rows(x.K, 0, n0), rows(x.V, 0, n0), rows(x.Q, 0, n0));
      double worst = 0, mean = 0;
      for (int64_t t = 0; t < steps; ++t) {
        s.append(seq, 0, x.K.row(n0 + t), x.V.row(n0 + t));
        ASSERT_EQ(s.sequence_length(seq, 0), n0 + t + 1);
        const float* q = x.decode.row(t);
        const auto o = attend(s, seq, 0, q);
        const auto ref = reference(x, q, n0 + t + 1, c.effective_scale());
        worst = std::max(worst, frac == 1.0 ? max_rel_error(o, ref, x.d) : 0.0);
        mean += mean_rel_error(o, ref, x.d) / double(steps);
        if (t % 97 == 0 && frac == 1.0) {  // spot-check against a store that prefilled it all
          KVVectorStore all(c);
          const SeqId a = all.add_sequence();
          all.prefill(a, 0, rows(x.K, 0, n0 + t + 1), rows(x.V, 0, n0 + t + 1),
                      rows(x.Q, 0, n0 + t + 1));
          EXPECT_LT(max_rel_diff(o, attend(all, a, 0, q), c.n_q_heads, x.d), 1e-5);
        }
      }
      const LayerStats st = s.stats(0);
      std::printf("[ measure  ] decode %-10s budget %.2f mean rel error %.4f\n", policy_name(p),
                  frac, mean);
      EXPECT_LT(worst, 1e-5) << policy_name(p) << " budget " << frac;
      if (frac < 1.0) {
        EXPECT_LT(mean, decode_bound(p)) << policy_name(p);
      }
      if (p != Policy::kFull && p != Policy::kWave) {
        EXPECT_EQ(st.index_updates, steps / 64 * c.n_kv_heads) << policy_name(p);
      }
      // The steady zone stays bounded: sinks + local window + < update_interval appended.
      if (p != Policy::kFull) {
        EXPECT_LE(st.steady_tokens, st.head_steps * (4 + 16 + 64 + 1)) << policy_name(p);
      }
    }
  }
}

TEST(KVVectorStore, AppendOnlyLayerBuildsItsIndexAtTheFirstUpdate) {
  const int64_t n = 400;
  const LayerData x = make_layer(n, 1, 2, 16, 1, 5);
  for (Policy p : kSparsePolicies) {
    StoreConfig c = make_config(x, p);
    c.params.update_interval = 100;
    c.params.budget_tokens = 40;
    KVVectorStore s(c);
    const SeqId seq = s.add_sequence();
    s.append(seq, 0, rows(x.K, 0, n), rows(x.V, 0, n));  // one call, several intervals
    const auto o = attend(s, seq, 0, x.decode.row(0));
    const double err =
        mean_rel_error(o, reference(x, x.decode.row(0), n, c.effective_scale()), x.d);
    std::printf("[ measure  ] append-only %-10s mean rel error %.4f\n", policy_name(p), err);
    // Measured: flat_topk 0.0076, roar_graph 0.0076, wave 0.26, quest 1.16.
    const double bound = p == Policy::kWave ? 0.4 : p == Policy::kQuest ? 1.6 : 0.02;
    EXPECT_LT(err, bound) << policy_name(p);
    const LayerStats st = s.stats(0);
    if (p != Policy::kWave) {
      EXPECT_EQ(st.steady_tokens, 4 + 64) << policy_name(p);  // all 400 = 4 intervals
      EXPECT_EQ(st.selected_tokens, 40) << policy_name(p);
    }
  }
}

// ---- batch and threads ------------------------------------------------------------------------

TEST(KVVectorStore, BatchAndConcurrentAttendEqualSerial) {
  const LayerData x = make_layer(1600, 2, 2, 32, 4, 6);
  const int64_t lengths[] = {1600, 700, 1100, 250};
  for (Policy p : kAllPolicies) {
    StoreConfig c = make_config(x, p);
    c.params.budget_fraction = 0.05;
    c.threads = 2;
    KVVectorStore s(c);
    std::vector<SeqId> seqs;
    for (int64_t len : lengths) {
      seqs.push_back(s.add_sequence());
      s.prefill(seqs.back(), 0, rows(x.K, 0, len), rows(x.V, 0, len), rows(x.Q, 0, len));
    }
    const int64_t b = static_cast<int64_t>(seqs.size());
    std::vector<std::vector<float>> serial;
    for (int64_t i = 0; i < b; ++i) serial.push_back(attend(s, seqs[i], 0, x.decode.row(i)));
    // Batch with ragged lengths.
    Matrix<float> q(b, c.q_width()), out(b, c.q_width());
    for (int64_t i = 0; i < b; ++i)
      std::copy(x.decode.row(i), x.decode.row(i) + c.q_width(), q.row(i));
    s.attend_batch(seqs, 0, q.view(), out.view());
    for (int64_t i = 0; i < b; ++i)
      EXPECT_TRUE(bit_equal(std::vector<float>(out.row(i), out.row(i) + c.q_width()), serial[i]))
          << policy_name(p) << " batch row " << i;
    // Threads attending different sequences at once, several rounds.
    std::vector<std::vector<float>> got(b);
    std::vector<std::thread> pool;
    for (int64_t i = 0; i < b; ++i) {
      pool.emplace_back([&, i] {
        for (int r = 0; r < 3; ++r) got[i] = attend(s, seqs[i], 0, x.decode.row(i));
      });
    }
    for (auto& t : pool) t.join();
    for (int64_t i = 0; i < b; ++i)
      EXPECT_TRUE(bit_equal(got[i], serial[i])) << policy_name(p) << " thread " << i;
  }
}

TEST(KVVectorStore, BackgroundBuildEqualsForegroundBuild) {
  const LayerData x = make_layer(600, 2, 2, 32, 2, 7);
  for (Policy p : {Policy::kRoarGraph, Policy::kWave, Policy::kQuest}) {
    std::vector<float> outs[2];
    for (int async = 0; async < 2; ++async) {
      StoreConfig c = make_config(x, p, 3);
      c.async_build = async == 1;
      c.params.budget_fraction = 0.05;
      KVVectorStore s(c);
      const SeqId seq = s.add_sequence();
      for (int l = 0; l < 3; ++l) s.prefill(seq, l, x.K.view(), x.V.view(), x.Q.view());
      outs[async] = attend(s, seq, 2, x.decode.row(0));
      EXPECT_EQ(s.stats(2).index_builds, 2);
    }
    EXPECT_TRUE(bit_equal(outs[0], outs[1])) << policy_name(p);
  }
}

// ---- save / load ------------------------------------------------------------------------------

TEST(KVVectorStore, SaveLoadRoundTripIsBitIdentical) {
  const int64_t n0 = 900, steps = 150;
  const LayerData x = make_layer(n0 + steps, 2, 2, 32, 4, 8);
  for (Policy p : kAllPolicies) {
    for (DType dt : {DType::kFloat32, DType::kFloat16}) {
      StoreConfig c = make_config(x, p, 2);
      c.kv_dtype = dt;
      c.params.update_interval = 100;  // the saved state is mid-interval, after one update
      c.params.roar.L = 100;
      c.params.budget_fraction = 0.05;
      KVVectorStore s(c);
      const SeqId seq = s.add_sequence();
      for (int l = 0; l < 2; ++l) {
        s.prefill(seq, l, rows(x.K, 0, n0), rows(x.V, 0, n0), rows(x.Q, 0, n0));
        s.append(seq, l, rows(x.K, n0, steps), rows(x.V, n0, steps));
      }
      const std::string path = temp_file(std::string(policy_name(p)) + dtype_name(dt));
      s.save_sequence(seq, path);
      const int64_t held = s.memory_bytes();
      KVVectorStore t(c);
      const SeqId u = t.load_sequence(path);
      const SeqId w = s.load_sequence(path);  // into the same store too
      EXPECT_EQ(s.memory_bytes() - held, t.memory_bytes());
      // Loaded rows get the same decode headroom as a prefill of n0 + steps positions: no more
      // than the original holds, up to the headroom of the `steps` extra positions.
      const int64_t headroom_delta =
          int64_t{2} * 2 * c.n_kv_heads * c.head_dim * dtype_size(dt) *
          (KVRows::initial_capacity(n0 + steps) - KVRows::initial_capacity(n0));
      EXPECT_LE(t.memory_bytes(), held + headroom_delta);
      for (int l = 0; l < 2; ++l) {
        EXPECT_EQ(t.sequence_length(u, l), n0 + steps);
        for (int64_t i = 0; i < x.decode.rows(); ++i) {
          const auto a = attend(s, seq, l, x.decode.row(i));
          EXPECT_TRUE(bit_equal(a, attend(t, u, l, x.decode.row(i))))
              << policy_name(p) << " " << dtype_name(dt);
          EXPECT_TRUE(bit_equal(a, attend(s, w, l, x.decode.row(i))));
        }
      }
      // Decoding on after the load stays identical (same update points, same index).
      for (int l = 0; l < 2; ++l) {
        s.append(seq, l, rows(x.K, 0, 60), rows(x.V, 0, 60));
        t.append(u, l, rows(x.K, 0, 60), rows(x.V, 0, 60));
      }
      EXPECT_TRUE(bit_equal(attend(s, seq, 1, x.decode.row(0)), attend(t, u, 1, x.decode.row(0))))
          << policy_name(p);
      std::filesystem::remove(path);
    }
  }
}

TEST(KVVectorStore, LoadRejectsCorruptAndMismatchedFiles) {
  const LayerData x = make_layer(500, 2, 2, 16, 1, 9);
  StoreConfig c = make_config(x, Policy::kRoarGraph);
  KVVectorStore s(c);
  const SeqId seq = s.add_sequence();
  s.prefill(seq, 0, x.K.view(), x.V.view(), x.Q.view());
  const std::string path = temp_file("corrupt");
  s.save_sequence(seq, path);
  std::vector<uint8_t> good = read_file(path);
  auto expect_file_error = [&](KVVectorStore& st, const std::string& what) {
    const auto before = st.sequences();
    try {
      st.load_sequence(path);
      ADD_FAILURE() << "expected StoreError for " << what;
    } catch (const StoreError& e) {
      EXPECT_EQ(e.code(), StoreErrorCode::kFile) << what;
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    EXPECT_EQ(st.sequences(), before);
  };
  // A flipped bit in the middle, a truncated file, a missing file.
  std::vector<uint8_t> bad = good;
  bad[bad.size() / 2] ^= 0x10;
  write_file_atomic(path, bad.data(), bad.size());
  expect_file_error(s, "checksum");
  write_file_atomic(path, good.data(), good.size() - 100);
  expect_file_error(s, "truncated");
  std::filesystem::remove(path);
  expect_file_error(s, "cannot open");
  // Another model shape, dtype, policy or steady zone.
  write_file_atomic(path, good.data(), good.size());
  {
    StoreConfig o = c;
    o.n_q_heads = 2;
    o.n_kv_heads = 1;
    KVVectorStore t(o);
    expect_file_error(t, "n_q_heads");
  }
  {
    StoreConfig o = c;
    o.kv_dtype = DType::kBFloat16;
    KVVectorStore t(o);
    expect_file_error(t, "kv_dtype");
  }
  {
    StoreConfig o = c;
    o.policy = Policy::kWave;
    KVVectorStore t(o);
    expect_file_error(t, "policy");
  }
  {
    StoreConfig o = c;
    o.params.n_local = 32;
    KVVectorStore t(o);
    expect_file_error(t, "n_local");
  }
  std::filesystem::remove(path);
}

// ---- rejected calls ---------------------------------------------------------------------------

TEST(KVVectorStore, BadInputsThrowAndLeaveTheStoreAsItWas) {
  const LayerData x = make_layer(600, 2, 2, 16, 2, 10);
  for (Policy p : kAllPolicies) {
    StoreConfig c = make_config(x, p, 2);
    c.params.budget_fraction = 0.1;
    c.params.update_interval = 4;
    KVVectorStore s(c);
    const SeqId seq = s.add_sequence();
    s.prefill(seq, 0, rows(x.K, 0, 590), rows(x.V, 0, 590), rows(x.Q, 0, 590));
    s.append(seq, 0, x.K.row(590), x.V.row(590));
    const float* q = x.decode.row(0);
    const auto before = attend(s, seq, 0, q);
    const int64_t bytes = s.memory_bytes();
    auto unchanged = [&](const char* what) {
      EXPECT_EQ(s.sequence_length(seq, 0), 591) << what;
      EXPECT_EQ(s.memory_bytes(), bytes) << what;
      EXPECT_TRUE(bit_equal(attend(s, seq, 0, q), before)) << policy_name(p) << ": " << what;
    };
    auto expect_error = [&](const char* what, const std::string& names, auto&& call) {
      try {
        call();
        ADD_FAILURE() << "no error for " << what;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(names), std::string::npos) << what << ": " << e.what();
      }
      unchanged(what);
    };
    const int kvw = c.kv_width(), qw = c.q_width();
    Matrix<float> k1 = random_matrix(1, kvw, 1), v1 = random_matrix(1, kvw, 2);
    Matrix<float> out(c.n_q_heads, c.head_dim);
    // Shapes.
    expect_error("append k width", "k:", [&] {
      s.append(seq, 0, ConstMatrixView<float>(k1.data(), 1, kvw - 1), rows(v1, 0, 1));
    });
    expect_error("append v rows", "v:", [&] { s.append(seq, 0, rows(k1, 0, 1), rows(x.V, 0, 2)); });
    expect_error("prefill twice", "prefill once",
                 [&] { s.prefill(seq, 0, x.K.view(), x.V.view(), x.Q.view()); });
    expect_error("prefill V rows",
                 "V:", [&] { s.prefill(seq, 1, rows(x.K, 0, 10), rows(x.V, 0, 9), x.Q.view()); });
    expect_error("prefill Q width", "Q:", [&] {
      s.prefill(seq, 1, x.K.view(), x.V.view(), ConstMatrixView<float>(x.Q.data(), 600, qw - 1));
    });
    expect_error("q shape", "q:", [&] {
      s.attend(seq, 0, ConstMatrixView<float>(q, c.n_q_heads - 1, c.head_dim), out.view());
    });
    expect_error("out shape", "out:", [&] {
      s.attend(seq, 0, ConstMatrixView<float>(q, c.n_q_heads, c.head_dim),
               MatrixView<float>(out.data(), c.n_q_heads, c.head_dim - 1));
    });
    expect_error("layer", "layer:", [&] { s.append(seq, 2, k1.data(), v1.data()); });
    expect_error("empty layer", "no positions", [&] { attend(s, seq, 1, q); });
    // Unknown sequence, append after remove.
    expect_error("unknown seq", "unknown sequence", [&] { attend(s, seq + 100, 0, q); });
    const SeqId gone = s.add_sequence();
    s.prefill(gone, 0, rows(x.K, 0, 100), rows(x.V, 0, 100), rows(x.Q, 0, 100));
    s.remove_sequence(gone);
    EXPECT_EQ(s.memory_bytes(), bytes);
    try {
      s.append(gone, 0, k1.data(), v1.data());
      ADD_FAILURE() << "append after remove";
    } catch (const StoreError& e) {
      EXPECT_EQ(e.code(), StoreErrorCode::kUnknownSequence);
    }
    expect_error("remove twice", "unknown sequence", [&] { s.remove_sequence(gone); });
    // NaN / Inf in q, k, v, K, V, Q.
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
      std::vector<float> qb(q, q + qw);
      qb[qw - 3] = bad;
      expect_error("q non-finite", "q:", [&] { attend(s, seq, 0, qb.data()); });
      Matrix<float> kb = k1, vb = v1;
      kb.data()[5] = bad;
      expect_error("k non-finite", "k:", [&] { s.append(seq, 0, kb.data(), v1.data()); });
      vb.data()[kvw - 1] = bad;
      expect_error("v non-finite", "v:", [&] { s.append(seq, 0, k1.data(), vb.data()); });
      Matrix<float> Kb = x.K, Vb = x.V, Qb = x.Q;
      Kb(7, 3) = bad;
      Vb(8, 4) = bad;
      Qb(9, 5) = bad;
      expect_error("K non-finite",
                   "K:", [&] { s.prefill(seq, 1, Kb.view(), x.V.view(), x.Q.view()); });
      expect_error("V non-finite",
                   "V:", [&] { s.prefill(seq, 1, x.K.view(), Vb.view(), x.Q.view()); });
      expect_error("Q non-finite",
                   "Q:", [&] { s.prefill(seq, 1, x.K.view(), x.V.view(), Qb.view()); });
    }
    EXPECT_EQ(s.sequence_length(seq, 1), 0);
  }
}

TEST(KVVectorStore, MemoryBudgetRejectsWithoutSideEffects) {
  const LayerData x = make_layer(800, 2, 2, 16, 1, 11);
  for (Policy p : kAllPolicies) {
    StoreConfig c = make_config(x, p, 2);
    c.params.update_interval = 8;
    // Measure what one layer of 700 positions takes, then allow a little more than that.
    int64_t one_layer;
    {
      KVVectorStore probe(c);
      const SeqId a = probe.add_sequence();
      probe.prefill(a, 0, rows(x.K, 0, 700), rows(x.V, 0, 700), rows(x.Q, 0, 700));
      one_layer = probe.memory_bytes();
      EXPECT_GT(one_layer, 2 * 700 * c.kv_width() * 4 - 1) << policy_name(p);
    }
    c.host_memory_budget_bytes = one_layer + one_layer / 4;
    KVVectorStore s(c);
    const SeqId seq = s.add_sequence();
    s.prefill(seq, 0, rows(x.K, 0, 700), rows(x.V, 0, 700), rows(x.Q, 0, 700));
    EXPECT_EQ(s.memory_bytes(), one_layer);
    const auto before = attend(s, seq, 0, x.decode.row(0));
    auto expect_budget = [&](const char* what, auto&& call) {
      try {
        call();
        ADD_FAILURE() << "no budget error for " << what;
      } catch (const StoreError& e) {
        EXPECT_EQ(e.code(), StoreErrorCode::kMemoryBudget) << what;
        EXPECT_NE(std::string(e.what()).find("host_memory_budget_bytes"), std::string::npos);
      }
      EXPECT_EQ(s.memory_bytes(), one_layer) << what;
      EXPECT_EQ(s.sequence_length(seq, 0), 700) << what;
      EXPECT_EQ(s.sequence_length(seq, 1), 0) << what;
      EXPECT_TRUE(bit_equal(attend(s, seq, 0, x.decode.row(0)), before)) << policy_name(p);
    };
    expect_budget("prefill layer 1", [&] {
      s.prefill(seq, 1, rows(x.K, 0, 700), rows(x.V, 0, 700), rows(x.Q, 0, 700));
    });
    const SeqId other = s.add_sequence();
    expect_budget("prefill another sequence", [&] {
      s.prefill(other, 0, rows(x.K, 0, 700), rows(x.V, 0, 700), rows(x.Q, 0, 700));
    });
    // Appends fit until the geometric growth of the KV rows (past the prefill's decode
    // headroom of 700 / 8 + 256 rows) crosses the budget. x has 100 rows past 700: cycle them.
    int64_t appended = 0;
    for (; appended < 1000; ++appended) {
      try {
        s.append(seq, 0, x.K.row(700 + appended % 100), x.V.row(700 + appended % 100));
      } catch (const StoreError& e) {
        EXPECT_EQ(e.code(), StoreErrorCode::kMemoryBudget);
        break;
      }
    }
    // The KV headroom (343 rows) always fits; RoarGraph's index estimate (key copy and lists
    // that may double under inserts) reaches the budget first (measured: after 207 appends).
    EXPECT_GE(appended, p == Policy::kRoarGraph ? 200 : 343)
        << policy_name(p) << ": the prefill's decode headroom should fit";
    EXPECT_LT(appended, 1000) << policy_name(p) << ": the budget never bit";
    EXPECT_EQ(s.sequence_length(seq, 0), 700 + appended);
    EXPECT_LE(s.memory_bytes(), c.host_memory_budget_bytes);
  }
}

TEST(KVVectorStore, ConfigAndPolicyNames) {
  for (Policy p : kAllPolicies) EXPECT_EQ(parse_policy(policy_name(p)), p);
  EXPECT_THROW(parse_policy("hnsw"), Error);
  StoreConfig c;
  c.n_layers = 1;
  c.n_q_heads = 6;
  c.n_kv_heads = 4;
  c.head_dim = 64;
  try {
    KVVectorStore s(c);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.n_q_heads"), std::string::npos);
  }
  c.n_kv_heads = 2;
  c.params.budget_fraction = 1.5;
  EXPECT_THROW(KVVectorStore{c}, Error);
}

// With one thread the store runs the wave policy's KV heads of a sequence as one interleaved
// batch (WaveIndex::attend_steps); with more, one head per task (WaveIndex::attend). Both paths,
// for single attends (flat and per-head views), batches and after appends, must give the same
// bits, LSEs and statistics.
TEST(KVVectorStore, WaveBatchedHeadsEqualPerHeadSteps) {
  const LayerData x = make_layer(3000, 3, 3, 64, 6, 12);
  std::vector<std::unique_ptr<KVVectorStore>> stores;
  std::vector<SeqId> seq;
  for (int threads : {1, 2}) {
    StoreConfig c = make_config(x, Policy::kWave);
    c.threads = threads;
    stores.push_back(std::make_unique<KVVectorStore>(c));
    seq.push_back(stores.back()->add_sequence());
    stores.back()->prefill(seq.back(), 0, rows(x.K, 0, 2800), rows(x.V, 0, 2800),
                           rows(x.Q, 0, 2800));
    stores.back()->append(seq.back(), 0, rows(x.K, 2800, 100), rows(x.V, 2800, 100));
  }
  const int qw = stores[0]->config().q_width(), Hq = stores[0]->config().n_q_heads;
  for (int t = 0; t < 6; ++t) {
    std::vector<float> o[2], lse[2], oh[2];
    for (int k = 0; k < 2; ++k) {
      o[k].assign(qw, 0.f);
      lse[k].assign(Hq, 0.f);
      stores[k]->attend(seq[k], 0, x.decode.row(t), o[k].data(), lse[k].data());
      oh[k].assign(qw, 0.f);
      stores[k]->attend(seq[k], 0, ConstMatrixView<float>(x.decode.row(t), Hq, x.d),
                        MatrixView<float>(oh[k].data(), Hq, x.d));
    }
    EXPECT_TRUE(bit_equal(o[0], o[1])) << "step " << t;
    EXPECT_TRUE(bit_equal(lse[0], lse[1])) << "step " << t;
    EXPECT_TRUE(bit_equal(oh[0], o[0])) << "step " << t;
    EXPECT_TRUE(bit_equal(oh[1], o[1])) << "step " << t;
  }
  const LayerStats a = stores[0]->stats(0), b = stores[1]->stats(0);
  EXPECT_EQ(a.head_steps, b.head_steps);
  EXPECT_EQ(a.steady_tokens, b.steady_tokens);
  EXPECT_EQ(a.selected_tokens, b.selected_tokens);
  EXPECT_EQ(a.estimated_tokens, b.estimated_tokens);
  EXPECT_EQ(a.keys_scanned, b.keys_scanned);
  EXPECT_GT(a.exact_seconds, 0.0);
  // A batch of two sequences in the single-thread store equals its single attends.
  const SeqId other = stores[0]->add_sequence();
  stores[0]->prefill(other, 0, rows(x.K, 0, 1500), rows(x.V, 0, 1500), rows(x.Q, 0, 1500));
  Matrix<float> q(2, qw), out(2, qw);
  std::copy(x.decode.row(0), x.decode.row(0) + qw, q.row(0));
  std::copy(x.decode.row(1), x.decode.row(1) + qw, q.row(1));
  stores[0]->attend_batch({seq[0], other}, 0, q.view(), out.view());
  EXPECT_TRUE(bit_equal(std::vector<float>(out.row(0), out.row(0) + qw),
                        attend(*stores[0], seq[0], 0, x.decode.row(0))));
  EXPECT_TRUE(bit_equal(std::vector<float>(out.row(1), out.row(1) + qw),
                        attend(*stores[0], other, 0, x.decode.row(1))));
}

}  // namespace
// The group's merge of per-head ranked lists: round-robin by rank, first occurrence wins, at most
// `budget` ids. Checked against the obvious quadratic version on random lists with repeats.
TEST(KVVectorStore, RoundRobinUnionMatchesNaiveMerge) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const int g = 1 + trial % 4;
    std::uniform_int_distribution<int32_t> id(0, 1 + trial * 3);
    std::uniform_int_distribution<int> len(0, 40);
    std::vector<std::vector<int32_t>> lists(g);
    for (auto& l : lists) {
      l.resize(len(rng));
      for (auto& x : l) x = id(rng);
    }
    const int64_t budget = trial % 7 == 0 ? 0 : 1 + trial % 50;
    std::vector<int32_t> want;
    size_t longest = 0;
    for (const auto& l : lists) longest = std::max(longest, l.size());
    for (size_t r = 0; r < longest; ++r)
      for (const auto& l : lists)
        if (r < l.size() && static_cast<int64_t>(want.size()) < budget &&
            std::find(want.begin(), want.end(), l[r]) == want.end())
          want.push_back(l[r]);
    EXPECT_EQ(retrokv::detail::round_robin_union(lists, budget), want) << "trial " << trial;
  }
}

// The wave policy with the quantized estimation zone (WaveEstimator::kQuantized, issue 5): same
// zones and exact share as the centroid formula, a much smaller error, more memory (counted),
// and a save/load round trip that keeps the codes (bit-identical attention after the load).
TEST(KVVectorStore, WaveQuantizedEstimatorLowersErrorAndRoundTrips) {
  const int64_t n = 4000;
  const LayerData x = make_layer(n, 2, 3, 32, 8, 5);
  double mean_err[2] = {0, 0}, exact[2] = {0, 0};
  int64_t held[2] = {0, 0};
  for (int quantized = 0; quantized < 2; ++quantized) {
    StoreConfig c = make_config(x, Policy::kWave);
    c.params.budget_fraction = 0.02;
    if (quantized) {
      c.params.wave.quantized_zone = true;
      c.params.wave.budget.estimator = WaveEstimator::kQuantized;
    }
    KVVectorStore s(c);
    const SeqId seq = s.add_sequence();
    s.prefill(seq, 0, x.K.view(), x.V.view(), x.Q.view());
    for (int64_t t = 0; t < x.decode.rows(); ++t) {
      const auto o = attend(s, seq, 0, x.decode.row(t));
      const auto ref = reference(x, x.decode.row(t), x.n, c.effective_scale());
      mean_err[quantized] += mean_rel_error(o, ref, x.d) / double(x.decode.rows());
    }
    exact[quantized] = s.stats(0).exact_fraction();
    held[quantized] = s.memory_bytes();
    if (quantized) {
      const std::string path = temp_file("wave_quantized");
      s.save_sequence(seq, path);
      KVVectorStore t(c);
      const SeqId u = t.load_sequence(path);
      EXPECT_EQ(t.memory_bytes(), s.memory_bytes());
      for (int64_t i = 0; i < x.decode.rows(); ++i)
        EXPECT_TRUE(
            bit_equal(attend(s, seq, 0, x.decode.row(i)), attend(t, u, 0, x.decode.row(i))));
      std::filesystem::remove(path);
    }
  }
  std::printf("[ measure  ] wave centroid %.4f, quantized %.4f mean rel error; exact %.4f / %.4f\n",
              mean_err[0], mean_err[1], exact[0], exact[1]);
  EXPECT_EQ(exact[0], exact[1]);
  EXPECT_LT(mean_err[1], 0.5 * mean_err[0]);
  EXPECT_GT(held[1], held[0]);  // the codes are counted against the memory budget
  // kQuantized without the codes is a configuration error, named.
  StoreConfig bad = make_config(x, Policy::kWave);
  bad.params.wave.budget.estimator = WaveEstimator::kQuantized;
  EXPECT_NE(error_of([&] { KVVectorStore s(bad); }).find("config.params.wave.budget.estimator"),
            std::string::npos);
}

}  // namespace retrokv
