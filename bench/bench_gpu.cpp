// GPU benchmark of issue 6: one table with (1) exact split-KV decode attention at 128K tokens,
// batch 8, GQA 32/8, d = 128, bf16, as achieved HBM bandwidth against a device-to-device copy
// measured in the same run; (2) the wave-index decode step (centroid scoring + estimation +
// gather attention + merge, cache warm) against full attention at 128K and 512K tokens; (3) the
// wave buffer's LRU hit ratio over 256 decode steps of a drifting synthetic query stream.
// Without a device it prints why and exits 0. Usage: bench_gpu [--quick]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "retrokv/core/half.h"
#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/device.h"
#include "retrokv/cuda/knn.h"
#include "retrokv/cuda/memory.h"
#include "retrokv/cuda/scoring.h"
#include "retrokv/cuda/wave_buffer_policy.h"

namespace rc = retrokv::cuda;
using retrokv::bfloat16;

namespace {

struct Row {
  std::string name;
  double value;
  std::string unit;
  std::string note;
};

// Mean seconds per call of fn over `iters` calls after `warmup` calls (synchronised).
double time_it(const std::function<void()>& fn, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  rc::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  rc::synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(t1 - t0).count() / iters;
}

// Fills a device buffer with random values of type T, tiling one random host block.
template <typename T>
void fill_random(rc::DeviceBuffer& buf, size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  const size_t block = std::min<size_t>(n, size_t{1} << 24);
  std::vector<T> host(block);
  for (auto& x : host) x = T(u(rng));
  for (size_t off = 0; off < n; off += block) {
    const size_t take = std::min(block, n - off);
    buf.copy_from_host(host.data(), take * sizeof(T), off * sizeof(T));
  }
}

template <typename T>
rc::DeviceBuffer upload(const std::vector<T>& v) {
  rc::DeviceBuffer b(std::max<size_t>(v.size() * sizeof(T), 16));
  b.copy_from_host(v.data(), v.size() * sizeof(T));
  return b;
}

struct FullAttention {
  int batch, n_q, n_kv, d;
  int64_t n;
  rc::DeviceBuffer k, v, indptr, q, o, lse, ws;
  rc::DecodePlan plan;
  FullAttention(int batch_, int n_q_, int n_kv_, int d_, int64_t n_)
      : batch(batch_), n_q(n_q_), n_kv(n_kv_), d(d_), n(n_) {
    const size_t elems = static_cast<size_t>(batch) * n * n_kv * d;
    k = rc::DeviceBuffer(elems * 2);
    v = rc::DeviceBuffer(elems * 2);
    fill_random<bfloat16>(k, elems, 1.f, 1);
    fill_random<bfloat16>(v, elems, 1.f, 2);
    std::vector<int32_t> ip(batch + 1);
    for (int b = 0; b <= batch; ++b) ip[b] = static_cast<int32_t>(b * n);
    indptr = upload(ip);
    q = rc::DeviceBuffer(static_cast<size_t>(batch) * n_q * d * 4);
    fill_random<float>(q, static_cast<size_t>(batch) * n_q * d, 1.f, 3);
    o = rc::DeviceBuffer(static_cast<size_t>(batch) * n_q * d * 4);
    lse = rc::DeviceBuffer(static_cast<size_t>(batch) * n_q * 4);
    plan = rc::plan_ragged_decode(batch, n_q, n_kv, d, n, rc::multiprocessor_count());
    ws = rc::DeviceBuffer(plan.workspace_bytes);
  }
  size_t kv_bytes() const { return static_cast<size_t>(batch) * n * n_kv * d * 2 * 2; }
  void run() {
    rc::RaggedKV kv{k.data(),
                    v.data(),
                    retrokv::DType::kBFloat16,
                    indptr.as<int32_t>(),
                    static_cast<int64_t>(n_kv) * d,
                    d};
    rc::check_status(rc::decode_attention(q.as<float>(), kv, plan, 1.f / std::sqrt(float(d)),
                                          ws.data(), o.as<float>(), lse.as<float>()),
                     "decode_attention");
  }
};

// One wave-index decode step over clusters of 16 tokens stored as pages of 16 (cache warm: every
// retrieved cluster's page is resident): score, estimate, gather, merge.
struct WaveStep {
  int batch, n_q, n_kv, d, r, e;
  int64_t n_clusters;  // per list
  rc::DeviceBuffer centroids, value_sums, sizes, c_indptr, q, ws_score, scores, rid, eid;
  rc::DeviceBuffer r_indptr, e_indptr, o_parts, lse_parts, o, lse, ws_est, ws_gather;
  rc::DecodePlan est_plan, gather_plan;
  const FullAttention* kv;  // the same K/V, viewed as a page pool per KV head
  rc::DeviceBuffer pages_k, pages_v;

