// Quickstart (issue 7): a KVVectorStore over a synthetic KV cache, one decode step per policy,
// printing each policy's output error against full attention and the share of the context it
// read exactly. The user code is main(); make_kv() only invents data a model would produce.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "retrokv/store/kv_vector_store.h"

namespace {

// Synthetic attention-like data for one layer: keys around random "topics" that change every 32
// positions (text has locality), values random, prompt and decode queries aimed at a few topics
// each (so attention is sparse, as in a model).
struct SyntheticKV {
  std::vector<float> K, V, Q, q;  // (n, H*d), (n, H*d), (n, Hq*d), (Hq*d)
};

SyntheticKV make_kv(int64_t n, int H, int Hq, int d, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> topics(256 * d);
  for (float& x : topics) x = 1.5f * normal(rng);
  auto topic = [&](int t, int j) { return topics[(t % 256) * d + j]; };
  auto query = [&](float* row) {
    for (int j = 0; j < d; ++j) row[j] = 0.3f * normal(rng);
    for (int a = 0; a < 3; ++a) {
      const int t = static_cast<int>(rng() % 256);
      for (int j = 0; j < d; ++j) row[j] += 0.6f * topic(t, j);
    }
  };
  SyntheticKV x{std::vector<float>(n * H * d), std::vector<float>(n * H * d),
                std::vector<float>(n * Hq * d), std::vector<float>(Hq * d)};
  int t = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 32 == 0) t = static_cast<int>(rng() % 256);
    for (int j = 0; j < H * d; ++j)
      x.K[i * H * d + j] = topic(t + j / d, j % d) + 0.5f * normal(rng);
    for (int j = 0; j < H * d; ++j) x.V[i * H * d + j] = normal(rng);
    for (int h = 0; h < Hq; ++h) query(&x.Q[(i * Hq + h) * d]);
  }
  for (int h = 0; h < Hq; ++h) query(&x.q[h * d]);
  return x;
}

}  // namespace

int main() {
  const int n_layers = 1, n_q_heads = 8, n_kv_heads = 2, head_dim = 64;
  const int64_t n = 8192;  // prompt positions
  const SyntheticKV x = make_kv(n, n_kv_heads, n_q_heads, head_dim, 7);

  // ---- user code: one store per policy, prefill the prompt, decode one step ----
  std::vector<float> full_out;
  for (retrokv::Policy policy :
       {retrokv::Policy::kFull, retrokv::Policy::kFlatTopK, retrokv::Policy::kRoarGraph,
        retrokv::Policy::kWave, retrokv::Policy::kQuest}) {
    retrokv::StoreConfig config;
    config.n_layers = n_layers;
    config.n_q_heads = n_q_heads;
    config.n_kv_heads = n_kv_heads;
    config.head_dim = head_dim;
    config.kv_dtype = retrokv::DType::kFloat16;
    config.policy = policy;
    config.params.budget_fraction = 0.02;  // read 2% of the context exactly (+ steady zone)
    config.params.roar.max_train_queries = 4096;
    retrokv::KVVectorStore store(config);

    const retrokv::SeqId seq = store.add_sequence();
    const int kv = n_kv_heads * head_dim, qw = n_q_heads * head_dim;
    store.prefill(seq, /*layer=*/0, retrokv::ConstMatrixView<float>(x.K.data(), n, kv),
                  retrokv::ConstMatrixView<float>(x.V.data(), n, kv),
                  retrokv::ConstMatrixView<float>(x.Q.data(), n, qw));
    std::vector<float> out(qw);
    store.attend(seq, /*layer=*/0, x.q.data(), out.data());  // waits for the index build

    if (policy == retrokv::Policy::kFull) full_out = out;
    double err = 0, ref = 0;
    for (int i = 0; i < qw; ++i) {
      err += (out[i] - full_out[i]) * (out[i] - full_out[i]);
      ref += full_out[i] * full_out[i];
    }
    const retrokv::LayerStats st = store.stats(0);
    std::printf("%-10s  relative error vs full %.4f   exact share %.3f   keys scanned %lld\n",
                retrokv::policy_name(policy), std::sqrt(err / ref), st.exact_fraction(),
                static_cast<long long>(st.keys_scanned));
  }
  return 0;
}
