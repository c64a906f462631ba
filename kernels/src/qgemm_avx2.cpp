// AVX2 path of the PWLQ integer GEMM. Compiled with -mavx2 -mfma (this file only) and chosen
// at run time when cpu_features().avx2 and no AVX-512 VNNI.
//
// u8×s8 products: vpmaddubsw and vpmaddwd, exact for every int8 code: int16 runs bounded by the
// largest code (avx2_int.inc), and for codes beyond ±64 the activations split into nibbles on
// the fly (x = 16·high + low: 2 vpmaddubsw per product pair, runs of 8 k-blocks).
#include "prism/qgemm.hpp"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

#include <cstring>

namespace prism {
namespace qgemm_detail {
namespace {

constexpr int kP = kQgemmPanel, kB = kQgemmKBlock;

inline std::int32_t load_i32(const void* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#include "avx2_int.inc"

// One row group (two ymm of 8 rows) × 4 channels (half a panel): the k-blocks in runs of `run`
// summed in int16 (avx2_int.inc), then widened into the int32 accumulators.
inline void dense_tile(const std::uint8_t* x, std::int64_t k_blocks, const std::int8_t* panel,
                       int half, std::int64_t run, std::int32_t* out, std::int64_t ld) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[2][4];
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j) acc[h][j] = _mm256_setzero_si256();
  for (std::int64_t kb0 = 0; kb0 < k_blocks; kb0 += run) {
    const std::int64_t kb1 = kb0 + run < k_blocks ? kb0 + run : k_blocks;
    __m256i s[2][4];
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j) s[h][j] = _mm256_setzero_si256();
    for (std::int64_t kb = kb0; kb < kb1; ++kb) {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + kb * 64));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + kb * 64 + 32));
      const std::int8_t* wv = panel + kb * (kB * kP) + half * 4 * kB;
      for (int j = 0; j < 4; ++j) {
        const __m256i w = _mm256_set1_epi32(load_i32(wv + j * kB));
        PRISM_PADDW(s[0][j], _mm256_maddubs_epi16(x0, w));
        PRISM_PADDW(s[1][j], _mm256_maddubs_epi16(x1, w));
      }
    }
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        acc[h][j] = _mm256_add_epi32(acc[h][j], _mm256_madd_epi16(s[h][j], ones));
  }
  for (int j = 0; j < 4; ++j) {
    std::int32_t* o = out + (half * 4 + j) * ld;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), acc[0][j]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 8), acc[1][j]);
  }
}

// Codes beyond ±64: each activation split into nibbles on the fly, x = 16·high + low, so every
// vpmaddubsw pair sum is at most 2·15·128 and runs of `run` (≥ 8) k-blocks add up in int16;
// `16·high` is applied by vpmaddwd with 16s. One ymm of 8 rows (row half rh) × 4 channels per
// call: 8 int16 sums.
inline void dense_tile_wide(const std::uint8_t* x, std::int64_t k_blocks,
                            const std::int8_t* panel, int half, int rh, std::int64_t run,
                            std::int32_t* out, std::int64_t ld) {
  const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  __m256i acc[4];
  for (int j = 0; j < 4; ++j) acc[j] = _mm256_setzero_si256();
  for (std::int64_t kb0 = 0; kb0 < k_blocks; kb0 += run) {
    const std::int64_t kb1 = kb0 + run < k_blocks ? kb0 + run : k_blocks;
    __m256i sl[4], sh[4];
    for (int j = 0; j < 4; ++j) sl[j] = sh[j] = _mm256_setzero_si256();
    for (std::int64_t kb = kb0; kb < kb1; ++kb) {
      const __m256i xv =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + kb * 64 + 32 * rh));
      const __m256i lo = _mm256_and_si256(xv, nibble);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(xv, 4), nibble);
      const std::int8_t* wv = panel + kb * (kB * kP) + half * 4 * kB;
      for (int j = 0; j < 4; ++j) {
        const __m256i w = _mm256_set1_epi32(load_i32(wv + j * kB));
        PRISM_PADDW(sl[j], _mm256_maddubs_epi16(lo, w));
        PRISM_PADDW(sh[j], _mm256_maddubs_epi16(hi, w));
      }
    }
    for (int j = 0; j < 4; ++j) {
      acc[j] = _mm256_add_epi32(acc[j], _mm256_add_epi32(_mm256_madd_epi16(sl[j], ones),
                                                         _mm256_madd_epi16(sh[j], sixteen)));
    }
  }
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (half * 4 + j) * ld + 8 * rh), acc[j]);
  }
}

