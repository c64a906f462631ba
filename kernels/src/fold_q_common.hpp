// Helpers of the SIMD integer fold tasks (fold_conv_avx2.cpp, fold_conv_avx512vnni.cpp,
// fold_conv_neon_dot.cpp): the row segments of a task's vectors and the kernel-row code sums.
// Internal linkage (static) and no ISA code: each file built with its own flags gets its own
// inlined copy, and none reaches another file (see prism/fold_conv.hpp's detail interface).
#pragma once
#include <cstdint>
#include <cstring>

#include "prism/fold_conv.hpp"

namespace prism {
namespace fold_conv_detail {

constexpr int NB = 4 * kFoldQBlock;  // folded channels per weight block
constexpr std::int64_t kRow = kFoldQRowBytes;

// The 4 bytes at p as one int32 (a group's codes, to broadcast).
static inline std::int32_t load_i32(const void* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// A run of lanes [l0, l1) of one vector of a task whose folded output pixels lie in one folded
// output row i, from column j.
struct QSegment {
  std::int64_t l0, l1, i, j;
};

// The task's vectors as row segments: seg[v][0, count[v]) (one unless a vector spans rows).
struct QTaskSegments {
  QSegment seg[kFoldQVectors][16];
  int count[kFoldQVectors];
};

// Vector v is one whole row segment (16 pixels in one folded output row).
static inline bool full(const QTaskSegments& segs, std::int64_t v) {
  return segs.count[v] == 1 && segs.seg[v][0].l0 == 0 && segs.seg[v][0].l1 == 16;
}

static inline void q_task_segments(const QTask& t, QTaskSegments& out) {
  const std::int64_t wf = t.folded_out_width, pixels = t.folded_out_height * wf;
  for (std::int64_t v = 0; v < t.vectors; ++v) {
    const std::int64_t m0 = 16 * (t.v0 + v), m1 = m0 + 16 < pixels ? m0 + 16 : pixels;
    int n = 0;
    for (std::int64_t m = m0; m < m1;) {
      const std::int64_t i = m / wf, j = m % wf;
      const std::int64_t len = wf - j < m1 - m ? wf - j : m1 - m;
      out.seg[v][n++] = QSegment{m - m0, m - m0 + len, i, j};
      m += len;
    }
    out.count[v] = n;
  }
}

// What channel n's kernel rows add beyond the passes' sums over the live rows [kh0, kh1):
// zx times the codes of the rows outside (lying wholly in the padding) plus live_x times the
// codes of the rows inside (the NEON path's bias correction; 0 elsewhere). sums: row_sums or
// tail_row_sums ([n][kh]).
static inline std::int32_t q_row_code_sum(const QTask& t, const std::int32_t* sums,
                                          std::int64_t n, std::int64_t kh0, std::int64_t kh1,
                                          std::int32_t live_x) {
  std::int32_t live = 0, skipped = 0;
  for (std::int64_t kh = 0; kh < t.kernel; ++kh) {
    (kh < kh0 || kh >= kh1 ? skipped : live) += sums[n * t.kernel + kh];
  }
  return static_cast<std::int32_t>(t.zx) * skipped + live_x * live;
}

// What every SIMD task computes first: its live kernel rows [kh0, kh1) (q_live_rows), the
// groups those rows hold per pixel (live = (kh1 − kh0)·K·C_in), its row segments, and what the
// skipped rows add to each window sum R: zx for each of their 4·K·C_in bytes.
struct QTaskSetup {
  std::int64_t kh0, kh1, live;
  std::int32_t skipped_sum;
  QTaskSegments segs;
};

static inline QTaskSetup q_task_setup(const QTask& t) {
  QTaskSetup s;
  q_live_rows(t, s.kh0, s.kh1);
  const std::int64_t groups_per_row = t.kernel * t.in_channels;
  s.live = (s.kh1 - s.kh0) * groups_per_row;
  s.skipped_sum = static_cast<std::int32_t>(4 * static_cast<std::int64_t>(t.zx) *
                                            (t.kernel - (s.kh1 - s.kh0)) * groups_per_row);
  q_task_segments(t, s.segs);
  return s;
}

}  // namespace fold_conv_detail
}  // namespace prism
