// retrokv-eval recall (issue 4, DESIGN.md section 5 "Recall"): recall@k against the exact Flat
// top-k vs keys scanned, latency, build time and memory for every index (Flat, IVF, RoarGraph,
// and the hnswlib / Faiss baselines when built with them) on a trace directory from
// retrokv-trace or a synthetic OOD set, plus the OOD statistics that motivate RoarGraph.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "retrokv/core/error.h"
#include "retrokv/core/npy.h"
#include "retrokv/index/flat.h"
#include "retrokv/index/ivf.h"
#include "retrokv/index/knn.h"
#include "retrokv/index/roar_graph.h"

#ifdef RETROKV_HAVE_HNSWLIB
#include <hnswlib/hnswlib.h>
#endif
#ifdef RETROKV_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#endif

namespace retrokv::eval {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string trace;
  std::string synthetic;  // "n,d,m"
  std::vector<int> ks{10, 100};
  std::string out;
  std::string plot;
  std::vector<std::string> indexes{"flat", "ivf", "roargraph", "hnswlib", "faiss_ivf"};
  std::vector<int> efs{10, 20, 30, 40, 60, 80, 100, 150, 200, 300, 500, 800, 1200, 2000};
  std::vector<int> nprobes{1, 2, 4, 8, 16, 32, 64, 128, 256};
  int64_t max_test = 300;
  int64_t train_max = 0;
  int max_heads = 0;
  int roar_L = 500;
  int roar_M = 35;
  int roar_entry = 4;
  std::vector<int> warm;  // RoarGraph warm-start seed counts to evaluate (besides cold)
  int seed_recent = 0;    // RoarGraph: also seed from the last this-many keys
  int hnsw_M = 16;
  int hnsw_ef_construction = 200;
  uint64_t seed = 2024;
  std::string save_roargraph;
};

/// One KV head: keys (n, d), training queries (m, d), test queries (t, d), one head per row.
struct Dataset {
  std::string layer = "all";
  std::string kv_head = "all";
  Matrix<float> keys, train, test;
  /// Test rows come in runs of this many consecutive decode steps of one query head (0: not a
  /// sequence, e.g. synthetic or strided): what a warm start from the previous step needs.
  int64_t test_run = 0;
};

