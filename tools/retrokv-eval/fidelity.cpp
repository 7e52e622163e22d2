// retrokv-eval fidelity: attention-output error ‖o − o_full‖/‖o_full‖ of the sparse policies
// against full attention (issue 5, DESIGN.md section 5 "Fidelity"), on SmolLM2 traces or on
// synthetic data: the wave index (default zones, no estimation, adaptive τ), and Flat top-k,
// RoarGraph top-k and Quest pages at the same number of exactly attended tokens.
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "fidelity_data.h"
#include "fidelity_estimators.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/index/quest_index.h"
#include "retrokv/index/roar_graph.h"
#include "retrokv/index/wave_index.h"
#include "retrokv/index/wave_quantized_zone.h"

namespace retrokv::eval {
namespace {

using json = nlohmann::json;

struct FidelityOptions {
  std::vector<double> budgets{0.005, 0.01, 0.018, 0.036, 0.072};  // retrieval fractions
  std::vector<double> tolerances{0.05, 0.01};
  int64_t max_queries = 0;     // per head, 0 = all
  int64_t global_max = 65536;  // global k-means comparison only up to this many tokens
  bool roargraph = true;
  bool decompose = false;                         // extra decomp_* methods (fidelity_estimators.h)
  std::vector<double> decompose_est{0.232, 1.0};  // estimation fractions for decomp_*
  double decompose_cap = INFINITY;                // clip of the second-moment corrections
  int ef = 128;
  WaveParams wave;
  // A second wave index with smaller clusters (0 = none): methods wave_tpc<N> and
  // wave_var_tpc<N> at extra_budgets (fractions of its clusters).
  int extra_tpc = 0;
  std::vector<double> extra_budgets{0.03, 0.04, 0.05};
  // Quantized estimation zones (decomp_quant_<spec>, fidelity_estimators.h QuantSpec): the wave
  // zones at each budget with the estimation zone's tokens attended from low-bit codes.
  std::vector<QuantSpec> quant;
  // wave_q<bits>: the default zones with the estimation zone from WaveQuantizedZone (library).
  int wave_q_bits = 4;
};

// Errors and exact shares collected for one (method, budget) over queries and heads.
struct Samples {
  std::vector<double> errs;
  double exact_sum = 0.0;
  int64_t n_queries = 0;
  std::map<std::string, double> extra_sum;  // per-query figures reported as their mean
  void add(double exact_frac) {
    exact_sum += exact_frac;
    ++n_queries;
  }
};

struct MethodKey {
  std::string method;
  double budget;  // retrieval fraction, or τ for the adaptive methods
  bool operator<(const MethodKey& o) const {
    return method < o.method || (method == o.method && budget < o.budget);
  }
};

struct HeadResult {
  std::map<MethodKey, Samples> samples;
  std::vector<double> recall_segmented, recall_global;
  double build_seconds = 0.0, global_build_seconds = 0.0;
  int64_t n_clusters = 0, n_segments = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

double rel_err(const float* o, const AttentionState& ref) {
  double num = 0.0, den = 0.0;
  for (size_t j = 0; j < ref.o.size(); ++j) {
    const double diff = static_cast<double>(o[j]) - ref.o[j];
    num += diff * diff;
    den += static_cast<double>(ref.o[j]) * ref.o[j];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Recall@100 of the retrieval zone's tokens (default budget) against the Flat top-100 of the
// clustered prompt tokens [mid_begin, mid_end) by group score.
double cluster_recall(const WaveIndex& w, ConstMatrixView<float> q, float scale,
                      const std::vector<int32_t>& flat_top100) {
  const WaveSelection sel = w.select(q, scale);
  std::vector<char> in(static_cast<size_t>(w.size()), 0);
  for (int32_t c : sel.retrieval)
    for (int64_t p = w.cluster_offsets()[c]; p < w.cluster_offsets()[c + 1]; ++p)
      in[w.reordered_ids()[p]] = 1;
  int hits = 0;
  for (int32_t id : flat_top100) hits += in[id];
  return flat_top100.empty() ? 1.0 : double(hits) / double(flat_top100.size());
}

HeadResult evaluate_head(const HeadData& h, const FidelityOptions& opt) {
  HeadResult res;
  const int d = static_cast<int>(h.keys.cols());
  const int g = h.group;
  const float scale = h.scale;
  const ConstMatrixView<float> prompt_k = h.keys.view().slice_rows(0, h.n_prompt);
  const ConstMatrixView<float> prompt_v = h.values.view().slice_rows(0, h.n_prompt);

  auto t0 = std::chrono::steady_clock::now();
  WaveIndex wave(prompt_k, prompt_v, opt.wave);
  res.build_seconds = seconds_since(t0);
  res.n_clusters = wave.n_clusters();
  res.n_segments = static_cast<int64_t>(wave.segments().size());
  std::unique_ptr<WaveIndex> small;
  if (opt.extra_tpc > 0) {
    WaveParams sp = opt.wave;
    sp.tokens_per_cluster = opt.extra_tpc;
    small = std::make_unique<WaveIndex>(prompt_k, prompt_v, sp);
  }
  std::unique_ptr<WaveIndex> global;
  if (h.n_prompt <= opt.global_max) {
    WaveParams gp = opt.wave;
    gp.segment_size = std::max<int64_t>(1, h.n_prompt);  // one segment: global k-means
    t0 = std::chrono::steady_clock::now();
    global = std::make_unique<WaveIndex>(prompt_k, prompt_v, gp);
    res.global_build_seconds = seconds_since(t0);
  }

  // The baselines choose among the same tokens the wave index clusters (the prompt minus its
  // sinks and local window); the rest is their steady zone, attended exactly as in the wave.
  const int64_t n_sink = std::min<int64_t>(h.n_prompt, opt.wave.n_sink);
  const int64_t n_local = std::min<int64_t>(h.n_prompt - n_sink, opt.wave.n_local);
  const int64_t mid_begin = n_sink, mid_end = h.n_prompt - n_local;
  const int64_t n_mid = mid_end - mid_begin;
  const ConstMatrixView<float> mid_k = h.keys.view().slice_rows(mid_begin, n_mid);
  std::unique_ptr<QuestIndex> quest;
  std::unique_ptr<RoarGraphIndex> roar;
  if (n_mid > 0) {
    quest = std::make_unique<QuestIndex>(mid_k);
    if (opt.roargraph)
      roar = std::make_unique<RoarGraphIndex>(
          RoarGraphIndex::build(mid_k, h.train.view(), RoarGraphParams{}));
  }

  int64_t n_q = h.n_queries;
  if (opt.max_queries > 0) n_q = std::min(n_q, opt.max_queries);
  Matrix<float> o(g, d);
  std::vector<float> lse(g);
  std::vector<float> group_score(static_cast<size_t>(n_mid));
  std::vector<int32_t> ids, order(static_cast<size_t>(n_mid));
  ClusterMoments moments;
  moments.cap = opt.decompose_cap;
  std::vector<QuantizedTokens> quant(opt.quant.size());
  // The library's quantized zone, extended by the clusters of every segment the wave index adds.
  WaveQuantParams qp;
  qp.key_bits = qp.value_bits = opt.wave_q_bits;
  WaveQuantizedZone qzone(d, qp);
  Matrix<float> oq(g, d);
  std::vector<float> lseq(g);
  std::vector<double> od(d);
  using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  for (int64_t t = 0; t < n_q; ++t) {
    // Decode query t sees the prompt and generated keys [n_prompt, n_prompt + t] (its own
    // included); the generated ones enter the wave index through append(), as in decoding.
    int64_t ctx = h.n_prompt;
    if (h.n_gen_keys > 0) {
      ctx = h.n_prompt + t + 1;
      wave.append(h.keys.view().slice_rows(ctx - 1, 1), h.values.view().slice_rows(ctx - 1, 1));
      if (small)
        small->append(h.keys.view().slice_rows(ctx - 1, 1), h.values.view().slice_rows(ctx - 1, 1));
    }
    const ConstMatrixView<float> q = h.queries.view().slice_rows(t * g, g);
    const ConstMatrixView<float> ck = h.keys.view().slice_rows(0, ctx);
    const ConstMatrixView<float> cv = h.values.view().slice_rows(0, ctx);
    std::vector<AttentionState> ref;
    for (int j = 0; j < g; ++j) ref.push_back(reference_attention(q.row(j), ck, cv, scale));
    auto record = [&](const std::string& method, double budget, int64_t exact_tokens) -> Samples& {
      Samples& s = res.samples[{method, budget}];
      for (int j = 0; j < g; ++j) s.errs.push_back(rel_err(o.row(j), ref[j]));
      s.add(double(exact_tokens) / double(ctx));
      return s;
    };

    // Group score of every candidate token: max over the group's heads of q.k.
    if (n_mid > 0) {
      Eigen::Map<const RowMajorF, 0, Eigen::OuterStride<>> km(mid_k.data, n_mid, d,
                                                              Eigen::OuterStride<>(mid_k.ld));
      Eigen::Map<const RowMajorF, 0, Eigen::OuterStride<>> qm(q.data, g, d,
                                                              Eigen::OuterStride<>(q.ld));
      const RowMajorF s = km * qm.transpose();
      for (int64_t i = 0; i < n_mid; ++i) group_score[i] = s.row(i).maxCoeff();
      std::iota(order.begin(), order.end(), 0);
    }
    auto by_score = [&](int32_t a, int32_t b) {
      return group_score[a] > group_score[b] || (group_score[a] == group_score[b] && a < b);
    };
    // Flat top-100 for the cluster recall.
    if (n_mid > 0) {
      const int64_t k100 = std::min<int64_t>(100, n_mid);
      std::vector<int32_t> top(order);
      std::partial_sort(top.begin(), top.begin() + k100, top.end(), by_score);
      top.resize(k100);
      for (auto& id : top) id += static_cast<int32_t>(mid_begin);
      res.recall_segmented.push_back(cluster_recall(wave, q, scale, top));
      if (global) res.recall_global.push_back(cluster_recall(*global, q, scale, top));
    }

    // Exactly attends the baseline steady zone plus `chosen` (ids relative to mid_begin).
    auto attend_selected = [&](const std::vector<int32_t>& chosen) {
      ids.clear();
      for (int64_t i = 0; i < n_sink; ++i) ids.push_back(static_cast<int32_t>(i));
      for (int32_t c : chosen) ids.push_back(static_cast<int32_t>(c + mid_begin));
      for (int64_t i = mid_end; i < ctx; ++i) ids.push_back(static_cast<int32_t>(i));
      cpu::attend_ids<float>(q, ck, cv, ids.data(), static_cast<int64_t>(ids.size()), scale,
                             o.view(), lse.data());
      return static_cast<int64_t>(ids.size());
    };

    for (double b : opt.budgets) {
      WaveBudget wb = opt.wave.budget;
      wb.retrieval_frac = b;
      wb.retrieval_tokens = 0;
      wb.tolerance = 0.0;
      WaveStats st;
      wave.attend(q, scale, o.view(), lse.data(), &st, &wb);
      record("wave", b, st.steady_tokens + st.retrieval_tokens);
      {
        // retrokv's variance-corrected estimate (WaveEstimator::kVariance), same zones.
        WaveBudget vb = wb;
        vb.estimator = WaveEstimator::kVariance;
        WaveStats sv;
        wave.attend(q, scale, o.view(), lse.data(), &sv, &vb);
        record("wave_var", b, sv.steady_tokens + sv.retrieval_tokens);
      }
      wb.estimation_frac = 0.0;
      wb.estimation_tokens = 0;
      WaveStats st0;
      wave.attend(q, scale, o.view(), lse.data(), &st0, &wb);
      record("wave_no_estimate", b, st0.steady_tokens + st0.retrieval_tokens);
      {
        // wave_q<bits>: steady + retrieval exact (as wave_no_estimate), LSE-merged with the
        // default estimation zone attended from WaveQuantizedZone's codes.
        if (qzone.n_clusters() < wave.n_clusters()) {
          const auto& off = wave.cluster_offsets();
          const int64_t c0 = qzone.n_clusters(), c1 = wave.n_clusters();
          qzone.append(wave.reordered_keys().slice_rows(off[c0], off[c1] - off[c0]),
                       wave.reordered_values().slice_rows(off[c0], off[c1] - off[c0]),
                       std::span<const int64_t>(off).subspan(c0, c1 - c0 + 1),
                       wave.centroids().slice_rows(c0, c1 - c0));
        }
        WaveBudget qb = wb;
        qb.estimation_frac = opt.wave.budget.estimation_frac;
        qb.estimation_tokens = opt.wave.budget.estimation_tokens;
        const WaveSelection sel = wave.select(q, scale, &qb);
        RETROKV_CHECK(sel.retrieval_tokens == st0.retrieval_tokens,
                      "wave_q: select() and attend() chose different retrieval zones");
        qzone.estimate(q, scale, sel.estimation, oq.view(), lseq.data());
        for (int j = 0; j < g; ++j)
          lse[j] = merge_states({o.row(j), lse[j]}, {oq.row(j), lseq[j]}, o.row(j), d);
        double est_bytes = 0.0;
        for (int32_t c : sel.estimation) est_bytes += double(qzone.cluster_bytes(c));
        Samples& s = record("wave_q" + std::to_string(opt.wave_q_bits), b,
                            st0.steady_tokens + st0.retrieval_tokens);
        s.extra_sum["est_tokens"] += double(sel.estimation_tokens);
        s.extra_sum["est_bytes_read"] += est_bytes;
        s.extra_sum["est_bytes_fp32"] += double(sel.estimation_tokens) * 2.0 * d * 4.0;
        s.extra_sum["code_bytes"] += double(qzone.memory_bytes());
        s.extra_sum["kv_bytes_fp32"] += double(wave.reordered_keys().rows) * 2.0 * d * 4.0;
      }
      if (!opt.quant.empty()) {
        // Same zones as `wave` at this budget; the estimation zone read from low-bit codes.
        WaveBudget db = wb;
        db.estimation_frac = opt.wave.budget.estimation_frac;
        db.estimation_tokens = opt.wave.budget.estimation_tokens;
        const WaveSelection sel = wave.select(q, scale, &db);
        const int64_t n_clustered = wave.reordered_keys().rows;
        const auto& off = wave.cluster_offsets();
        for (size_t i = 0; i < opt.quant.size(); ++i) {
          if (quant[i].n_clusters != wave.n_clusters()) quant[i].compute(wave, opt.quant[i]);
          for (int j = 0; j < g; ++j) {
            decomposed_attend(wave, moments, q.row(j), scale, sel, EstimateMode::kQuantized,
                              od.data(), &quant[i]);
            for (int t = 0; t < d; ++t) o(j, t) = static_cast<float>(od[t]);
          }
          double est_bytes = 0.0;
          for (int32_t c : sel.estimation)
            est_bytes += double(opt.quant[i].cluster_bytes(off[c + 1] - off[c], d));
          Samples& s = record("decomp_quant_" + opt.quant[i].name(), b,
                              st.steady_tokens + sel.retrieval_tokens);
          s.extra_sum["est_tokens"] += double(sel.estimation_tokens);
          s.extra_sum["est_bytes_read"] += est_bytes;
          s.extra_sum["est_bytes_fp32"] += double(sel.estimation_tokens) * 2.0 * d * 4.0;
          s.extra_sum["code_bytes"] += double(quant[i].bytes);
          s.extra_sum["kv_bytes_fp32"] += double(n_clustered) * 2.0 * d * 4.0;
        }
      }
      if (opt.decompose) {
        if (moments.n_clusters != wave.n_clusters()) moments.compute(wave);
        for (double ef_frac : opt.decompose_est) {
          WaveBudget db = opt.wave.budget;
          db.retrieval_frac = b;
          db.retrieval_tokens = 0;
          db.tolerance = 0.0;
          db.estimation_frac = ef_frac;
          db.estimation_tokens = 0;
          const WaveSelection sel = wave.select(q, scale, &db);
          for (EstimateMode m :
               {EstimateMode::kCentroid, EstimateMode::kVarIso, EstimateMode::kVarDiag,
                EstimateMode::kVarDiagX, EstimateMode::kVarFull, EstimateMode::kVarFullX,
                EstimateMode::kXcov, EstimateMode::kVarPca, EstimateMode::kSubVar,
                EstimateMode::kSubVarTop, EstimateMode::kOracleZ, EstimateMode::kOracleExact}) {
            for (int j = 0; j < g; ++j) {
              decomposed_attend(wave, moments, q.row(j), scale, sel, m, od.data());
              for (int t = 0; t < d; ++t) o(j, t) = static_cast<float>(od[t]);
            }
            std::ostringstream name;
            name << "decomp_" << mode_name(m) << "_est" << ef_frac;
            record(name.str(), b, st0.steady_tokens + sel.retrieval_tokens);
          }
        }
        // Other rankings at the same retrieval token count, all other clusters estimated.
        for (RankMode rm :
             {RankMode::kSoftmax, RankMode::kMassVar, RankMode::kBound, RankMode::kOracle}) {
          const WaveSelection sel =
              decomposed_select(wave, moments, q, scale, rm, st0.retrieval_tokens, 1.0);
          for (EstimateMode m : {EstimateMode::kCentroid, EstimateMode::kOracleZ}) {
            for (int j = 0; j < g; ++j) {
              decomposed_attend(wave, moments, q.row(j), scale, sel, m, od.data());
              for (int t = 0; t < d; ++t) o(j, t) = static_cast<float>(od[t]);
            }
            std::ostringstream name;
            name << "rank_" << rank_name(rm) << "_" << mode_name(m);
            record(name.str(), b, st0.steady_tokens + sel.retrieval_tokens);
          }
        }
      }
      if (n_mid == 0) continue;
      const int64_t k = std::min(st.retrieval_tokens, n_mid);  // matched exact budget
      // Flat top-k: the exact selection.
      std::vector<int32_t> flat(order);
      std::partial_sort(flat.begin(), flat.begin() + k, flat.end(), by_score);
      flat.resize(k);
      record("flat_topk", b, attend_selected(flat));
      // Quest: whole pages by their upper bound, as many tokens as the wave reads.
      std::vector<int32_t> pages_tok;
      for (int32_t p : quest->top_pages(q, (k + quest->page_size() - 1) / quest->page_size()))
        for (int64_t i = quest->page_begin(p); i < quest->page_end(p); ++i)
          if (static_cast<int64_t>(pages_tok.size()) < k)
            pages_tok.push_back(static_cast<int32_t>(i));
      record("quest", b, attend_selected(pages_tok));
      if (roar) {
        std::vector<int32_t> found;
        if (k > 0) {
          SearchParams sp;
          sp.k = static_cast<int>(k);
          sp.ef = std::max<int>(opt.ef, static_cast<int>(k));
          found = roar->search(q, sp).ids;
        }
        record("roargraph_topk", b, attend_selected(found));
      }
    }
    if (small) {
      for (double b : opt.extra_budgets) {
        WaveBudget wb = opt.wave.budget;
        wb.retrieval_frac = b;
        wb.retrieval_tokens = 0;
        wb.tolerance = 0.0;
        for (WaveEstimator e : {WaveEstimator::kCentroid, WaveEstimator::kVariance}) {
          wb.estimator = e;
          WaveStats st;
          small->attend(q, scale, o.view(), lse.data(), &st, &wb);
          std::ostringstream name;
          name << (e == WaveEstimator::kVariance ? "wave_var_tpc" : "wave_tpc") << opt.extra_tpc;
          record(name.str(), b, st.steady_tokens + st.retrieval_tokens);
        }
      }
    }
    for (double tol : opt.tolerances) {
      WaveBudget wb = opt.wave.budget;
      wb.tolerance = tol;
      WaveStats st;
      wave.attend(q, scale, o.view(), lse.data(), &st, &wb);
      std::ostringstream name;
      name << "wave_adaptive_" << tol;
      record(name.str(), tol, st.steady_tokens + st.retrieval_tokens);
    }
  }
  return res;
}

json summary_line(const MethodKey& key, const Samples& s, const json& layer, const json& head,
                  double default_budget) {
  json j;
  j["method"] = key.method;
  const bool adaptive = key.method.rfind("wave_adaptive_", 0) == 0;
  if (adaptive) {
    j["tolerance"] = key.budget;
  } else {
    j["retrieval_frac"] = key.budget;
    j["default"] = std::abs(key.budget - default_budget) < 1e-12;
  }
  j["exact_frac"] = s.n_queries ? s.exact_sum / double(s.n_queries) : 0.0;
  j["rel_err_median"] = percentile(s.errs, 0.5);
  j["rel_err_p99"] = percentile(s.errs, 0.99);
  double mean = 0.0;
  for (double e : s.errs) mean += e;
  j["rel_err_mean"] = s.errs.empty() ? 0.0 : mean / double(s.errs.size());
  j["n_samples"] = s.errs.size();
  for (const auto& [name, sum] : s.extra_sum)
    j[name] = s.n_queries ? sum / double(s.n_queries) : 0.0;
  j["layer"] = layer;
  j["kv_head"] = head;
  return j;
}

double mean_of(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return v.empty() ? std::nan("") : s / double(v.size());
}

std::vector<double> parse_doubles(const std::string& s, const char* what) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      out.push_back(std::stod(item));
    } catch (const std::exception&) {
      RETROKV_FAIL(what, ": expected comma-separated numbers, got '", s, "'");
    }
  }
  return out;
}

}  // namespace

int run_fidelity(int argc, char** argv) {
  CLI::App app{"retrokv-eval fidelity: attention error of sparse policies vs full attention"};
  std::string trace_dir, synthetic, synthetic_kind = "ood", out_path, plot_path, budgets_s,
                                    tol_s = "0.05,0.01", plot_script;
  FidelityOptions opt;
  int group = 1;
  uint64_t seed = 1;
  app.add_option("--trace", trace_dir, "trace directory written by retrokv-trace");
  app.add_option("--synthetic", synthetic, "n,d,m: synthetic head with m decode queries");
  app.add_option("--synthetic-kind", synthetic_kind, "ood (make_ood_synthetic) or clustered");
  app.add_option("--group", group, "synthetic GQA group size")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "synthetic data seed");
  app.add_option("--out", out_path, "JSON lines output")->required();
  app.add_option("--plot", plot_path, "PNG: error vs share of tokens attended exactly");
  app.add_option("--plot-script", plot_script, "path of scripts/plot_fidelity.py");
  app.add_option("--budgets", budgets_s,
                 "retrieval fractions to sweep (default "
                 "0.005,0.01,0.018,0.036,0.072)");
  app.add_option("--tolerances", tol_s, "adaptive tolerances");
  app.add_option("--max-queries", opt.max_queries, "decode queries per head (0 = all)");
  app.add_option("--global-max", opt.global_max, "largest prompt for the global k-means build");
  app.add_option("--ef", opt.ef, "RoarGraph search beam width (at least k)");
  app.add_option("--segment-size", opt.wave.segment_size, "wave segment size");
  bool no_roar = false;
  app.add_option("--tokens-per-cluster", opt.wave.tokens_per_cluster, "wave cluster size");
  app.add_option("--iterations", opt.wave.iterations, "wave k-means iterations");
  app.add_option("--estimation-frac", opt.wave.budget.estimation_frac,
                 "wave estimation zone, fraction of clusters (default 0.232)");
  app.add_option("--variance-cap", opt.wave.budget.variance_cap,
                 "cap of the variance estimator's correction (wave_var*, default 1)");
  app.add_flag("--decompose", opt.decompose,
               "also record decomp_<estimator>_est<frac> methods: the wave zones with the "
               "estimation zone estimated in other ways (error decomposition)");
  std::string dec_s, extra_b_s;
  app.add_option("--extra-tokens-per-cluster", opt.extra_tpc,
                 "also evaluate a second wave index with this cluster size (wave_tpc<N>, "
                 "wave_var_tpc<N>)");
  app.add_option("--extra-budgets", extra_b_s,
                 "retrieval fractions of the second index (default 0.03,0.04,0.05)");
  app.add_option("--decompose-cap", opt.decompose_cap,
                 "clip of the decomp_var_* corrections (log units)");
  app.add_option("--decompose-est", dec_s, "estimation fractions for --decompose (0.232,1)");
  std::string quant_s;
  app.add_option("--wave-q-bits", opt.wave_q_bits,
                 "bits of the wave_q<bits> method's codes (WaveQuantizedZone: 2, 4 or 8)");
  app.add_option("--quant", quant_s,
                 "quantized estimation zones to evaluate, comma-separated k<bits>v<bits>[c] "
                 "(c: key scales per cluster channel instead of per token), e.g. k4v4,k8v8");
  app.add_flag("--no-roargraph", no_roar, "skip the RoarGraph baseline (its build is slow)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  RETROKV_CHECK(trace_dir.empty() != synthetic.empty(),
                "--trace / --synthetic: give exactly one of them");
  if (!budgets_s.empty()) opt.budgets = parse_doubles(budgets_s, "--budgets");
  opt.tolerances = parse_doubles(tol_s, "--tolerances");
  opt.roargraph = !no_roar;
  if (!extra_b_s.empty()) opt.extra_budgets = parse_doubles(extra_b_s, "--extra-budgets");
  if (!dec_s.empty()) opt.decompose_est = parse_doubles(dec_s, "--decompose-est");
  if (!quant_s.empty()) {
    std::stringstream ss(quant_s);
    std::string item;
    while (std::getline(ss, item, ',')) {
      QuantSpec q;
      int kb = 0, vb = 0, used = 0;
      const bool ok = std::sscanf(item.c_str(), "k%dv%d%n", &kb, &vb, &used) == 2;
      const std::string rest = ok ? item.substr(static_cast<size_t>(used)) : "";
      RETROKV_CHECK(ok && kb >= 1 && kb <= 8 && vb >= 1 && vb <= 8 && (rest.empty() || rest == "c"),
                    "--quant: expected k<1..8>v<1..8>[c] items, got '", item, "'");
      q.key_bits = kb;
      q.value_bits = vb;
      q.key_per_channel = rest == "c";
      opt.quant.push_back(q);
    }
  }

