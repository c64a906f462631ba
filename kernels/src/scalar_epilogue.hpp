// The float epilogue and requantization of one value, in the float32 operation order every path
// follows (no FMA), for the portable paths: qgemm_scalar.cpp and fold_conv.cpp's scalar task.
// Internal linkage (static): both files are built without ISA flags, and no copy of these may
// reach a file built with them, or the other way round.
#pragma once
#include <cmath>
#include <cstdint>

namespace prism {
namespace scalar_epilogue {

// y = (ac − zero_c)·alpha_c [+ (at − zero_t)·alpha_t] + (r − row_zero)·gamma + beta.
static inline float value(std::int32_t ac, std::int32_t zero_c, float alpha_c, bool tail,
                          std::int32_t at, std::int32_t zero_t, float alpha_t, std::int32_t r,
                          std::int32_t row_zero, float gamma, float beta) {
  float y = static_cast<float>(ac - zero_c) * alpha_c;
  if (tail) y = y + static_cast<float>(at - zero_t) * alpha_t;
  y = y + static_cast<float>(r - row_zero) * gamma;
  return y + beta;
}

// saturate(round_half_even(y / out_scale) + out_zero) clamped below at out_low (NaN -> low, as
// vmaxps does).
static inline std::uint8_t requantize(float y, float out_scale, float out_zero, float out_low) {
  float t = std::nearbyint(y / out_scale) + out_zero;
  t = t > out_low ? t : out_low;
  t = t < 255.0f ? t : 255.0f;
  return static_cast<std::uint8_t>(t);
}

}  // namespace scalar_epilogue
}  // namespace prism