  WaveStep(const FullAttention& full, double r_frac, double e_frac) : kv(&full) {
    batch = full.batch, n_q = full.n_q, n_kv = full.n_kv, d = full.d;
    n_clusters = full.n / 16;
    r = std::max(1, static_cast<int>(r_frac * n_clusters));
    e = std::max(1, static_cast<int>(e_frac * n_clusters));
    const int lists = batch * n_kv;
    const size_t total = static_cast<size_t>(lists) * n_clusters;
    centroids = rc::DeviceBuffer(total * d * 4);
    value_sums = rc::DeviceBuffer(total * d * 4);
    fill_random<float>(centroids, total * d, 1.f, 4);
    fill_random<float>(value_sums, total * d, 16.f, 5);
    sizes = upload(std::vector<int32_t>(total, 16));
    std::vector<int32_t> ci(lists + 1), ri(lists + 1), ei(lists + 1);
    for (int l = 0; l <= lists; ++l) {
      ci[l] = static_cast<int32_t>(l * n_clusters);
      ri[l] = l * r;
      ei[l] = l * e;
    }
    c_indptr = upload(ci);
    r_indptr = upload(ri);
    e_indptr = upload(ei);
    q = rc::DeviceBuffer(static_cast<size_t>(batch) * n_q * d * 4);
    fill_random<float>(q, static_cast<size_t>(batch) * n_q * d, 1.f, 6);
    ws_score =
        rc::DeviceBuffer(rc::scoring_workspace_bytes(n_q, n_kv, static_cast<int64_t>(total)));
    scores = rc::DeviceBuffer(total * 4);
    rid = rc::DeviceBuffer(static_cast<size_t>(lists) * r * 4);
    eid = rc::DeviceBuffer(static_cast<size_t>(lists) * e * 4);
    const size_t rows = static_cast<size_t>(batch) * n_q;
    o_parts = rc::DeviceBuffer(2 * rows * d * 4);
    lse_parts = rc::DeviceBuffer(2 * rows * 4);
    o = rc::DeviceBuffer(rows * d * 4);
    lse = rc::DeviceBuffer(rows * 4);
    const int sms = rc::multiprocessor_count();
    est_plan = rc::plan_estimation(batch, n_q, n_kv, d, e, sms);
    gather_plan = rc::plan_paged_decode(batch, n_q, n_kv, d, r, 16, sms);
    ws_est = rc::DeviceBuffer(est_plan.workspace_bytes);
    ws_gather = rc::DeviceBuffer(gather_plan.workspace_bytes);
    // Page pool: cluster c of list l is page l * n_clusters + c (16 tokens of one KV head).
    pages_k = rc::DeviceBuffer(total * 16 * d * 2);
    pages_v = rc::DeviceBuffer(total * 16 * d * 2);
    fill_random<bfloat16>(pages_k, total * 16 * d, 1.f, 7);
    fill_random<bfloat16>(pages_v, total * 16 * d, 1.f, 8);
  }
  size_t pool_bytes() const { return pages_k.bytes() + pages_v.bytes(); }

