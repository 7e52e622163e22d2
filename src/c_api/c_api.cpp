// The C API (include/retrokv/c_api.h) over KVVectorStore: every call catches every exception,
// stores its message in a thread-local string and returns a status code (issue 7 "API").
// Built as its own shared library, libretrokv_c (CMake target retrokv::c), which depends only on
// the header-only store: a C engine links it without the example engine or a C++ toolchain.
#include "retrokv/c_api.h"

#include <new>
#include <string>
#include <vector>

#include "retrokv/store/kv_vector_store.h"

struct retrokv_store {
  retrokv::KVVectorStore store;
  explicit retrokv_store(const retrokv::StoreConfig& c) : store(c) {}
};

namespace {

thread_local std::string g_last_error;

retrokv_status fail(retrokv_status s, const char* message) {
  g_last_error = message;
  return s;
}

// Runs f, mapping exceptions to status codes; clears the last error on success.
template <typename F>
retrokv_status guarded(F&& f) {
  try {
    f();
    g_last_error.clear();
    return RETROKV_OK;
  } catch (const retrokv::StoreError& e) {
    switch (e.code()) {
      case retrokv::StoreErrorCode::kUnknownSequence:
        return fail(RETROKV_ERROR_UNKNOWN_SEQUENCE, e.what());
      case retrokv::StoreErrorCode::kMemoryBudget:
        return fail(RETROKV_ERROR_MEMORY_BUDGET, e.what());
      case retrokv::StoreErrorCode::kFile:
        return fail(RETROKV_ERROR_FILE, e.what());
      case retrokv::StoreErrorCode::kInvalidArgument:
        break;
    }
    return fail(RETROKV_ERROR_INVALID_ARGUMENT, e.what());
  } catch (const retrokv::Error& e) {
    return fail(RETROKV_ERROR_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return fail(RETROKV_ERROR_OUT_OF_MEMORY, "retrokv: out of host memory");
  } catch (const std::exception& e) {
    return fail(RETROKV_ERROR_INTERNAL, e.what());
  } catch (...) {
    return fail(RETROKV_ERROR_INTERNAL, "retrokv: unknown internal error");
  }
}

#define RETROKV_C_NOT_NULL(p) \
  if ((p) == nullptr) return fail(RETROKV_ERROR_INVALID_ARGUMENT, "retrokv: " #p ": null pointer")

retrokv::StoreConfig to_cpp(const retrokv_config& c) {
  retrokv::StoreConfig s;
  s.n_layers = c.n_layers;
  s.n_q_heads = c.n_q_heads;
  s.n_kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim;
  RETROKV_CHECK(c.kv_dtype >= RETROKV_DTYPE_FLOAT32 && c.kv_dtype <= RETROKV_DTYPE_BFLOAT16,
                "config.kv_dtype: expected 0..2, got ", static_cast<int>(c.kv_dtype));
  RETROKV_CHECK(c.policy >= RETROKV_POLICY_FULL && c.policy <= RETROKV_POLICY_QUEST,
                "config.policy: expected 0..4, got ", static_cast<int>(c.policy));
  s.kv_dtype = static_cast<retrokv::DType>(c.kv_dtype);
  s.policy = static_cast<retrokv::Policy>(c.policy);
  s.params.budget_tokens = c.budget_tokens;
  s.params.budget_fraction = c.budget_fraction;
  s.params.n_sink = c.n_sink;
  s.params.n_local = c.n_local;
  s.params.update_interval = c.update_interval;
  s.params.quest_page_size = c.quest_page_size;
  s.params.roar_ef = c.roar_ef;
  s.params.roar.max_train_queries = c.roar_max_train_queries;
  s.params.wave.budget.estimation_frac = c.wave_estimation_fraction;
  s.params.wave.budget.tolerance = c.wave_tolerance;
  s.params.wave.budget.estimator = static_cast<retrokv::WaveEstimator>(c.wave_estimator);
  s.params.wave.quantized_zone = c.wave_estimator == 2;
  s.scale = c.scale;
  s.threads = c.threads;
  s.async_build = c.async_build != 0;
  s.host_memory_budget_bytes = c.host_memory_budget_bytes;
  return s;
}

}  // namespace

extern "C" {

void retrokv_config_default(retrokv_config* config) {
  if (config == nullptr) return;
  const retrokv::StoreConfig d;
  *config = retrokv_config{};
  config->kv_dtype = RETROKV_DTYPE_FLOAT32;
  config->policy = RETROKV_POLICY_FULL;
  config->budget_tokens = d.params.budget_tokens;
  config->budget_fraction = d.params.budget_fraction;
  config->n_sink = d.params.n_sink;
  config->n_local = d.params.n_local;
  config->update_interval = d.params.update_interval;
  config->quest_page_size = d.params.quest_page_size;
  config->roar_ef = d.params.roar_ef;
  config->roar_max_train_queries = d.params.roar.max_train_queries;
  config->wave_estimation_fraction = d.params.wave.budget.estimation_frac;
  config->wave_tolerance = d.params.wave.budget.tolerance;
  config->wave_estimator = static_cast<int32_t>(d.params.wave.budget.estimator);
  config->scale = d.scale;
  config->threads = d.threads;
  config->async_build = d.async_build ? 1 : 0;
  config->host_memory_budget_bytes = d.host_memory_budget_bytes;
}

const char* retrokv_last_error(void) { return g_last_error.c_str(); }

const char* retrokv_status_name(retrokv_status status) {
  switch (status) {
    case RETROKV_OK:
      return "ok";
    case RETROKV_ERROR_INVALID_ARGUMENT:
      return "invalid argument";
    case RETROKV_ERROR_UNKNOWN_SEQUENCE:
      return "unknown sequence";
    case RETROKV_ERROR_MEMORY_BUDGET:
      return "memory budget exceeded";
    case RETROKV_ERROR_FILE:
      return "file error";
    case RETROKV_ERROR_OUT_OF_MEMORY:
      return "out of memory";
    case RETROKV_ERROR_INTERNAL:
      return "internal error";
  }
  return "unknown status";
}

retrokv_status retrokv_store_create(const retrokv_config* config, retrokv_store** out) {
  RETROKV_C_NOT_NULL(config);
  RETROKV_C_NOT_NULL(out);
  *out = nullptr;
  return guarded([&] { *out = new retrokv_store(to_cpp(*config)); });
}

void retrokv_store_destroy(retrokv_store* store) { delete store; }

retrokv_status retrokv_add_sequence(retrokv_store* store, retrokv_seq_id* out) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(out);
  return guarded([&] { *out = store->store.add_sequence(); });
}

retrokv_status retrokv_remove_sequence(retrokv_store* store, retrokv_seq_id seq) {
  RETROKV_C_NOT_NULL(store);
  return guarded([&] { store->store.remove_sequence(seq); });
}

retrokv_status retrokv_sequence_length(retrokv_store* store, retrokv_seq_id seq, int32_t layer,
                                       int64_t* out) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(out);
  return guarded([&] { *out = store->store.sequence_length(seq, layer); });
}

namespace {

// Views of n_tokens rows of K/V (n_kv_heads * head_dim wide) or Q (n_q_heads * head_dim wide)
// in the store's shape; refuses n_tokens < 1 (the C caller passes bare pointers).
class TokenRows {
 public:
  TokenRows(const retrokv_store* store, int64_t n_tokens)
      : config_(store->store.config()), n_(n_tokens) {
    RETROKV_CHECK(n_tokens >= 1, "n_tokens: expected >= 1, got ", n_tokens);
  }
  retrokv::ConstMatrixView<float> kv(const float* p) const { return {p, n_, config_.kv_width()}; }
  retrokv::ConstMatrixView<float> q(const float* p) const { return {p, n_, config_.q_width()}; }