/// One measured (index, param, k) point; latencies are kept so heads can be aggregated.
struct Point {
  std::string index;
  int param = 0;
  int k = 0;
  double recall = 0, keys_scanned = 0, keys_scanned_frac = 0, build_s = 0;
  int64_t memory = 0;
  std::vector<double> latencies_us;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Rows of a 2-D or 3-D float npy flattened to (rows, last dim).
Matrix<float> load_rows(const fs::path& path) {
  const NpyArray a = load_npy(path.string());
  RETROKV_CHECK(a.shape.size() >= 2, "trace: ", path.string(), ": expected >= 2 dimensions");
  const int64_t d = a.shape.back();
  const int64_t rows = d > 0 ? a.size() / d : 0;
  Matrix<float> m(rows, d);
  if (a.dtype == "<f4") {
    std::copy(a.data<float>(), a.data<float>() + rows * d, m.data());
  } else {
    RETROKV_CHECK(a.dtype == "<f2", "trace: ", path.string(), ": expected float32 or float16, got ",
                  a.dtype);
    const half* src = a.data<half>();
    for (int64_t i = 0; i < rows * d; ++i) m.data()[i] = to_float(src[i]);
  }
  return m;
}

/// At most `max_rows` evenly spaced rows of m.
Matrix<float> stride_rows(const Matrix<float>& m, int64_t max_rows) {
  if (max_rows <= 0 || m.rows() <= max_rows) return m;
  Matrix<float> out(max_rows, m.cols());
  for (int64_t i = 0; i < max_rows; ++i) {
    const int64_t r = i * m.rows() / max_rows;
    std::copy(m.row(r), m.row(r) + m.cols(), out.row(i));
  }
  return out;
}

std::vector<Dataset> load_trace(const Options& o) {
  std::vector<std::pair<std::pair<int, int>, fs::path>> dirs;
  const std::regex re("L([0-9]+)_H([0-9]+)");
  RETROKV_CHECK(fs::is_directory(o.trace), "--trace: expected a directory, got '", o.trace, "'");
  for (const auto& e : fs::directory_iterator(o.trace)) {
    std::smatch mt;
    const std::string name = e.path().filename().string();
    if (e.is_directory() && std::regex_match(name, mt, re)) {
      dirs.push_back({{std::stoi(mt[1]), std::stoi(mt[2])}, e.path()});
    }
  }
  std::sort(dirs.begin(), dirs.end());
  RETROKV_CHECK(!dirs.empty(), "--trace: no L{layer}_H{kvhead} folders in '", o.trace, "'");
  if (o.max_heads > 0 && static_cast<int>(dirs.size()) > o.max_heads) {
    // Evenly spaced heads across layers rather than the first few.
    std::vector<std::pair<std::pair<int, int>, fs::path>> keep;
    for (int i = 0; i < o.max_heads; ++i) keep.push_back(dirs[i * dirs.size() / o.max_heads]);
    dirs = keep;
  }
  std::vector<Dataset> out;
  for (const auto& [lh, dir] : dirs) {
    Dataset ds;
    ds.layer = std::to_string(lh.first);
    ds.kv_head = std::to_string(lh.second);
    ds.keys = load_rows(dir / "keys.npy");
    ds.train = load_rows(dir / "prefill_queries.npy");
    const Matrix<float> decode = load_rows(dir / "decode_queries.npy");
    ds.test = stride_rows(decode, o.max_test);
    if (ds.test.rows() == decode.rows()) {
      // decode_queries.npy is (q_heads, steps, d) or (steps, d): rows are step-major per head.
      const std::vector<int64_t> shape = load_npy(dir / "decode_queries.npy").shape;
      ds.test_run = shape.size() >= 2 ? shape[shape.size() - 2] : 0;
    }
    RETROKV_CHECK(ds.train.cols() == ds.keys.cols() && ds.test.cols() == ds.keys.cols(),
                  "trace: ", dir.string(), ": queries and keys differ in d");
    out.push_back(std::move(ds));
  }
  return out;
}

Dataset make_synthetic(const Options& o) {
  std::vector<int64_t> v;
  std::stringstream ss(o.synthetic);
  for (std::string part; std::getline(ss, part, ',');) v.push_back(std::stoll(part));
  RETROKV_CHECK(v.size() == 3 && v[0] >= 1 && v[1] >= 2 && v[2] >= 1,
                "--synthetic: expected n,d,m with n >= 1, d >= 2, m >= 1, got '", o.synthetic, "'");
  SyntheticAttention s = make_ood_synthetic(v[0], static_cast<int>(v[1]), v[2], o.max_test, o.seed);
  Dataset ds;
  ds.keys = std::move(s.keys);
  ds.train = std::move(s.train_queries);
  ds.test = std::move(s.test_queries);
  return ds;
}

/// Runs search(i, k, param) -> (ids, scanned) for every test query and every param, timing each.
using SearchFn = std::function<std::pair<std::vector<int32_t>, int64_t>(int64_t, int, int)>;

void sweep(const Dataset& ds, const KnnResult& truth, const std::string& index, int k,
           const std::vector<int>& params, double build_s, int64_t memory, const SearchFn& fn,
           std::vector<Point>& out) {
  const int64_t t = ds.test.rows(), n = ds.keys.rows();
  for (int param : params) {
    Point p;
    p.index = index;
    p.param = param;
    p.k = k;
    p.build_s = build_s;
    p.memory = memory;
    double hits = 0, scanned = 0;
    for (int64_t i = 0; i < t; ++i) {
      const auto t0 = Clock::now();
      const auto [ids, sc] = fn(i, k, param);
      p.latencies_us.push_back(seconds_since(t0) * 1e6);
      const std::set<int32_t> want(truth.row_ids(i), truth.row_ids(i) + k);
      for (int32_t id : ids) hits += want.count(id);
      scanned += static_cast<double>(sc);
    }
    p.recall = hits / (double(k) * t);
    p.keys_scanned = scanned / t;
    p.keys_scanned_frac = p.keys_scanned / n;
    out.push_back(std::move(p));
    std::fprintf(stderr, "  %-10s k=%-4d param=%-5d recall=%.4f scanned=%.4f of n\n", index.c_str(),
                 k, param, out.back().recall, out.back().keys_scanned_frac);
  }
}

/// Beam widths (at most n, duplicates dropped). RoarGraph may run with ef < k (it returns the
/// top-k of every key it scored); hnswlib raises ef to k itself.
std::vector<int> efs_for(const Options& o, int64_t n) {
  std::set<int> s;
  for (int ef : o.efs) s.insert(static_cast<int>(std::min<int64_t>(ef, n)));
  return {s.begin(), s.end()};
}

std::vector<int> nprobes_for(const Options& o, int nlist) {
  std::set<int> s;
  for (int p : o.nprobes) s.insert(std::min(p, nlist));
  return {s.begin(), s.end()};
}

#ifdef RETROKV_HAVE_HNSWLIB
/// hnswlib's inner-product space with every distance computation counted (thread-local), so
/// "keys scanned" means the same for HNSW as for our indexes.
class CountingIpSpace : public hnswlib::SpaceInterface<float> {
 public:
  explicit CountingIpSpace(size_t d) : inner_(d) {
    param_.fn = inner_.get_dist_func();
    param_.param = inner_.get_dist_func_param();
  }
  size_t get_data_size() override { return inner_.get_data_size(); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return &counted; }
  void* get_dist_func_param() override { return &param_; }
  static int64_t& counter() {
    thread_local int64_t c = 0;
    return c;
  }

