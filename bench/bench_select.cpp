// The store's sparse selection (detail::select_tokens) on real decode traces: for each RoarGraph
// selection strategy (per-head k, beam ef, floor of keys scored, group search, warm start), the
// keys scored per GQA group step, the recall of its selected set against flat_topk's selection
// (the exact oracle, same budget) and the median time of a step; quest too. Issue 7: decode
// attention at least 5x below full on the CPU at 8K.
//
// Not a Google Benchmark loop: one pass over every (KV head, decode step) in order is the
// measurement (warm start depends on the previous step of the same head), so the program has its
// own main and prints one table row per strategy.
//
// Usage: bench_select TRACE_DIR [--budget F] [--cache DIR] [--heads N]
//   TRACE_DIR: retrokv-trace output (L{layer}_H{kvhead}/keys.npy, prefill_queries.npy (g, n, d),
//   decode_queries.npy (g, steps, d)). The index covers prompt positions [n_sink, n_prompt), as
//   the store's after prefill (decode-time inserts are left out); step t attends n_prompt + t + 1
//   tokens, budget ceil(F * that). RoarGraph builds as the e2e demo (L 100, 8192 training
//   queries, single thread) and is cached as DIR/L{l}_H{h}.roar (default $TMPDIR).
// Environment: RETROKV_SELECT_ONLY=TEXT keeps the strategies whose name contains TEXT (and the
// flat_topk reference); RETROKV_SELECT_INSERT=1 instead times RoarGraphIndex::insert of 64
// decode keys (the store's update interval) into each head's index, against the old rebuild
// insert, and recall@100 after inserting the last quarter of the keys;
// RETROKV_SELECT_INSERT_SCALE=n times insert on a synthetic n-key index (no trace read).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "retrokv/core/npy.h"
#include "retrokv/store/head_index.h"

namespace retrokv {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Head {
  std::string name;
  Matrix<float> keys;    // (n_total, d): prompt + decode keys
  Matrix<float> decode;  // (g * steps, d), head-major
  int g = 0, steps = 0;
  int64_t n_prompt = 0;
  detail::HeadIndex roar, quest;
};

Matrix<float> rows_of(const fs::path& p) {
  const NpyArray a = load_npy(p.string());
  RETROKV_CHECK(a.dtype == "<f4" && a.shape.size() >= 2, "trace: ", p.string(),
                ": expected float32 with >= 2 dimensions");
  const int64_t d = a.shape.back(), rows = a.size() / d;
  Matrix<float> m(rows, d);
  std::copy(a.data<float>(), a.data<float>() + rows * d, m.data());
  return m;
}

struct Strategy {
  std::string name;
  Policy policy;
  PolicyParams pp;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace
}  // namespace retrokv

int main(int argc, char** argv) {
  using namespace retrokv;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s TRACE_DIR [--budget F] [--cache DIR] [--heads N]\n", argv[0]);
    return 2;
  }
  if (const char* sn = std::getenv("RETROKV_SELECT_INSERT_SCALE")) {
    // Insert cost against index size on synthetic keys (n Gaussian keys, d 64, 2000 shifted
    // Gaussian training queries, L 100): 12 inserts of 64 keys, incremental and old rebuild
    // interleaved. TRACE_DIR is ignored.
    const int64_t n = std::atoll(sn), d = 64, extra = 64 * 12;
    std::mt19937_64 rng(5);
    std::normal_distribution<float> nd;
    Matrix<float> k(n + extra, d), q(2000, d);
    for (int64_t i = 0; i < k.rows() * d; ++i) k.data()[i] = nd(rng);
    for (int64_t i = 0; i < q.rows() * d; ++i) q.data()[i] = nd(rng) + 0.5f;
    RoarGraphParams rp;
    rp.show_progress = false;
    rp.L = 100;
    RoarGraphIndex a = RoarGraphIndex::build(ConstMatrixView<float>(k.data(), n, d), q.view(), rp);
    RoarGraphIndex o = RoarGraphIndex::from_bytes(a.to_bytes());
    std::vector<double> mn, mo;
    for (int b = 0; b < 12; ++b) {
      const ConstMatrixView<float> fresh(k.row(n + 64 * b), 64, d);
      auto t0 = Clock::now();
      a.insert(fresh);
      mn.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      t0 = Clock::now();
      o.insert_rebuild(fresh);
      mo.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    std::printf(
        "n %lld: median ms per 64-key insert over 12: incremental %.2f, old rebuild %.2f, "
        "ratio %.2fx; reachable %lld of %lld\n",
        static_cast<long long>(n), median(mn), median(mo), median(mo) / median(mn),
        static_cast<long long>(a.count_reachable()), static_cast<long long>(a.size()));
    return 0;
  }
  const fs::path trace = argv[1];
  double budget_fraction = PolicyParams{}.budget_fraction;
  fs::path cache = fs::temp_directory_path();
  int max_heads = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--budget") budget_fraction = std::atof(argv[i + 1]);
    if (a == "--cache") cache = argv[i + 1];
    if (a == "--heads") max_heads = std::atoi(argv[i + 1]);
  }
  const PolicyParams base;
  const int64_t n_sink = base.n_sink;

