/* The C API from C (issue 7 "API"): full attention equals a double-precision reference written
 * here, a sparse policy with budget = everything equals it too, every bad input returns the
 * right status and a message naming the argument and leaves the store answering identically,
 * and save/load round trips bit-identically. Exit status 0 on success. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retrokv/c_api.h"

#define N 700
#define H 2
#define G 2
#define D 16
#define KVW (H * D)
#define QW (H * G * D)

static int g_failures = 0;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
      ++g_failures;                                                            \
    }                                                                          \
  } while (0)

#define CHECK_OK(call)                                                                \
  do {                                                                                \
    retrokv_status s_ = (call);                                                       \
    CHECK(s_ == RETROKV_OK, "%s: %s", retrokv_status_name(s_), retrokv_last_error()); \
  } while (0)

/* Expects `status` and a last-error message containing `needle`. */
static void expect_error(retrokv_status got, retrokv_status want, const char* needle,
                         const char* what) {
  CHECK(got == want, "%s: expected status '%s', got '%s' (%s)", what, retrokv_status_name(want),
        retrokv_status_name(got), retrokv_last_error());
  CHECK(strstr(retrokv_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
        retrokv_last_error(), needle);
}

static unsigned long long g_rng = 88172645463325252ull;
static float uniform(void) { /* xorshift64, in [-1, 1) */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

/* Exact attention of query head hq over the first n positions, in double; max relative error
 * of out (QW floats) over the query heads. */
static double reference_error(const float* K, const float* V, const float* q, const float* out,
                              int n) {
  double worst = 0;
  for (int hq = 0; hq < H * G; ++hq) {
    const int h = hq / G;
    double m = -INFINITY, z = 0, o[D] = {0}, num = 0, den = 0;
    double* logit = (double*)malloc(sizeof(double) * n);
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int j = 0; j < D; ++j) s += (double)q[hq * D + j] * K[i * KVW + h * D + j];
      logit[i] = s / sqrt((double)D);
      if (logit[i] > m) m = logit[i];
    }
    for (int i = 0; i < n; ++i) {
      const double w = exp(logit[i] - m);
      z += w;
      for (int j = 0; j < D; ++j) o[j] += w * V[i * KVW + h * D + j];
    }
    for (int j = 0; j < D; ++j) {
      const double e = out[hq * D + j] - o[j] / z;
      num += e * e;
      den += (o[j] / z) * (o[j] / z);
    }
    free(logit);
    if (sqrt(num / den) > worst) worst = sqrt(num / den);
  }
  return worst;
}

static retrokv_store* make_store(retrokv_policy policy, double budget, int64_t memory_budget) {
  retrokv_config c;
  retrokv_config_default(&c);
  c.n_layers = 2;
  c.n_q_heads = H * G;
  c.n_kv_heads = H;
  c.head_dim = D;
  c.policy = policy;
  c.budget_fraction = budget;
  c.update_interval = 16;
  c.host_memory_budget_bytes = memory_budget;
  retrokv_store* s = NULL;
  CHECK_OK(retrokv_store_create(&c, &s));
  return s;
}