  void run() {
    const float scale = 1.f / std::sqrt(float(d));
    const int64_t lists = static_cast<int64_t>(batch) * n_kv;
    rc::check_status(
        rc::score_centroids(q.as<float>(),
                            rc::CentroidSet{centroids.as<float>(), c_indptr.as<int32_t>()}, batch,
                            n_q, n_kv, d, n_clusters, r, e, scale, ws_score.data(),
                            scores.as<float>(), rid.as<int32_t>(), eid.as<int32_t>()),
        "score_centroids");
    const size_t rows = static_cast<size_t>(batch) * n_q;
    rc::ClusterSummaries cs{centroids.as<float>(), value_sums.as<float>(), sizes.as<int32_t>(),
                            e_indptr.as<int32_t>(), eid.as<int32_t>()};
    rc::check_status(rc::estimation_attention(q.as<float>(), cs, est_plan, scale, ws_est.data(),
                                              o_parts.as<float>(), lse_parts.as<float>()),
                     "estimation_attention");
    rc::PagedKV pk{
        pages_k.data(),    pages_v.data(), retrokv::DType::kBFloat16, 16, r_indptr.as<int32_t>(),
        rid.as<int32_t>(), nullptr};
    rc::check_status(
        rc::paged_decode_attention(q.as<float>(), pk, gather_plan, scale, ws_gather.data(),
                                   o_parts.as<float>() + rows * d, lse_parts.as<float>() + rows),
        "paged_decode_attention");
    rc::check_status(
        rc::merge_states(o_parts.as<float>(), lse_parts.as<float>(), 2, static_cast<int64_t>(rows),
                         d, o.as<float>(), lse.as<float>()),
        "merge_states");
    (void)lists;
  }