 private:
  struct Param {
    hnswlib::DISTFUNC<float> fn;
    void* param;
  };
  static float counted(const void* a, const void* b, const void* p) {
    ++counter();
    const auto* w = static_cast<const Param*>(p);
    return w->fn(a, b, w->param);
  }
  hnswlib::InnerProductSpace inner_;
  Param param_;
};
#endif

/// Mean cosine of random (query, key) pairs and of random (key, key) pairs.
std::pair<double, double> mean_cosines(const Dataset& ds, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t n = ds.keys.rows(), t = ds.test.rows(), d = ds.keys.cols();
  auto cos = [d](const float* a, const float* b) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t j = 0; j < d; ++j) {
      ab += double(a[j]) * b[j];
      aa += double(a[j]) * a[j];
      bb += double(b[j]) * b[j];
    }
    return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
  };
  double qk = 0, kk = 0;
  const int pairs = 20000;
  for (int i = 0; i < pairs; ++i) {
    qk += cos(ds.test.row(rng() % t), ds.keys.row(rng() % n));
    kk += cos(ds.keys.row(rng() % n), ds.keys.row(rng() % n));
  }
  return {qk / pairs, kk / pairs};
}

void write_point(std::ofstream& jl, std::ofstream& csv, const Point& p, const std::string& layer,
                 const std::string& head, int64_t n, int d) {
  json j;
  j["index"] = p.index;
  j["param"] = p.param;
  j["k"] = p.k;
  j["recall"] = p.recall;
  j["keys_scanned"] = p.keys_scanned;
  j["keys_scanned_frac"] = p.keys_scanned_frac;
  j["latency_us_median"] = percentile(p.latencies_us, 0.5);
  j["latency_us_p99"] = percentile(p.latencies_us, 0.99);
  j["build_s"] = p.build_s;
  j["memory"] = p.memory;
  j["layer"] = layer;
  j["kv_head"] = head;
  j["n"] = n;
  j["d"] = d;
  jl << j.dump() << "\n";
  csv << p.index << "," << p.param << "," << p.k << "," << p.recall << "," << p.keys_scanned << ","
      << p.keys_scanned_frac << "," << percentile(p.latencies_us, 0.5) << ","
      << percentile(p.latencies_us, 0.99) << "," << p.build_s << "," << p.memory << "," << layer
      << "," << head << "," << n << "," << d << "\n";
}

bool wanted(const Options& o, const std::string& name) {
  return std::find(o.indexes.begin(), o.indexes.end(), name) != o.indexes.end();
}