int main(void) {
  static float K[(N + 8) * KVW], V[(N + 8) * KVW], Q[N * QW], q[QW], out[QW], again[QW];
  for (int i = 0; i < (N + 8) * KVW; ++i) K[i] = 2.f * uniform();
  for (int i = 0; i < (N + 8) * KVW; ++i) V[i] = uniform();
  for (int i = 0; i < N * QW; ++i) Q[i] = 2.f * uniform();
  for (int i = 0; i < QW; ++i) q[i] = 2.f * uniform();

  /* Config validation. */
  {
    retrokv_config c;
    retrokv_config_default(&c);
    c.n_layers = 1;
    c.n_q_heads = 3;
    c.n_kv_heads = 2;
    c.head_dim = D;
    retrokv_store* s = NULL;
    expect_error(retrokv_store_create(&c, &s), RETROKV_ERROR_INVALID_ARGUMENT, "n_q_heads",
                 "GQA ratio");
    CHECK(s == NULL, "no store on failure");
  }

  /* full, and roar_graph with budget = everything, equal the reference. */
  const retrokv_policy policies[2] = {RETROKV_POLICY_FULL, RETROKV_POLICY_ROAR_GRAPH};
  for (int p = 0; p < 2; ++p) {
    retrokv_store* s = make_store(policies[p], 1.0, 0);
    retrokv_seq_id seq;
    CHECK_OK(retrokv_add_sequence(s, &seq));
    CHECK_OK(retrokv_prefill(s, seq, 1, K, V, Q, N));
    CHECK_OK(retrokv_append(s, seq, 1, K + N * KVW, V + N * KVW, 8));
    CHECK_OK(retrokv_attend(s, seq, 1, q, out, NULL));
    const double err = reference_error(K, V, q, out, N + 8);
    CHECK(err < 1e-5, "policy %d: relative error %g vs reference", p, err);
    int64_t len = 0;
    CHECK_OK(retrokv_sequence_length(s, seq, 1, &len));
    CHECK(len == N + 8, "length %lld", (long long)len);
    retrokv_layer_stats st;
    CHECK_OK(retrokv_get_layer_stats(s, 1, &st));
    CHECK(st.attend_calls == 1 && st.head_steps == H, "stats %lld %lld", (long long)st.attend_calls,
          (long long)st.head_steps);
    CHECK(fabs(st.exact_fraction - 1.0) < 1e-12, "exact fraction %g", st.exact_fraction);
    retrokv_store_destroy(s);
  }

  /* Bad inputs: status, message, and the store answers identically afterwards. */
  {
    retrokv_store* s = make_store(RETROKV_POLICY_FLAT_TOPK, 0.1, 0);
    retrokv_seq_id seq, gone;
    CHECK_OK(retrokv_add_sequence(s, &seq));
    CHECK_OK(retrokv_prefill(s, seq, 0, K, V, Q, N));
    CHECK_OK(retrokv_attend(s, seq, 0, q, out, NULL));
    int64_t bytes0 = 0, bytes = 0;
    CHECK_OK(retrokv_memory_bytes(s, &bytes0));
    float bad[QW], badk[KVW];
    memcpy(bad, q, sizeof bad);
    bad[5] = NAN;
    memcpy(badk, K, sizeof badk);
    badk[3] = INFINITY;
    expect_error(retrokv_attend(s, seq, 0, bad, again, NULL), RETROKV_ERROR_INVALID_ARGUMENT,
                 "q:", "NaN q");
    expect_error(retrokv_append(s, seq, 0, badk, V, 1), RETROKV_ERROR_INVALID_ARGUMENT,
                 "k:", "Inf k");
    expect_error(retrokv_append(s, seq, 0, K, badk, 1), RETROKV_ERROR_INVALID_ARGUMENT,
                 "v:", "Inf v");
    expect_error(retrokv_attend(s, seq, 2, q, again, NULL), RETROKV_ERROR_INVALID_ARGUMENT,
                 "layer:", "layer out of range");
    expect_error(retrokv_attend(s, seq + 7, 0, q, again, NULL), RETROKV_ERROR_UNKNOWN_SEQUENCE,
                 "unknown sequence", "unknown sequence");
    expect_error(retrokv_prefill(s, seq, 0, K, V, Q, N), RETROKV_ERROR_INVALID_ARGUMENT,
                 "prefill once", "prefill twice");
    expect_error(retrokv_append(s, seq, 0, K, V, 0), RETROKV_ERROR_INVALID_ARGUMENT, "n_tokens",
                 "zero tokens");
    expect_error(retrokv_attend(s, seq, 0, NULL, again, NULL), RETROKV_ERROR_INVALID_ARGUMENT,
                 "q: null", "null q");
    CHECK_OK(retrokv_add_sequence(s, &gone));
    CHECK_OK(retrokv_prefill(s, gone, 0, K, V, Q, 100));
    CHECK_OK(retrokv_remove_sequence(s, gone));
    expect_error(retrokv_append(s, gone, 0, K, V, 1), RETROKV_ERROR_UNKNOWN_SEQUENCE,
                 "unknown sequence", "append after remove");
    CHECK_OK(retrokv_memory_bytes(s, &bytes));
    CHECK(bytes == bytes0, "memory %lld != %lld", (long long)bytes, (long long)bytes0);
    CHECK_OK(retrokv_attend(s, seq, 0, q, again, NULL));
    CHECK(memcmp(out, again, sizeof out) == 0, "attend changed after rejected calls");
    CHECK(retrokv_last_error()[0] == '\0', "last error not cleared on success");

    /* Save / load: bit-identical; a corrupt file is a file error. */
    const char* path = "test_c_api_sequence.rkv";
    retrokv_seq_id loaded;
    CHECK_OK(retrokv_save_sequence(s, seq, path));
    CHECK_OK(retrokv_load_sequence(s, path, &loaded));
    CHECK_OK(retrokv_attend(s, loaded, 0, q, again, NULL));
    CHECK(memcmp(out, again, sizeof out) == 0, "loaded sequence attends differently");
    FILE* f = fopen(path, "r+b");
    CHECK(f != NULL, "reopen %s", path);
    if (f) {
      fseek(f, 1000, SEEK_SET);
      fputc(0x5a, f);
      fclose(f);
    }
    retrokv_seq_id none;
    expect_error(retrokv_load_sequence(s, path, &none), RETROKV_ERROR_FILE, "checksum",
                 "corrupt file");
    remove(path);
    expect_error(retrokv_load_sequence(s, path, &none), RETROKV_ERROR_FILE, "cannot open",
                 "missing file");

    /* Batch over sequences of different lengths equals single attends. */
    retrokv_seq_id seqs[2] = {seq, loaded};
    static float qb[2 * QW], ob[2 * QW];
    memcpy(qb, q, sizeof q);
    memcpy(qb + QW, q, sizeof q);
    CHECK_OK(retrokv_append(s, loaded, 0, K, V, 3));
    CHECK_OK(retrokv_attend_batch(s, seqs, 2, 0, qb, ob));
    CHECK(memcmp(ob, out, sizeof out) == 0, "batch row 0");
    CHECK_OK(retrokv_attend(s, loaded, 0, q, again, NULL));
    CHECK(memcmp(ob + QW, again, sizeof again) == 0, "batch row 1");
    retrokv_store_destroy(s);
  }

  /* Memory budget: room for one layer of N positions, not two. */
  {
    retrokv_store* s = make_store(RETROKV_POLICY_FULL, 1.0, (int64_t)N * KVW * 4 * 2 * 3 / 2);
    retrokv_seq_id seq;
    CHECK_OK(retrokv_add_sequence(s, &seq));
    CHECK_OK(retrokv_prefill(s, seq, 0, K, V, NULL, N));
    CHECK_OK(retrokv_attend(s, seq, 0, q, out, NULL));
    expect_error(retrokv_prefill(s, seq, 1, K, V, NULL, N), RETROKV_ERROR_MEMORY_BUDGET,
                 "host_memory_budget_bytes", "budget");
    int64_t len = -1;
    CHECK_OK(retrokv_sequence_length(s, seq, 1, &len));
    CHECK(len == 0, "layer 1 length %lld after a rejected prefill", (long long)len);
    CHECK_OK(retrokv_attend(s, seq, 0, q, again, NULL));
    CHECK(memcmp(out, again, sizeof out) == 0, "attend changed after the budget error");
    retrokv_store_destroy(s);
  }

  if (g_failures) {
    fprintf(stderr, "test_c_api: %d check(s) failed\n", g_failures);
    return 1;
  }
  printf("test_c_api: all checks passed\n");
  return 0;
}