  // Hit ratio of one LRU policy per list (capacity 5% of its tokens) over `steps` decode steps of
  // a query stream q_t = normalise(q_{t-1} + 0.3 * noise).
  double hit_ratio(int steps) {
    const int lists = batch * n_kv;
    std::vector<retrokv::WaveBufferPolicy> pol;
    for (int l = 0; l < lists; ++l)
      pol.emplace_back(retrokv::capacity_pages_for_fraction(n_clusters * 16, 16, 0.05));
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> qh(static_cast<size_t>(batch) * n_q * d);
    for (auto& x : qh) x = nd(rng);
    std::vector<int32_t> ids(static_cast<size_t>(lists) * r);
    int64_t hits = 0, total = 0;
    for (int s = 0; s < steps; ++s) {
      for (auto& x : qh) x = 0.95f * x + 0.3f * nd(rng);
      q.copy_from_host(qh.data(), qh.size() * 4);
      run();
      rid.copy_to_host(ids.data(), ids.size() * 4);
      for (int l = 0; l < lists; ++l) {
        std::vector<int32_t> sel(ids.begin() + static_cast<int64_t>(l) * r,
                                 ids.begin() + static_cast<int64_t>(l + 1) * r);
        sel.erase(std::remove(sel.begin(), sel.end(), -1), sel.end());
        auto lk = pol[l].lookup(sel);
        hits += static_cast<int64_t>(lk.hits.size());
        total += static_cast<int64_t>(sel.size());
        pol[l].admit(lk.misses, std::vector<int32_t>(lk.misses.size(), 1));
      }
    }
    return total == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(total);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (rc::device_count() == 0) {
    std::printf("bench_gpu: no CUDA device (built_with_cuda=%d); nothing measured.\n",
                rc::built_with_cuda() ? 1 : 0);
    return 0;
  }
  std::vector<Row> rows;
  const int iters = quick ? 3 : 20;

  // (1) Full attention at 128K, batch 8, GQA 32/8, d 128, bf16, vs a D2D copy of the same bytes.
  FullAttention full(8, 32, 8, 128, quick ? 16384 : 131072);
  const double t_full = time_it([&] { full.run(); }, 2, iters);
  const size_t bytes = full.kv_bytes();
  rc::DeviceBuffer dst(full.k.bytes());
  const double t_copy = time_it(
      [&] { rc::check_status(rc::device_copy(dst.data(), full.k.data(), full.k.bytes()), "copy"); },
      2, iters);
  const double bw_attn = bytes / t_full;
  const double bw_copy = 2.0 * full.k.bytes() / t_copy;  // a copy reads and writes
  rows.push_back({"full decode n=" + std::to_string(full.n) + " b8 gqa32/8 d128 bf16", t_full * 1e6,
                  "us", ""});
  rows.push_back({"  achieved KV read bandwidth", bw_attn / 1e9, "GB/s", ""});
  rows.push_back({"  D2D copy bandwidth (read+write)", bw_copy / 1e9, "GB/s", "same run"});
  rows.push_back({"  bandwidth ratio attention/copy", bw_attn / bw_copy, "", "target >= 0.8"});
  rows.push_back({"  PyTorch SDPA ratio", NAN, "", "not measured by this program"});

  // (2) Wave step vs full attention at 128K (batch 8) and 512K (batch 2).
  for (int64_t n : {int64_t{131072}, int64_t{524288}}) {
    if (quick && n > 131072) break;
    const int batch = n > 131072 ? 2 : 8;
    FullAttention f(batch, 32, 8, 128, quick ? 16384 : n);
    WaveStep w(f, 0.018, 0.23);
    const double tf = time_it([&] { f.run(); }, 2, iters);
    const double tw = time_it([&] { w.run(); }, 2, iters);
    const std::string tag = "n=" + std::to_string(f.n) + " b" + std::to_string(batch);
    rows.push_back({"wave step " + tag + " (r 1.8%, e 23%)", tw * 1e6, "us", "cache warm"});
    rows.push_back({"  full attention " + tag, tf * 1e6, "us", ""});
    rows.push_back({"  speed-up full/wave", tf / tw, "x", "target >= 4"});
    if (n == 131072) {
      rows.push_back({"  LRU hit ratio, 256 steps, 5% cache", w.hit_ratio(quick ? 16 : 256), "",
                      "synthetic drifting queries"});
    }
  }

  // (3) Exact kNN for the RoarGraph build: 32K training queries x 128K keys, d 128, k 100.
  {
    const int64_t nq = quick ? 2048 : 32768, nk = quick ? 16384 : 131072;
    const int d = 128, k = 100;
    rc::DeviceBuffer dq(static_cast<size_t>(nq) * d * 4), dk(static_cast<size_t>(nk) * d * 4);
    fill_random<float>(dq, static_cast<size_t>(nq) * d, 1.f, 10);
    fill_random<float>(dk, static_cast<size_t>(nk) * d, 1.f, 11);
    const size_t ws_bytes = rc::knn_workspace_bytes(nq, nk, d, k);
    rc::DeviceBuffer ws(ws_bytes), ids(static_cast<size_t>(nq) * k * 4),
        sc(static_cast<size_t>(nq) * k * 4);
    const double t = time_it(
        [&] {
          rc::check_status(rc::exact_knn(dq.as<float>(), dk.as<float>(), nq, nk, d, k, ws.data(),
                                         ws_bytes, ids.as<int32_t>(), sc.as<float>()),
                           "exact_knn");
        },
        1, quick ? 1 : 3);
    rows.push_back(
        {"exact kNN " + std::to_string(nq) + " q x " + std::to_string(nk) + " keys d128 k100",
         t * 1e3, "ms", "cuBLAS fp32 GEMM + radix top-k"});
    rows.push_back({"  GEMM throughput", 2.0 * nq * nk * d / t / 1e12, "TFLOP/s", ""});
  }

  std::printf("%-48s %14s  %-5s %s\n", "measurement", "value", "unit", "note");
  for (const auto& r : rows)
    std::printf("%-48s %14.3f  %-5s %s\n", r.name.c_str(), r.value, r.unit.c_str(), r.note.c_str());
  return 0;
}