void dense(const DenseArgs& a) {
  for (std::int64_t g = 0; g < a.x.row_groups; ++g) {
    const std::uint8_t* x = a.x.data + g * a.x.k_blocks * 64;
    for (int half = 0; half < 2; ++half) {
      if (!a.wide_codes) {
        dense_tile(x, a.x.k_blocks, a.panel, half, a.int16_groups, a.out + g * 16, a.ld);
        continue;
      }
      for (int rh = 0; rh < 2; ++rh) {
        dense_tile_wide(x, a.x.k_blocks, a.panel, half, rh, a.int16_groups, a.out + g * 16,
                        a.ld);
      }
    }
  }
}

// One channel's sparse tail over a row group: runs of `run` blocks summed in int16; with wide
// codes on the activations' nibbles, as in dense_tile_wide.
template <bool Wide>
inline void tail_group(const std::uint8_t* x, const QgemmTailBlock* b, const QgemmTailBlock* end,
                       std::int64_t run, std::int32_t* out_t) {
  const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  __m256i t0 = _mm256_setzero_si256(), t1 = t0;
  while (b < end) {
    const QgemmTailBlock* stop = end - b <= run ? end : b + run;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, h0 = s0, h1 = s0;
    for (; b < stop; ++b) {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + b->k_block * 64));
      const __m256i x1 =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + b->k_block * 64 + 32));
      const __m256i codes = _mm256_set1_epi32(b->codes);
      if (Wide) {
        PRISM_PADDW(s0, _mm256_maddubs_epi16(_mm256_and_si256(x0, nibble), codes));
        PRISM_PADDW(s1, _mm256_maddubs_epi16(_mm256_and_si256(x1, nibble), codes));
        PRISM_PADDW(h0, _mm256_maddubs_epi16(
                            _mm256_and_si256(_mm256_srli_epi16(x0, 4), nibble), codes));
        PRISM_PADDW(h1, _mm256_maddubs_epi16(
                            _mm256_and_si256(_mm256_srli_epi16(x1, 4), nibble), codes));
      } else {
        PRISM_PADDW(s0, _mm256_maddubs_epi16(x0, codes));
        PRISM_PADDW(s1, _mm256_maddubs_epi16(x1, codes));
      }
    }
    t0 = _mm256_add_epi32(t0, _mm256_madd_epi16(s0, ones));
    t1 = _mm256_add_epi32(t1, _mm256_madd_epi16(s1, ones));
    if (Wide) {
      t0 = _mm256_add_epi32(t0, _mm256_madd_epi16(h0, sixteen));
      t1 = _mm256_add_epi32(t1, _mm256_madd_epi16(h1, sixteen));
    }
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out_t), t0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out_t + 8), t1);
}

void tail(const TailArgs& a) {
  for (std::int64_t j = 0; j < a.channels; ++j) {
    const QgemmTailBlock* b = a.blocks + a.start[j];
    const QgemmTailBlock* end = a.blocks + a.start[j + 1];
    for (std::int64_t g = 0; g < a.x.row_groups; ++g) {
      const std::uint8_t* x = a.x.data + g * a.x.k_blocks * 64;
      std::int32_t* ot = a.out_t + j * a.ld + g * 16;
      if (a.wide_codes)
        tail_group<true>(x, b, end, a.int16_groups, ot);
      else
        tail_group<false>(x, b, end, a.int16_groups, ot);
    }
  }
}

// The float epilogue, 8 rows at a time (avx2_int.inc).
void epilogue(const EpilogueArgs& a) {
  for (std::int64_t j = 0; j < a.channels; ++j) {
    for (std::int64_t r = 0; r < a.rows; r += 8) {
      const std::int64_t i = j * a.ld + r;
      const __m256i ac = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.acc + i));
      const __m256i at = a.acc_t
                             ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.acc_t + i))
                             : _mm256_setzero_si256();
      const __m256i rs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.row_sums + r));
      const __m256 y = affine8(ac, a.zero_c[j], a.alpha_c[j], a.acc_t != nullptr, at,
                               a.zero_t[j], a.alpha_t[j], rs, a.row_zero, a.gamma[j], a.beta[j]);
      if (!a.q) {
        _mm256_storeu_ps(a.y + i, y);
        continue;
      }
      const __m128i b8 = low_bytes(requantize8(y, a.out_scale, a.out_zero, a.out_low));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(a.q + i), b8);
    }
  }
}