 private:
  const retrokv::StoreConfig& config_;
  int64_t n_;
};

}  // namespace

retrokv_status retrokv_prefill(retrokv_store* store, retrokv_seq_id seq, int32_t layer,
                               const float* k, const float* v, const float* q, int64_t n_tokens) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(k);
  RETROKV_C_NOT_NULL(v);
  return guarded([&] {
    const TokenRows rows(store, n_tokens);
    store->store.prefill(seq, layer, rows.kv(k), rows.kv(v),
                         q ? rows.q(q) : retrokv::ConstMatrixView<float>());
  });
}

retrokv_status retrokv_append(retrokv_store* store, retrokv_seq_id seq, int32_t layer,
                              const float* k, const float* v, int64_t n_tokens) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(k);
  RETROKV_C_NOT_NULL(v);
  return guarded([&] {
    const TokenRows rows(store, n_tokens);
    store->store.append(seq, layer, rows.kv(k), rows.kv(v));
  });
}

retrokv_status retrokv_attend(retrokv_store* store, retrokv_seq_id seq, int32_t layer,
                              const float* q, float* out, float* lse) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(q);
  RETROKV_C_NOT_NULL(out);
  return guarded([&] { store->store.attend(seq, layer, q, out, lse); });
}

retrokv_status retrokv_attend_batch(retrokv_store* store, const retrokv_seq_id* seqs,
                                    int64_t n_seqs, int32_t layer, const float* q, float* out) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(seqs);
  RETROKV_C_NOT_NULL(q);
  RETROKV_C_NOT_NULL(out);
  return guarded([&] {
    RETROKV_CHECK(n_seqs >= 1, "n_seqs: expected >= 1, got ", n_seqs);
    const int w = store->store.config().q_width();
    store->store.attend_batch(std::vector<retrokv::SeqId>(seqs, seqs + n_seqs), layer,
                              retrokv::ConstMatrixView<float>(q, n_seqs, w),
                              retrokv::MatrixView<float>(out, n_seqs, w));
  });
}