/// Every index on one head; appends its points and writes its OOD statistics line.
std::vector<Point> eval_head(const Options& o, const Dataset& ds, std::ofstream& jl) {
  const int64_t n = ds.keys.rows();
  const int d = static_cast<int>(ds.keys.cols());
  const int kmax =
      static_cast<int>(std::min<int64_t>(n, *std::max_element(o.ks.begin(), o.ks.end())));
  std::fprintf(stderr, "head L%s_H%s: n=%lld d=%d train=%lld test=%lld\n", ds.layer.c_str(),
               ds.kv_head.c_str(), static_cast<long long>(n), d,
               static_cast<long long>(ds.train.rows()), static_cast<long long>(ds.test.rows()));
  const KnnResult truth = knn_inner_product(ds.test.view(), ds.keys.view(), kmax);
  std::vector<Point> pts;
  auto row = [&](int64_t i) { return ds.test.view().slice_rows(i, 1); };
  auto run_index = [&](const TokenIndex& idx, const std::string& name, int k,
                       const std::vector<int>& params, bool ef_param, double build_s) {
    sweep(
        ds, truth, name, k, params, build_s, idx.memory_bytes(),
        [&](int64_t i, int kk, int param) {
          SearchParams sp;
          sp.k = kk;
          (ef_param ? sp.ef : sp.nprobe) = param;
          SearchResult r = idx.search(row(i), sp);
          return std::make_pair(std::move(r.ids), r.keys_scanned);
        },
        pts);
  };
  std::vector<int> ks;
  for (int k : o.ks) ks.push_back(static_cast<int>(std::min<int64_t>(k, n)));

  if (wanted(o, "flat")) {
    const auto t0 = Clock::now();
    const FlatIndex flat(ds.keys.view());
    const double b = seconds_since(t0);
    for (int k : ks) run_index(flat, "flat", k, {0}, false, b);
  }
  if (wanted(o, "ivf")) {
    const auto t0 = Clock::now();
    IvfParams ip;
    ip.seed = o.seed;
    const IvfIndex ivf = IvfIndex::build(ds.keys.view(), ip);
    const double b = seconds_since(t0);
    for (int k : ks) run_index(ivf, "ivf", k, nprobes_for(o, ivf.nlist()), false, b);
  }
  std::unique_ptr<RoarGraphIndex> roar;
  if (wanted(o, "roargraph")) {
    RoarGraphParams rp;
    rp.max_train_queries = o.train_max;
    rp.L = o.roar_L;
    rp.M = o.roar_M;
    rp.n_entry_points = o.roar_entry;
    rp.seed = o.seed;
    roar = std::make_unique<RoarGraphIndex>(
        RoarGraphIndex::build(ds.keys.view(), ds.train.view(), rp));
    const auto& st = roar->stats();
    std::fprintf(stderr, "  roargraph build %.1f s (knn %.1f s at %.1f GFLOP/s, m=%lld)\n",
                 st.build_seconds, st.knn_seconds, st.knn_gflops,
                 static_cast<long long>(st.train_queries_used));
    if (!o.save_roargraph.empty()) roar->save(o.save_roargraph);
    for (int k : ks) run_index(*roar, "roargraph", k, efs_for(o, n), true, st.build_seconds);
    // Warm start: each decode step of a query head also starts from the first w ids of that
    // head's previous step's answer (same ef), as a decode loop would; the first step is cold.
    // Recent seeds: the last r keys (the newest tokens, which decode queries attend to most).
    std::vector<std::pair<int, int>> variants;  // (w, r)
    for (int w : o.warm) variants.push_back({w, 0});
    if (o.seed_recent > 0) {
      variants.push_back({0, o.seed_recent});
      for (int w : o.warm) variants.push_back({w, o.seed_recent});
    }
    for (const auto& [w, r] : variants) {
      if (w > 0 && ds.test_run <= 1) {
        std::fprintf(stderr,
                     "  roargraph warm start: test queries are not a decode sequence "
                     "(synthetic or --max-test below the trace's), skipped\n");
        continue;
      }
      const std::string name = std::string("roargraph") +
                               (w > 0 ? "_warm" + std::to_string(w) : "") +
                               (r > 0 ? "_recent" + std::to_string(r) : "");
      std::vector<int32_t> recent;
      for (int64_t id = std::max<int64_t>(0, n - r); id < n; ++id)
        recent.push_back(static_cast<int32_t>(id));
      for (int k : ks) {
        std::vector<int32_t> prev, seeds;
        sweep(
            ds, truth, name, k, efs_for(o, n), st.build_seconds, roar->memory_bytes(),
            [&](int64_t i, int kk, int ef) {
              SearchParams sp;
              sp.k = kk;
              sp.ef = ef;
              if (ds.test_run > 0 && i % ds.test_run == 0) prev.clear();
              seeds.assign(prev.begin(), prev.begin() + std::min<size_t>(prev.size(), w));
              seeds.insert(seeds.end(), recent.begin(), recent.end());
              sp.warm_start = seeds.data();
              sp.n_warm_start = static_cast<int>(seeds.size());
              SearchResult res = roar->search(row(i), sp);
              prev = res.ids;
              return std::make_pair(std::move(res.ids), res.keys_scanned);
            },
            pts);
      }
    }
  }
  double hnsw_qk = -1, hnsw_kk = -1;
  const int ood_ef = 100;
#ifdef RETROKV_HAVE_HNSWLIB
  if (wanted(o, "hnswlib")) {
    CountingIpSpace space(static_cast<size_t>(d));
    const auto t0 = Clock::now();
    hnswlib::HierarchicalNSW<float> h(&space, static_cast<size_t>(n), static_cast<size_t>(o.hnsw_M),
                                      static_cast<size_t>(o.hnsw_ef_construction), o.seed);
    // hnswlib's own parallel insertion is not deterministic; insert serially.
    for (int64_t i = 0; i < n; ++i) h.addPoint(ds.keys.row(i), static_cast<size_t>(i));
    const double b = seconds_since(t0);
    const int64_t mem = static_cast<int64_t>(n) * static_cast<int64_t>(h.size_data_per_element_) -
                        n * d * static_cast<int64_t>(sizeof(float));
    auto hsearch = [&](const float* q, int k, int ef) {
      h.setEf(static_cast<size_t>(ef));
      CountingIpSpace::counter() = 0;
      auto pq = h.searchKnn(q, static_cast<size_t>(k));
      std::vector<int32_t> ids;
      while (!pq.empty()) {
        ids.push_back(static_cast<int32_t>(pq.top().second));
        pq.pop();
      }
      std::reverse(ids.begin(), ids.end());
      return std::make_pair(ids, CountingIpSpace::counter());
    };
    // hnswlib searches with max(ef, k): drop the duplicate points below k.
    auto hnsw_efs = [&](int k) {
      std::set<int> e;
      for (int ef : efs_for(o, n)) e.insert(std::max(ef, k));
      return std::vector<int>(e.begin(), e.end());
    };
    for (int k : ks) {
      sweep(
          ds, truth, "hnswlib", k, hnsw_efs(k), b, mem,
          [&](int64_t i, int kk, int ef) { return hsearch(ds.test.row(i), kk, ef); }, pts);
    }
    // OOD statistic: the same key-only graph searched from queries (Q->K) and from keys (K->K).
    const int kk = std::min<int>(kmax, 100);
    const int64_t nk = std::min<int64_t>(200, n);
    Matrix<float> kq(nk, d);
    for (int64_t i = 0; i < nk; ++i)
      std::copy(ds.keys.row(i * n / nk), ds.keys.row(i * n / nk) + d, kq.row(i));
    const KnnResult ktruth = knn_inner_product(kq.view(), ds.keys.view(), kk);
    double hq = 0, hk = 0;
    for (int64_t i = 0; i < ds.test.rows(); ++i) {
      const auto r = hsearch(ds.test.row(i), kk, std::max(ood_ef, kk)).first;
      const std::set<int32_t> want(truth.row_ids(i), truth.row_ids(i) + kk);
      for (int32_t id : r) hq += want.count(id);
    }
    for (int64_t i = 0; i < nk; ++i) {
      const auto r = hsearch(kq.row(i), kk, std::max(ood_ef, kk)).first;
      const std::set<int32_t> want(ktruth.row_ids(i), ktruth.row_ids(i) + kk);
      for (int32_t id : r) hk += want.count(id);
    }
    hnsw_qk = hq / (double(kk) * ds.test.rows());
    hnsw_kk = hk / (double(kk) * nk);
  }
#endif
#ifdef RETROKV_HAVE_FAISS
  if (wanted(o, "faiss_ivf")) {
    const int nlist = static_cast<int>(std::max<int64_t>(1, std::llround(std::sqrt(double(n)))));
    const auto t0 = Clock::now();
    faiss::IndexFlatIP quantizer(d);
    faiss::IndexIVFFlat ivf(&quantizer, d, nlist, faiss::METRIC_INNER_PRODUCT);
    ivf.cp.seed = static_cast<int>(o.seed);
    ivf.train(n, ds.keys.data());
    ivf.add(n, ds.keys.data());
    const double b = seconds_since(t0);
    const int64_t mem = static_cast<int64_t>(nlist) * d * 4 + n * 8;
    for (int k : ks) {
      std::vector<float> dist(static_cast<size_t>(k));
      std::vector<faiss::Index::idx_t> lab(static_cast<size_t>(k));
      sweep(
          ds, truth, "faiss_ivf", k, nprobes_for(o, nlist), b, mem,
          [&](int64_t i, int kk, int nprobe) {
            ivf.nprobe = static_cast<size_t>(nprobe);
            faiss::indexIVF_stats.reset();
            ivf.search(1, ds.test.row(i), kk, dist.data(), lab.data());
            std::vector<int32_t> ids;
            for (int j = 0; j < kk; ++j)
              if (lab[j] >= 0) ids.push_back(static_cast<int32_t>(lab[j]));
            return std::make_pair(ids, static_cast<int64_t>(faiss::indexIVF_stats.ndis));
          },
          pts);
    }
  }
#endif
  // OOD statistics of this head (RetrievalAttention section 3).
  const auto [cos_qk, cos_kk] = mean_cosines(ds, o.seed);
  json j;
  j["index"] = "ood_stats";
  j["layer"] = ds.layer;
  j["kv_head"] = ds.kv_head;
  j["n"] = n;
  j["mean_cos_qk"] = cos_qk;
  j["mean_cos_kk"] = cos_kk;
  j["ef"] = ood_ef;
  if (hnsw_qk >= 0) {
    j["hnsw_recall_q2k"] = hnsw_qk;
    j["hnsw_recall_k2k"] = hnsw_kk;
  }
  jl << j.dump() << "\n";
  std::fprintf(stderr,
               "  ood: mean cos q-k %.3f, k-k %.3f; HNSW recall@100 at ef %d: Q->K %.3f, "
               "K->K %.3f\n",
               cos_qk, cos_kk, ood_ef, hnsw_qk, hnsw_kk);
  return pts;
}

}  // namespace

