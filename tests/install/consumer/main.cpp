// A project outside the tree: merges two attention states through the installed package and
// exits non-zero unless the result is the expected one.
#include <retrokv/retrokv.h>

#include <cmath>
#include <cstdio>

int main() {
  float oa[2] = {1.f, 0.f}, ob[2] = {0.f, 1.f};
  retrokv::AttentionStateRef a{oa, 0.f}, b{ob, 0.f};
  float out[2];
  float lse = retrokv::merge_states(a, b, out, 2);
  bool ok = std::fabs(out[0] - 0.5f) < 1e-6f && std::fabs(out[1] - 0.5f) < 1e-6f &&
            std::fabs(lse - std::log(2.f)) < 1e-6f;
  std::printf("consumer: merged (%g, %g), lse %g, cuda devices %d -> %s\n", out[0], out[1], lse,
              retrokv::cuda::device_count(), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