retrokv_status retrokv_get_layer_stats(retrokv_store* store, int32_t layer,
                                       retrokv_layer_stats* out) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(out);
  return guarded([&] {
    const retrokv::LayerStats s = store->store.stats(layer);
    out->attend_calls = s.attend_calls;
    out->head_steps = s.head_steps;
    out->context_tokens = s.context_tokens;
    out->exact_tokens = s.exact_tokens;
    out->steady_tokens = s.steady_tokens;
    out->selected_tokens = s.selected_tokens;
    out->keys_scanned = s.keys_scanned;
    out->estimated_clusters = s.estimated_clusters;
    out->estimated_tokens = s.estimated_tokens;
    out->index_builds = s.index_builds;
    out->index_updates = s.index_updates;
    out->build_seconds = s.build_seconds;
    out->select_seconds = s.select_seconds;
    out->exact_seconds = s.exact_seconds;
    out->estimate_seconds = s.estimate_seconds;
    out->merge_seconds = s.merge_seconds;
    out->exact_fraction = s.exact_fraction();
  });
}

retrokv_status retrokv_reset_stats(retrokv_store* store) {
  RETROKV_C_NOT_NULL(store);
  return guarded([&] { store->store.reset_stats(); });
}

retrokv_status retrokv_memory_bytes(retrokv_store* store, int64_t* out) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(out);
  return guarded([&] { *out = store->store.memory_bytes(); });
}

retrokv_status retrokv_save_sequence(retrokv_store* store, retrokv_seq_id seq, const char* path) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(path);
  return guarded([&] { store->store.save_sequence(seq, path); });
}

retrokv_status retrokv_load_sequence(retrokv_store* store, const char* path, retrokv_seq_id* out) {
  RETROKV_C_NOT_NULL(store);
  RETROKV_C_NOT_NULL(path);
  RETROKV_C_NOT_NULL(out);
  return guarded([&] { *out = store->store.load_sequence(path); });
}

}  // extern "C"