// 8×8 transpose of 32-bit elements: v[i] holds row i on entry, column i on exit.
inline void transpose8x8(__m256i (&v)[8]) {
  __m256i t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    v[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    v[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    v[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    v[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm256_permute2x128_si256(v[c], v[4 + c], 0x20);
    t[4 + c] = _mm256_permute2x128_si256(v[c], v[4 + c], 0x31);
  }
  for (int i = 0; i < 8; ++i) v[i] = t[i];
}

// Row-major rows -> packed layout: 8×8 dword transposes over whole 32-byte chunks of 8 rows;
// the last partial chunk of K and rows past M go through a zero-padded copy.
void pack_matrix(const MatrixPackArgs& a) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  alignas(32) std::uint8_t pad[8][32];
  for (std::int64_t g = 0; g < a.row_groups; ++g) {
    std::uint8_t* out = a.out + g * a.k_blocks * 64;
    for (int half = 0; half < 2; ++half) {
      const std::int64_t r0 = a.row0 + g * 16 + half * 8;
      const std::int64_t valid = a.rows - r0 < 0 ? 0 : a.rows - r0 < 8 ? a.rows - r0 : 8;
      __m256i sums = _mm256_setzero_si256();
      for (std::int64_t c = 0; c * 8 < a.k_blocks; ++c) {
        const std::int64_t bytes = a.depth - c * 32;
        __m256i v[8];
        for (int r = 0; r < 8; ++r) {
          const std::uint8_t* src = a.x + (r0 + r) * a.depth + c * 32;
          if (r < valid && bytes >= 32) {
            v[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
            continue;
          }
          std::memset(pad[r], 0, 32);
          if (r < valid) std::memcpy(pad[r], src, static_cast<std::size_t>(bytes));
          v[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(pad[r]));
        }
        transpose8x8(v);
        const std::int64_t n = a.k_blocks - c * 8 < 8 ? a.k_blocks - c * 8 : 8;
        for (std::int64_t i = 0; i < n; ++i) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (c * 8 + i) * 64 + half * 32), v[i]);
          sums = _mm256_add_epi32(
              sums, _mm256_madd_epi16(_mm256_maddubs_epi16(v[i], ones8), ones16));
        }
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.row_sums + g * 16 + half * 8), sums);
    }
  }
}

// Rows [row0, row0 + 16·row_groups) of the implicit im2col matrix (TapPackArgs): per k-block,
// the 16 rows of its 4 taps from four 16-byte loads, interleaved bytewise into rows of 4
// k-values (two unpack levels) and stored as two ymm. Row sums by vpmaddubsw with ones (pairs
// of bytes: at most 510, no saturation) and vpmaddwd.
void pack_taps(const TapPackArgs& a) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  const std::int64_t full = a.depth / kB;
  auto store = [&](std::uint8_t* out, __m128i t0, __m128i t1, __m128i t2, __m128i t3,
                   __m256i& s0, __m256i& s1) {
    const __m128i ab_lo = _mm_unpacklo_epi8(t0, t1), ab_hi = _mm_unpackhi_epi8(t0, t1);
    const __m128i cd_lo = _mm_unpacklo_epi8(t2, t3), cd_hi = _mm_unpackhi_epi8(t2, t3);
    const __m256i v0 = _mm256_set_m128i(_mm_unpackhi_epi16(ab_lo, cd_lo),    // rows 4..7
                                        _mm_unpacklo_epi16(ab_lo, cd_lo));   // rows 0..3
    const __m256i v1 = _mm256_set_m128i(_mm_unpackhi_epi16(ab_hi, cd_hi),    // rows 12..15
                                        _mm_unpacklo_epi16(ab_hi, cd_hi));   // rows 8..11
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32), v1);
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(v0, ones8), ones16));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(v1, ones8), ones16));
  };
  auto load = [](const std::uint8_t* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  };
  for (std::int64_t g = 0; g < a.row_groups; ++g) {
    const std::uint8_t* rows = a.planes + a.row0 + g * 16;
    std::uint8_t* out = a.out + g * a.k_blocks * 64;
    const std::int64_t* tap = a.tap_offset;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0;
    for (std::int64_t kb = 0; kb < full; ++kb, tap += kB) {
      store(out + kb * 64, load(rows + tap[0]), load(rows + tap[1]), load(rows + tap[2]),
            load(rows + tap[3]), s0, s1);
    }
    if (full < a.k_blocks) {  // the last partial block: zeros past K
      __m128i t[kB];
      for (int i = 0; i < kB; ++i) {
        t[i] = full * kB + i < a.depth ? load(rows + tap[i]) : _mm_setzero_si128();
      }
      store(out + full * 64, t[0], t[1], t[2], t[3], s0, s1);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.row_sums + g * 16), s0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.row_sums + g * 16 + 8), s1);
  }
}

