/* retrokv C API (issue 7 "API"): the KVVectorStore behind opaque handles, for engines not
 * written in C++. Every function returns a retrokv_status; on failure retrokv_last_error()
 * gives this thread's message naming the bad argument, and the store is left as it was.
 * Shapes are row-major float32: K, V (n, n_kv_heads * head_dim), Q (n, n_q_heads * head_dim). */
#ifndef RETROKV_C_API_H_
#define RETROKV_C_API_H_

#include <stdint.h>

/* libretrokv_c is built with hidden visibility; only the functions marked here are exported. */
#if defined(_WIN32)
#define RETROKV_C_API
#elif defined(__GNUC__)
#define RETROKV_C_API __attribute__((visibility("default")))
#else
#define RETROKV_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct retrokv_store retrokv_store;
typedef int64_t retrokv_seq_id;

typedef enum retrokv_status {
  RETROKV_OK = 0,
  RETROKV_ERROR_INVALID_ARGUMENT = 1, /* wrong shape, bad layer, NaN/Inf, null pointer, config */
  RETROKV_ERROR_UNKNOWN_SEQUENCE = 2, /* never added, or removed */
  RETROKV_ERROR_MEMORY_BUDGET = 3,    /* would exceed host_memory_budget_bytes */
  RETROKV_ERROR_FILE = 4,             /* cannot read/write, corrupt, or saved by another shape */
  RETROKV_ERROR_OUT_OF_MEMORY = 5,    /* the allocator failed */
  RETROKV_ERROR_INTERNAL = 6
} retrokv_status;

typedef enum retrokv_policy {
  RETROKV_POLICY_FULL = 0,
  RETROKV_POLICY_FLAT_TOPK = 1,
  RETROKV_POLICY_ROAR_GRAPH = 2,
  RETROKV_POLICY_WAVE = 3,
  RETROKV_POLICY_QUEST = 4
} retrokv_policy;

typedef enum retrokv_dtype {
  RETROKV_DTYPE_FLOAT32 = 0,
  RETROKV_DTYPE_FLOAT16 = 1,
  RETROKV_DTYPE_BFLOAT16 = 2
} retrokv_dtype;

/* Store configuration; fill with retrokv_config_default() first, then set the shape. Fields
 * mirror retrokv::StoreConfig / PolicyParams (include/retrokv/store/store_config.h). */
typedef struct retrokv_config {
  int32_t n_layers;
  int32_t n_q_heads;
  int32_t n_kv_heads;
  int32_t head_dim;
  retrokv_dtype kv_dtype;
  retrokv_policy policy;
  int64_t budget_tokens;  /* > 0: tokens selected per KV head and step */
  double budget_fraction; /* else ceil(fraction * length); 1.0 = exact */
  int32_t n_sink;
  int32_t n_local;
  int64_t update_interval;
  int32_t quest_page_size;
  int32_t roar_ef;                  /* 0: index default */
  int64_t roar_max_train_queries;   /* 0: all prompt queries */
  double wave_estimation_fraction;  /* wave estimation zone, fraction of clusters */
  double wave_tolerance;            /* > 0: adaptive retrieval budget */
  float scale;                      /* 0: 1/sqrt(head_dim) */
  int32_t threads;                  /* 0: all */
  int32_t async_build;              /* nonzero: build indexes in the background */
  int64_t host_memory_budget_bytes; /* 0: unlimited */
  /* wave estimation zone: 0 = centroid formula (RetroInfer), 1 = variance-corrected,
     2 = quantized (every zone token from 4-bit codes: lower error, ~16% more KV memory) */
  int32_t wave_estimator;
} retrokv_config;

/* Per-layer statistics (retrokv::LayerStats); times in seconds summed over KV heads. */
typedef struct retrokv_layer_stats {
  int64_t attend_calls;
  int64_t head_steps;
  int64_t context_tokens;
  int64_t exact_tokens;
  int64_t steady_tokens;
  int64_t selected_tokens;
  int64_t keys_scanned;
  int64_t estimated_clusters;
  int64_t estimated_tokens;
  int64_t index_builds;
  int64_t index_updates;
  double build_seconds;
  double select_seconds;
  double exact_seconds;
  double estimate_seconds;
  double merge_seconds;
  double exact_fraction;
} retrokv_layer_stats;

/* Defaults (those of retrokv::StoreConfig): float32 KV, full policy, budget 3%, 4 sinks, 64 local,
 * index update every 64 appended tokens. */
RETROKV_C_API void retrokv_config_default(retrokv_config* config);

/* This thread's message for the last failed call ("" if none). Valid until the next call. */
RETROKV_C_API const char* retrokv_last_error(void);
RETROKV_C_API const char* retrokv_status_name(retrokv_status status);

RETROKV_C_API retrokv_status retrokv_store_create(const retrokv_config* config,
                                                  retrokv_store** out);
/* Waits for background builds and frees everything. NULL is ignored. */
RETROKV_C_API void retrokv_store_destroy(retrokv_store* store);

RETROKV_C_API retrokv_status retrokv_add_sequence(retrokv_store* store, retrokv_seq_id* out);
RETROKV_C_API retrokv_status retrokv_remove_sequence(retrokv_store* store, retrokv_seq_id seq);
RETROKV_C_API retrokv_status retrokv_sequence_length(retrokv_store* store, retrokv_seq_id seq,
                                                     int32_t layer, int64_t* out);

/* k, v: (n_tokens, n_kv_heads * head_dim); q: (n_tokens, n_q_heads * head_dim) or NULL. */
RETROKV_C_API retrokv_status retrokv_prefill(retrokv_store* store, retrokv_seq_id seq,
                                             int32_t layer, const float* k, const float* v,
                                             const float* q, int64_t n_tokens);
/* k, v: (n_tokens, n_kv_heads * head_dim), n_tokens >= 1. */
RETROKV_C_API retrokv_status retrokv_append(retrokv_store* store, retrokv_seq_id seq, int32_t layer,
                                            const float* k, const float* v, int64_t n_tokens);
/* q, out: n_q_heads * head_dim floats; lse: NULL or n_q_heads floats (natural log). */
RETROKV_C_API retrokv_status retrokv_attend(retrokv_store* store, retrokv_seq_id seq, int32_t layer,
                                            const float* q, float* out, float* lse);
/* Row i of q / out (n_seqs, n_q_heads * head_dim) belongs to seqs[i]; lengths may differ. */
RETROKV_C_API retrokv_status retrokv_attend_batch(retrokv_store* store, const retrokv_seq_id* seqs,
                                                  int64_t n_seqs, int32_t layer, const float* q,
                                                  float* out);

RETROKV_C_API retrokv_status retrokv_get_layer_stats(retrokv_store* store, int32_t layer,
                                                     retrokv_layer_stats* out);
RETROKV_C_API retrokv_status retrokv_reset_stats(retrokv_store* store);
/* Host bytes held (KV + index estimates), as counted against the budget. */
RETROKV_C_API retrokv_status retrokv_memory_bytes(retrokv_store* store, int64_t* out);

RETROKV_C_API retrokv_status retrokv_save_sequence(retrokv_store* store, retrokv_seq_id seq,
                                                   const char* path);
RETROKV_C_API retrokv_status retrokv_load_sequence(retrokv_store* store, const char* path,
                                                   retrokv_seq_id* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* RETROKV_C_API_H_ */