  std::vector<fs::path> dirs;
  const std::regex re("L([0-9]+)_H([0-9]+)");
  for (const auto& e : fs::directory_iterator(trace))
    if (e.is_directory() && std::regex_match(e.path().filename().string(), re))
      dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  if (max_heads > 0 && static_cast<int>(dirs.size()) > max_heads) dirs.resize(max_heads);

  std::vector<Head> heads(dirs.size());
  for (size_t i = 0; i < dirs.size(); ++i) {
    Head& h = heads[i];
    h.name = dirs[i].filename().string();
    h.keys = rows_of(dirs[i] / "keys.npy");
    const std::vector<int64_t> dshape = load_npy((dirs[i] / "decode_queries.npy").string()).shape;
    h.g = static_cast<int>(dshape[0]);
    h.steps = static_cast<int>(dshape[1]);
    h.decode = rows_of(dirs[i] / "decode_queries.npy");
    h.n_prompt = h.keys.rows() - h.steps;
    KVRows K(DType::kFloat32, static_cast<int>(h.keys.cols()));
    K.reserve_extra(h.n_prompt);
    K.append_bytes(reinterpret_cast<const uint8_t*>(h.keys.data()), h.n_prompt);
    // RoarGraph as the e2e demo builds it; cached, the build takes seconds per head.
    const fs::path cached = cache / (h.name + ".roar");
    if (fs::exists(cached)) {
      h.roar.roar = std::make_unique<RoarGraphIndex>(RoarGraphIndex::load(cached.string()));
      h.roar.indexed_end = h.n_prompt;
    } else {
      const Matrix<float> train = rows_of(dirs[i] / "prefill_queries.npy");
      PolicyParams pp = base;
      pp.roar.L = 100;
      pp.roar.max_train_queries = 8192;
      const auto t0 = Clock::now();
      detail::build_head_index(h.roar, Policy::kRoarGraph, pp, 1, K, n_sink, h.n_prompt,
                               train.view());
      std::fprintf(stderr, "%s: built in %.1f s\n", h.name.c_str(),
                   std::chrono::duration<double>(Clock::now() - t0).count());
      h.roar.roar->save(cached.string());
    }
    detail::build_head_index(h.quest, Policy::kQuest, base, 1, K, n_sink, h.n_prompt, {});
  }

