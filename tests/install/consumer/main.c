/* A C program outside the tree, linked with the installed libretrokv_c only: one sequence of
 * two tokens whose keys are orthogonal and whose values are one-hot, so full attention's output
 * is known in closed form. Exits non-zero unless the store returns it. */
#include <math.h>
#include <retrokv/c_api.h>
#include <stdio.h>

int main(void) {
  retrokv_config config;
  retrokv_config_default(&config);
  config.n_layers = 1;
  config.n_q_heads = 1;
  config.n_kv_heads = 1;
  config.head_dim = 2;
  retrokv_store* store = NULL;
  retrokv_seq_id seq = 0;
  const float k[4] = {1.f, 0.f, 0.f, 1.f}, v[4] = {1.f, 0.f, 0.f, 1.f}, q[2] = {1.f, 0.f};
  float out[2] = {0.f, 0.f};
  if (retrokv_store_create(&config, &store) != RETROKV_OK ||
      retrokv_add_sequence(store, &seq) != RETROKV_OK ||
      retrokv_prefill(store, seq, 0, k, v, NULL, 2) != RETROKV_OK ||
      retrokv_attend(store, seq, 0, q, out, NULL) != RETROKV_OK) {
    printf("consumer_c: %s\n", retrokv_last_error());
    retrokv_store_destroy(store);
    return 1;
  }
  retrokv_store_destroy(store);
  /* scores q.k * 1/sqrt(2) = (0.7071, 0): weights e^s / (e^s + 1) and 1 / (e^s + 1). */
  const double e = exp(1.0 / sqrt(2.0)), w0 = e / (e + 1.0), w1 = 1.0 / (e + 1.0);
  const int ok = fabs(out[0] - w0) < 1e-6 && fabs(out[1] - w1) < 1e-6;
  printf("consumer_c: attend -> (%g, %g), expected (%g, %g) -> %s\n", out[0], out[1], w0, w1,
         ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
