// Host-side IEEE binary16 (`retrokv::half`) and bfloat16 (`retrokv::bfloat16`) storage types.
// Conversions from float round to nearest, ties to even, exactly as IEEE 754 says (NaN stays NaN,
// overflow goes to Inf, denormals are kept). Arithmetic is done in float (DESIGN.md section 1).
#pragma once

#include <cstdint>
#include <cstring>

#include "retrokv/core/config.h"

namespace retrokv {

namespace detail {

RETROKV_HOST_DEVICE uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

RETROKV_HOST_DEVICE float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// float -> binary16 bits, round to nearest even.
RETROKV_HOST_DEVICE uint16_t float_to_half_bits(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN: keep NaN quiet and non-zero.
    return static_cast<uint16_t>(sign | 0x7c00u |
                                 (abs > 0x7f800000u ? (0x0200u | ((abs >> 13) & 0x3ffu)) : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (abs < 0x38800000u) {  // result is a half denormal (or zero): |f| < 2^-14
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to zero
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14 + (127 - exp) - 1 ... value = mant * 2^(exp-150)
    // Half denormal unit is 2^-24: result = mant * 2^(exp - 150 + 24) = mant >> (126 - exp).
    const uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    uint32_t r = q + ((rem > halfway || (rem == halfway && (q & 1u))) ? 1u : 0u);
    return static_cast<uint16_t>(sign | r);
  }
  // Normal: rebias exponent, round 13 dropped mantissa bits to nearest even.
  uint32_t r = abs - 0x38000000u;  // exponent 127 -> 15
  const uint32_t rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // may carry into exponent: correct
  return static_cast<uint16_t>(sign | r);
}

/// binary16 bits -> float (exact).
RETROKV_HOST_DEVICE float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    // Denormal: value = mant * 2^-24.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

/// float -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN.
RETROKV_HOST_DEVICE uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);
  const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

RETROKV_HOST_DEVICE float bf16_bits_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

}  // namespace detail

/// IEEE binary16 storage type. Explicit construction from float rounds to nearest even.
struct half {
  uint16_t bits = 0;
  half() = default;
  RETROKV_HOST_DEVICE explicit half(float f) : bits(detail::float_to_half_bits(f)) {}
  RETROKV_HOST_DEVICE static half from_bits(uint16_t b) {
    half h;
    h.bits = b;
    return h;
  }
  RETROKV_HOST_DEVICE explicit operator float() const { return detail::half_bits_to_float(bits); }
};

/// bfloat16 storage type (8-bit exponent, 7-bit mantissa).
struct bfloat16 {
  uint16_t bits = 0;
  bfloat16() = default;
  RETROKV_HOST_DEVICE explicit bfloat16(float f) : bits(detail::float_to_bf16_bits(f)) {}
  RETROKV_HOST_DEVICE static bfloat16 from_bits(uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
  RETROKV_HOST_DEVICE explicit operator float() const { return detail::bf16_bits_to_float(bits); }
};

static_assert(sizeof(half) == 2 && sizeof(bfloat16) == 2);

/// Uniform conversion used by templated kernels: to_float(x) for float, half and bfloat16.
RETROKV_HOST_DEVICE float to_float(float x) { return x; }
RETROKV_HOST_DEVICE float to_float(half x) { return static_cast<float>(x); }
RETROKV_HOST_DEVICE float to_float(bfloat16 x) { return static_cast<float>(x); }

/// from_float<T>(f): float -> storage type T with round to nearest even.
template <typename T>
RETROKV_HOST_DEVICE T from_float(float f) {
  return T(f);
}

/// Element type tags for run-time dispatch (store configuration, file headers).
enum class DType : uint8_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
  }
  return "unknown";
}

template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::kFloat32;
};
template <>
struct dtype_of<half> {
  static constexpr DType value = DType::kFloat16;
};
template <>
struct dtype_of<bfloat16> {
  static constexpr DType value = DType::kBFloat16;
};

}  // namespace retrokv
