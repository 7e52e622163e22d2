// Software prefetch of byte ranges (DESIGN.md section 1, CPU kernels): the decode step of a
// sparse policy reads a few hundred KB scattered over a cache far larger than the last-level
// cache, so every step starts cold; asking for the lines it will read as soon as their addresses
// are known overlaps those misses with the work in between instead of paying them one by one.
#pragma once

#include <cstddef>
#include <cstdint>

namespace retrokv::cpu::detail {

inline constexpr std::size_t kCacheLine = 64;

/// Hint that [p, p + bytes) will be read soon. Locality as __builtin_prefetch: 3 = all cache
/// levels (L1), 2 = L2 and beyond, 1 = last level. A hint only: never faults, never changes
/// results.
template <int Locality = 3>
inline void prefetch_bytes(const void* p, std::size_t bytes) {
  if (bytes == 0) return;
  const char* c = static_cast<const char*>(p);
  const auto first = reinterpret_cast<std::uintptr_t>(c) & ~(std::uintptr_t{kCacheLine} - 1);
  const auto last = reinterpret_cast<std::uintptr_t>(c + bytes - 1);
  for (std::uintptr_t a = first; a <= last; a += kCacheLine)
    __builtin_prefetch(reinterpret_cast<const void*>(a), 0, Locality);
}

}  // namespace retrokv::cpu::detail