int run_recall(int argc, char** argv) {
  Options o;
  CLI::App app{"recall@k vs keys scanned for every index (issue 4)", "retrokv-eval recall"};
  app.add_option("--trace", o.trace, "trace directory from retrokv-trace (L{layer}_H{kvhead}/)");
  app.add_option("--synthetic", o.synthetic, "n,d,m: synthetic OOD set instead of a trace");
  app.add_option("--k", o.ks, "recall@k values")->delimiter(',');
  app.add_option("--out", o.out, "output JSON lines (a .csv is written next to it)")->required();
  app.add_option("--plot", o.plot, "PNG of recall@100 vs fraction of keys scanned");
  app.add_option("--indexes", o.indexes, "subset of flat,ivf,roargraph,hnswlib,faiss_ivf")
      ->delimiter(',');
  app.add_option("--ef", o.efs, "graph beam widths to sweep")->delimiter(',');
  app.add_option("--nprobe", o.nprobes, "IVF probes to sweep")->delimiter(',');
  app.add_option("--max-test", o.max_test, "test queries per head (evenly spaced)");
  app.add_option("--train-max", o.train_max, "RoarGraph: at most this many training queries");
  app.add_option("--max-heads", o.max_heads, "evaluate at most this many (layer, head) pairs");
  app.add_option("--roar-L", o.roar_L, "RoarGraph build beam L");
  app.add_option("--roar-M", o.roar_M, "RoarGraph degree bound M");
  app.add_option("--roar-entry", o.roar_entry, "RoarGraph entry points (n_entry_points)");
  app.add_option("--seed-recent", o.seed_recent,
                 "RoarGraph: extra curves seeded from the last R keys (the newest tokens)");
  app.add_option("--warm", o.warm,
                 "RoarGraph warm start: seed counts from the previous decode step's answer "
                 "(traces with every decode query, i.e. --max-test >= 3 * steps)")
      ->delimiter(',');
  app.add_option("--hnsw-M", o.hnsw_M, "hnswlib M");
  app.add_option("--seed", o.seed, "seed for synthetic data and builds");
  app.add_option("--save-roargraph", o.save_roargraph,
                 "save the (last) RoarGraph built here, e.g. for bench_index's cache");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  RETROKV_CHECK(o.trace.empty() != o.synthetic.empty(),
                "--trace / --synthetic: give exactly one of them");
  for (int k : o.ks) RETROKV_CHECK(k >= 1, "--k: expected values >= 1, got ", k);
  std::vector<Dataset> sets;
  if (!o.synthetic.empty()) {
    sets.push_back(make_synthetic(o));
  } else {
    sets = load_trace(o);
  }
  std::ofstream jl(o.out);
  RETROKV_CHECK(jl.good(), "--out: cannot write '", o.out, "'");
  const std::string csv_path = fs::path(o.out).replace_extension(".csv").string();
  std::ofstream csv(csv_path);
  RETROKV_CHECK(csv.good(), "--out: cannot write '", csv_path, "'");
  csv << "index,param,k,recall,keys_scanned,keys_scanned_frac,latency_us_median,latency_us_p99,"
         "build_s,memory,layer,kv_head,n,d\n";

  // Per-head points, then the aggregate over heads ("all") for traces.
  std::map<std::tuple<std::string, int, int>, std::vector<Point>> by_point;
  for (const Dataset& ds : sets) {
    for (Point& p : eval_head(o, ds, jl)) {
      write_point(jl, csv, p, ds.layer, ds.kv_head, ds.keys.rows(),
                  static_cast<int>(ds.keys.cols()));
      by_point[{p.index, p.k, p.param}].push_back(std::move(p));
    }
  }
  if (sets.size() > 1) {
    for (auto& [key, pts] : by_point) {
      Point a = pts.front();
      a.recall = a.keys_scanned = a.keys_scanned_frac = a.build_s = 0;
      a.memory = 0;
      a.latencies_us.clear();
      for (const Point& p : pts) {
        a.recall += p.recall / pts.size();
        a.keys_scanned += p.keys_scanned / pts.size();
        a.keys_scanned_frac += p.keys_scanned_frac / pts.size();
        a.build_s += p.build_s / pts.size();
        a.memory += p.memory / static_cast<int64_t>(pts.size());
        a.latencies_us.insert(a.latencies_us.end(), p.latencies_us.begin(), p.latencies_us.end());
      }
      write_point(jl, csv, a, "all", "all", sets.front().keys.rows(),
                  static_cast<int>(sets.front().keys.cols()));
    }
  }
  jl.close();
  csv.close();
  std::fprintf(stderr, "wrote %s and %s\n", o.out.c_str(), csv_path.c_str());
  if (!o.plot.empty()) {
    // The script sits in the source tree: next to this file's folder, else under the cwd.
    fs::path script = fs::path(__FILE__).parent_path() / ".." / ".." / "scripts" / "plot_recall.py";
    if (!fs::exists(script)) script = "scripts/plot_recall.py";
    const std::string cmd =
        // Debian's python3-matplotlib lives under /usr/bin/python3 (a pyenv python3 may lack it).
        std::string(fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3") + " '" +
        script.string() + "' '" + o.out + "' '" + o.plot + "'";
    const int rc = std::system(cmd.c_str());
    RETROKV_CHECK(rc == 0, "--plot: '", cmd, "' failed (python3-matplotlib installed?)");
  }
  return 0;
}

}  // namespace retrokv::eval