  // Decode-time update cost: RoarGraphIndex::insert of the first two batches of 64 decode keys
  // (the store's update interval) into a copy of each head's index.
  if (std::getenv("RETROKV_SELECT_INSERT")) {
    // Same run, interleaved per batch: the incremental insert() and the old full-rebuild one
    // (insert_rebuild) on two copies of each head's index.
    std::vector<double> ms_new, ms_old;
    for (Head& h : heads) {
      const std::vector<uint8_t> image = h.roar.roar->to_bytes();
      RoarGraphIndex a = RoarGraphIndex::from_bytes(image), o = RoarGraphIndex::from_bytes(image);
      for (int64_t b = 0; b + 64 <= h.steps && b < 128; b += 64) {
        const ConstMatrixView<float> fresh(h.keys.row(h.n_prompt + b), 64, h.keys.cols());
        auto t0 = Clock::now();
        a.insert(fresh);
        ms_new.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        t0 = Clock::now();
        o.insert_rebuild(fresh);
        ms_old.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    }
    // The first insert into a loaded index also pays the capacity doubling of its keys and the
    // move of each touched (compact) list to slotted room: split first and later inserts.
    auto every_other = [](const std::vector<double>& v, size_t first) {
      std::vector<double> out;
      for (size_t i = first; i < v.size(); i += 2) out.push_back(v[i]);
      return out;
    };
    std::printf(
        "first insert per index: median %.2f ms (incremental) vs %.2f ms (old); second: "
        "%.2f ms vs %.2f ms\n",
        median(every_other(ms_new, 0)), median(every_other(ms_old, 0)),
        median(every_other(ms_new, 1)), median(every_other(ms_old, 1)));
    std::printf(
        "insert of 64 keys into a %lld-key index: median %.2f ms (incremental) vs %.2f ms "
        "(old rebuild), ratio %.2fx, over %zu inserts each\n",
        static_cast<long long>(heads[0].n_prompt - n_sink), median(ms_new), median(ms_old),
        median(ms_old) / std::max(1e-9, median(ms_new)), ms_new.size());
    // Recall after inserts: build on the first 3/4 of the prompt keys (training queries: the
    // prefill queries of those positions), insert the rest of the prompt and the decode keys in
    // batches of 64 with each insert, then recall@100 of every decode query against the exact
    // top-100 of all keys. RETROKV_SELECT_INSERT_RECALL_HEADS (default 4) heads.
    const char* rh = std::getenv("RETROKV_SELECT_INSERT_RECALL_HEADS");
    const size_t n_recall = std::min(heads.size(), static_cast<size_t>(rh ? std::atoi(rh) : 4));
    std::printf(
        "| head | keys built | keys inserted | recall@100 incremental | recall@100 old | "
        "max deg new/old | reachable new/old |\n|---|---|---|---|---|---|---|\n");
    double sum_new = 0, sum_old = 0;
    for (size_t i = 0; i < n_recall; ++i) {
      Head& h = heads[i];
      const int64_t d = h.keys.cols(), n_all = h.keys.rows(), n_build = h.n_prompt * 3 / 4;
      const std::vector<int64_t> pshape =
          load_npy((dirs[i] / "prefill_queries.npy").string()).shape;
      RETROKV_CHECK(pshape.size() == 3 && pshape[0] == h.g && pshape[1] == h.n_prompt,
                    "prefill_queries: expected shape (g, n_prompt, d)");
      const Matrix<float> pre = rows_of(dirs[i] / "prefill_queries.npy");
      const int64_t per_head = pre.rows() / h.g;  // (g, n_prompt, d), head-major
      Matrix<float> train(h.g * n_build, d);
      for (int q = 0; q < h.g; ++q)
        for (int64_t t = 0; t < n_build; ++t)
          std::copy(pre.row(q * per_head + t), pre.row(q * per_head + t) + d,
                    train.row(q * n_build + t));
      RoarGraphParams rp = base.roar;
      rp.L = 100;
      rp.max_train_queries = 8192;
      rp.show_progress = false;
      RoarGraphIndex a = RoarGraphIndex::build(ConstMatrixView<float>(h.keys.data(), n_build, d),
                                               train.view(), rp);
      RoarGraphIndex o = RoarGraphIndex::from_bytes(a.to_bytes());
      for (int64_t s = n_build; s < n_all; s += 64) {
        const ConstMatrixView<float> fresh(h.keys.row(s), std::min<int64_t>(64, n_all - s), d);
        a.insert(fresh);
        o.insert_rebuild(fresh);
      }
      auto recall = [&](const RoarGraphIndex& g) {
        double hit = 0;
        for (int64_t r = 0; r < h.decode.rows(); ++r) {
          const ConstMatrixView<float> q(h.decode.row(r), 1, d);
          std::vector<ScoredId> exact;
          for (int64_t j = 0; j < n_all; ++j)
            exact.push_back({detail::roar_dot(q.data, h.keys.row(j), d), static_cast<int32_t>(j)});
          std::partial_sort(exact.begin(), exact.begin() + 100, exact.end(), better);
          SearchParams sp;
          sp.k = 100;
          const SearchResult res = g.search(q, sp);
          std::vector<int32_t> got = res.ids;
          std::sort(got.begin(), got.end());
          for (int j = 0; j < 100; ++j)
            hit += std::binary_search(got.begin(), got.end(), exact[j].id);
        }
        return hit / (100.0 * h.decode.rows());
      };
      const double rn = recall(a), ro = recall(o);
      sum_new += rn;
      sum_old += ro;
      std::printf("| %s | %lld | %lld | %.4f | %.4f | %d/%d | %lld/%lld of %lld |\n",
                  h.name.c_str(), static_cast<long long>(n_build),
                  static_cast<long long>(n_all - n_build), rn, ro, a.stats().max_out_degree,
                  o.stats().max_out_degree, static_cast<long long>(a.count_reachable()),
                  static_cast<long long>(o.count_reachable()), static_cast<long long>(n_all));
    }
    if (n_recall)
      std::printf("| mean | | | %.4f | %.4f | | |\n", sum_new / n_recall, sum_old / n_recall);
    return 0;
  }

  std::vector<Strategy> strategies;
  // Every RoarGraph row starts from the selection before this bench (one search per query head,
  // k = budget, beam max(index ef, k), no warm start) and sets what it names.
  PolicyParams legacy = base;
  legacy.roar_group_mode = 0;
  legacy.roar_ef = 0;
  legacy.roar_warm_start = 0;
  auto add = [&](const std::string& name, Policy p, auto&& set) {
    Strategy s{name, p, legacy};
    set(s.pp);
    strategies.push_back(s);
  };
  add("flat_topk", Policy::kFlatTopK, [](PolicyParams&) {});
  add("quest", Policy::kQuest, [](PolicyParams&) {});
  strategies.push_back({"roar store default", Policy::kRoarGraph, base});
  add("roar per-head k=B (old)", Policy::kRoarGraph, [](PolicyParams&) {});
  add("roar group k=B", Policy::kRoarGraph, [](PolicyParams& p) { p.roar_group_mode = 1; });
  for (int ef : {32, 64, 128})
    add("roar group k=B ef=" + std::to_string(ef), Policy::kRoarGraph, [ef](PolicyParams& p) {
      p.roar_group_mode = 1;
      p.roar_ef = ef;
    });
  for (int ef : {16, 32, 64, 128})
    add("roar per-head k=B ef=" + std::to_string(ef), Policy::kRoarGraph,
        [ef](PolicyParams& p) { p.roar_ef = ef; });
  for (double f : {1.0 / 3, 0.5})
    for (int ef : {0, 16, 32, 64})
      add("roar per-head k=" + std::to_string(f).substr(0, 4) + "B ef=" + std::to_string(ef),
          Policy::kRoarGraph, [f, ef](PolicyParams& p) {
            p.roar_head_k_frac = f;
            p.roar_ef = ef;
          });
  for (int ef : {16, 32, 64})
    for (int floor : {0, 64})
      add("roar per-head k=B ef=" + std::to_string(ef) + " floor=" + std::to_string(floor),
          Policy::kRoarGraph, [ef, floor](PolicyParams& p) {
            p.roar_ef = ef;
            p.roar_min_scored = floor;
          });
  for (int w : {16, 64})
    for (int ef : {16, 32, 64})
      for (int floor : {-1, 0})
        add("roar per-head k=B ef=" + std::to_string(ef) + " floor=" + std::to_string(floor) +
                " warm=" + std::to_string(w),
            Policy::kRoarGraph, [w, ef, floor](PolicyParams& p) {
              p.roar_ef = ef;
              p.roar_min_scored = floor;
              p.roar_warm_start = w;
            });
  for (int w : {16, 64})
    for (int ef : {16, 32, 64})
      add("roar per-head k=0.33B ef=" + std::to_string(ef) + " warm=" + std::to_string(w),
          Policy::kRoarGraph, [w, ef](PolicyParams& p) {
            p.roar_head_k_frac = 1.0 / 3;
            p.roar_ef = ef;
            p.roar_warm_start = w;
          });
  for (int w : {16, 64})
    for (int ef : {32, 64, 128})
      add("roar group k=B ef=" + std::to_string(ef) + " warm=" + std::to_string(w),
          Policy::kRoarGraph, [w, ef](PolicyParams& p) {
            p.roar_group_mode = 1;
            p.roar_ef = ef;
            p.roar_warm_start = w;
          });
  for (int w : {0, 64})
    for (int ef : {16, 32, 48, 64, 96, 128})
      for (double f : {1.0, 0.6})
        add("roar shared-heads k=" + std::to_string(f).substr(0, 4) + "B ef=" + std::to_string(ef) +
                " warm=" + std::to_string(w),
            Policy::kRoarGraph, [w, ef, f](PolicyParams& p) {
              p.roar_group_mode = 2;
              p.roar_head_k_frac = f;
              p.roar_ef = ef;
              p.roar_warm_start = w;
            });
  if (const char* only = std::getenv("RETROKV_SELECT_ONLY")) {
    std::erase_if(strategies, [&](const Strategy& s) {
      return s.name != "flat_topk" && s.name.find(only) == std::string::npos;
    });
  }

  // flat_topk's selection per (head, step): the reference.
  std::vector<std::vector<std::vector<int32_t>>> ref(heads.size());
  std::printf("trace %s, %zu KV heads, budget %.3f, n_sink %lld\n", trace.string().c_str(),
              heads.size(), budget_fraction, static_cast<long long>(n_sink));
  std::printf(
      "| strategy | recall vs flat_topk | selected / budget | keys scored per group step "
      "| share of indexed keys | median us per group step |\n|---|---|---|---|---|---|\n");
  for (const Strategy& s : strategies) {
    double recall_sum = 0, sel_sum = 0, scanned_sum = 0, share_sum = 0;
    int64_t count = 0;
    std::vector<double> us;
    for (size_t hi = 0; hi < heads.size(); ++hi) {
      Head& h = heads[hi];
      detail::HeadIndex& index = s.policy == Policy::kQuest ? h.quest : h.roar;
      index.roar_warm_of = nullptr;  // every strategy starts cold
      const int64_t d = h.keys.cols();
      const ConstMatrixView<float> K(h.keys.data(), h.n_prompt, d);
      Matrix<float> qg(h.g, d);
      if (s.policy == Policy::kFlatTopK) ref[hi].resize(h.steps);
      for (int t = 0; t < h.steps; ++t) {
        for (int r = 0; r < h.g; ++r)
          std::copy(h.decode.row(int64_t{r} * h.steps + t),
                    h.decode.row(int64_t{r} * h.steps + t) + d, qg.row(r));
        PolicyParams pp = s.pp;
        pp.budget_fraction = budget_fraction;
        const int64_t available = h.n_prompt - n_sink;
        const int64_t budget = pp.budget_for(h.n_prompt + t + 1, available);
        int64_t scanned = 0;
        const auto t0 = Clock::now();
        const std::vector<int32_t> sel = detail::select_tokens<float>(
            index, s.policy, pp, qg.view(), K, n_sink, h.n_prompt, budget, &scanned);
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        if (s.policy == Policy::kFlatTopK) ref[hi][t] = sel;
        std::vector<int32_t> a = sel, b = ref[hi][t];
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        std::vector<int32_t> both;
        std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
        recall_sum += static_cast<double>(both.size()) / static_cast<double>(b.size());
        sel_sum += static_cast<double>(sel.size()) / static_cast<double>(budget);
        scanned_sum += static_cast<double>(scanned);
        share_sum += static_cast<double>(scanned) / static_cast<double>(available);
        ++count;
      }
    }
    std::printf("| %s | %.4f | %.3f | %.0f | %.1f%% | %.1f |\n", s.name.c_str(), recall_sum / count,
                sel_sum / count, scanned_sum / count, 100.0 * share_sum / count, median(us));
    std::fflush(stdout);
  }
  return 0;
}