  std::vector<HeadData> heads;
  if (!trace_dir.empty()) {
    heads = load_trace(trace_dir);
  } else {
    const auto v = parse_doubles(synthetic, "--synthetic");
    RETROKV_CHECK(v.size() == 3, "--synthetic: expected n,d,m, got '", synthetic, "'");
    heads.push_back(make_synthetic_head(static_cast<int64_t>(v[0]), static_cast<int>(v[1]),
                                        static_cast<int64_t>(v[2]), group, synthetic_kind, seed));
  }

  std::ofstream out(out_path);
  RETROKV_CHECK(out.good(), "--out: cannot open '", out_path, "' for writing");
  std::map<MethodKey, Samples> all;
  std::vector<double> all_rs, all_rg;
  const double default_budget = opt.wave.budget.retrieval_frac;
  for (const HeadData& h : heads) {
    std::fprintf(stderr, "fidelity: layer %s kv_head %s: %lld prompt tokens, %lld queries\n",
                 h.layer.dump().c_str(), h.kv_head.dump().c_str(),
                 static_cast<long long>(h.n_prompt), static_cast<long long>(h.n_queries));
    const HeadResult r = evaluate_head(h, opt);
    for (const auto& [key, s] : r.samples) {
      out << summary_line(key, s, h.layer, h.kv_head, default_budget).dump() << "\n";
      Samples& a = all[key];
      a.errs.insert(a.errs.end(), s.errs.begin(), s.errs.end());
      a.exact_sum += s.exact_sum;
      a.n_queries += s.n_queries;
      for (const auto& [name, sum] : s.extra_sum) a.extra_sum[name] += sum;
    }
    json rec = {{"metric", "cluster_recall_at_100"},
                {"method", "wave"},
                {"retrieval_frac", default_budget},
                {"recall_segmented", mean_of(r.recall_segmented)},
                {"n_clusters", r.n_clusters},
                {"n_segments", r.n_segments},
                {"build_seconds", r.build_seconds},
                {"layer", h.layer},
                {"kv_head", h.kv_head}};
    if (!r.recall_global.empty()) {
      rec["recall_global_kmeans"] = mean_of(r.recall_global);
      rec["global_build_seconds"] = r.global_build_seconds;
    }
    out << rec.dump() << "\n";
    all_rs.insert(all_rs.end(), r.recall_segmented.begin(), r.recall_segmented.end());
    all_rg.insert(all_rg.end(), r.recall_global.begin(), r.recall_global.end());
  }
  for (const auto& [key, s] : all) {
    const json line = summary_line(key, s, "all", "all", default_budget);
    out << line.dump() << "\n";
    std::fprintf(stderr, "%-22s budget %-6g exact %.4f  median %.5f  p99 %.5f\n",
                 key.method.c_str(), key.budget, line["exact_frac"].get<double>(),
                 line["rel_err_median"].get<double>(), line["rel_err_p99"].get<double>());
  }
  json rec = {
      {"metric", "cluster_recall_at_100"},   {"method", "wave"}, {"retrieval_frac", default_budget},
      {"recall_segmented", mean_of(all_rs)}, {"layer", "all"},   {"kv_head", "all"}};
  if (!all_rg.empty()) rec["recall_global_kmeans"] = mean_of(all_rg);
  out << rec.dump() << "\n";
  std::fprintf(stderr, "cluster recall@100 at the default budget: segmented %.4f, global %.4f\n",
               mean_of(all_rs), mean_of(all_rg));
  out.close();

  if (!plot_path.empty()) {
    if (plot_script.empty()) {
      // The script sits in the source tree's scripts/; try the working directory first.
      for (const char* c : {"scripts/plot_fidelity.py", "../scripts/plot_fidelity.py"})
        if (std::filesystem::exists(c)) plot_script = c;
    }
    RETROKV_CHECK(!plot_script.empty(),
                  "--plot-script: scripts/plot_fidelity.py not found; "
                  "pass its path");
    // The PATH's python3 may lack matplotlib where the distribution's has it (scripts/common.sh).
    const std::string py = std::system("python3 -c 'import matplotlib' >/dev/null 2>&1") == 0
                               ? "python3"
                               : "/usr/bin/python3";
    const std::string cmd = py + " '" + plot_script + "' '" + out_path + "' '" + plot_path + "'";
    const int rc = std::system(cmd.c_str());
    RETROKV_CHECK(rc == 0, "--plot: '", cmd, "' failed with status ", rc);
  }
  return 0;
}

}  // namespace retrokv::eval