// ONNX QuantizeLinear, 8 values at a time: requantize8 with a low end of 0, the portable loop's
// float32 operations (true division, round half to even, add, saturate); the last partial
// vector through a copy.
void quantize(const QuantizeArgs& a) {
  const __m256 clo = _mm256_set1_ps(a.clip_low), chi = _mm256_set1_ps(a.clip_high);
  for (std::int64_t i = 0; i < a.count; i += 8) {
    const std::int64_t n = a.count - i < 8 ? a.count - i : 8;
    alignas(32) float in[8] = {};
    __m256 x;
    if (n == 8) {
      x = _mm256_loadu_ps(a.x + i);
    } else {
      std::memcpy(in, a.x + i, static_cast<std::size_t>(n) * sizeof(float));
      x = _mm256_load_ps(in);
    }
    if (a.clip) x = _mm256_min_ps(_mm256_max_ps(x, clo), chi);
    const __m128i b8 = low_bytes(requantize8(x, a.scale, a.zero_point, 0.0f));
    if (n == 8) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(a.q + i), b8);
    } else {
      alignas(16) std::uint8_t out[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(out), b8);
      std::memcpy(a.q + i, out, static_cast<std::size_t>(n));
    }
  }
}

// 12 independent vpmaddubsw chains (each result is the next one's u8 operand): more than
// latency × throughput, so the loop runs at the instruction's throughput limit.
__attribute__((noinline)) __m256i vpmaddubsw_loop(std::int64_t iterations) {
  const __m256i w = _mm256_set1_epi8(1);
  __m256i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_epi8(static_cast<char>(i));
  // volatile: identical asm statements must neither be merged nor moved out of the loop.
#define PRISM_PROBE(acc) __asm__ volatile("vpmaddubsw %1, %0, %0" : "+x"(acc) : "x"(w))
  for (std::int64_t i = 0; i < iterations; ++i) {
    PRISM_PROBE(a[0]); PRISM_PROBE(a[1]); PRISM_PROBE(a[2]); PRISM_PROBE(a[3]);
    PRISM_PROBE(a[4]); PRISM_PROBE(a[5]); PRISM_PROBE(a[6]); PRISM_PROBE(a[7]);
    PRISM_PROBE(a[8]); PRISM_PROBE(a[9]); PRISM_PROBE(a[10]); PRISM_PROBE(a[11]);
  }
#undef PRISM_PROBE
  __m256i s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_epi16(s, a[i]);
  return s;
}

const IsaKernels kAvx2{QgemmPath::Avx2, false, dense, tail, epilogue, pack_matrix, nullptr,
                       pack_taps, quantize};

}  // namespace

const IsaKernels* avx2_kernels() { return &kAvx2; }

std::int64_t avx2_probe_loop(std::int64_t iterations) {
  return _mm256_extract_epi16(vpmaddubsw_loop(iterations), 0);
}

}  // namespace qgemm_detail
}  // namespace prism

#else  // not an x86-64 build with the AVX2 flags

namespace prism {
namespace qgemm_detail {
const IsaKernels* avx2_kernels() { return nullptr; }
std::int64_t avx2_probe_loop(std::int64_t) { return 0; }
}  // namespace qgemm_detail
}  // namespace prism

#endif
