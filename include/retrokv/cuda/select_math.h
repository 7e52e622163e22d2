// The digit step of the GPU radix top-k (centroid scoring, exact kNN), shared with the host so
// the CPU tests run the whole selection with it: given the 256-bin histogram of the candidates
// that still match the prefix, pick the digit of the k-th largest key.
#pragma once

#include <cstdint>

#include "retrokv/core/config.h"

namespace retrokv::cuda {

/// hist[256]: counts per digit of the keys matching the prefix so far; `remaining`: how many of
/// the top k are still to be found among them (>= 1 and <= their total). Returns the digit of
/// the k-th largest key and sets *remaining_out to how many keys with that digit belong to the
/// top k (the ones with larger digits are all in it).
RETROKV_HOST_DEVICE int radix_pick_digit(const int* hist, int64_t remaining,
                                         int64_t* remaining_out) {
  int64_t above = 0;
  int digit = 255;
  for (; digit > 0; --digit) {
    if (above + hist[digit] >= remaining) break;
    above += hist[digit];
  }
  *remaining_out = remaining - above;
  return digit;
}

}  // namespace retrokv::cuda
