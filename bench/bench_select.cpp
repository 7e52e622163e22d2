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
// decode keys (the store's update interval) into each head's index.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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
    std::vector<double> ms;
    for (Head& h : heads) {
      RoarGraphIndex copy = RoarGraphIndex::from_bytes(h.roar.roar->to_bytes());
      for (int64_t b = 0; b + 64 <= h.steps && b < 128; b += 64) {
        const ConstMatrixView<float> fresh(h.keys.row(h.n_prompt + b), 64, h.keys.cols());
        const auto t0 = Clock::now();
        copy.insert(fresh);
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    }
    std::printf("insert of 64 keys into a %lld-key index: median %.2f ms over %zu inserts\n",
                static_cast<long long>(heads[0].n_prompt - n_sink), median(ms), ms.size());
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
