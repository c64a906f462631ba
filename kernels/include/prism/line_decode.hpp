// Line-sensor kernels of diffraction line imaging (Sheinin et al., §3.2 and §4): row means,
// validity (Eq. 14's set A), MLP features, gray profile, peaks, patches and the LUT decoder.
//
// A scan is uint8 (R, h, Q, 3): R ROIs, h rows per ROI, Q pixels along y, RGB, C-contiguous; a
// batch is N scans back to back. sdk/lines/preprocess.py and sdk/lines/lut.py hold the NumPy
// twins and the full definitions; in short (float32, this order, no fused multiply-add):
//   mean        u = float(Σ_h pixel) * float(1/h)                   (integer row sum)
//   ROI valid   max(u) > t  and  #{c : u_c > floor} >= 2;  y valid iff any ROI valid
//   flags       kDark: no ROI has max(u) > t; kSingleChannel: not dark and the brightest ROI
//               (largest max(u), ties to the lowest r) has < 2 channels above the floor;
//               kSaturated: some byte read at y (any ROI, row, channel) >= saturation level;
//               kNoLut: y valid, but no valid ROI has a finite LUT value
//   features    per ROI u / sqrt((r*r + g*g) + b*b) (0 where invalid), then y / (Q - 1)
//   gray        float(Σ_{r,h,c} pixel) * float(1/(3 R h))
//   LUT         c1 = r / s, c2 = g / s with s = (r + g) + b; fy = (y - y0) / dy,
//               f1 = c1 (nc-1), f2 = c2 (nc-1), clamped, cell i = min(int(f), n-2), t = f - i;
//               lerp(a, b, t) = a (1 - t) + b t over c2, c1, then y (NaN corner -> NaN)
//   combine     over valid ROIs with a finite value, in ROI order: weighted num += w v,
//               den += w, xv = num / den with w = max(u); best: the largest w (ties lowest r)
//
// The per-scan work (row sums, de-interleave, per-y math, lookups) exists once per instruction
// set (line_decode_scalar.cpp, _avx2, _avx512, _neon; all include line_decode_body.inc),
// chosen at run time. Every path gives the same bits. One pass over each scan, in chunks of y
// that stay in L1; scratch memory is allocated once per call and thread, never per scan. On
// AVX-512 the decoder after the row sums is one fused loop over 16 y's on registers; the
// lookups load corner pairs with scalar loads on x86 (vgatherdpd is several times slower on
// Intel cores with the gather-data-sampling microcode).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace prism {
namespace line {

constexpr std::uint8_t kDark = 1;
constexpr std::uint8_t kSingleChannel = 2;
constexpr std::uint8_t kSaturated = 4;
constexpr std::uint8_t kNoLut = 8;

// Pixels along y processed together (their row sums and means stay in L1). With the next
// chunk prefetched, a chunk of 3 ROIs x 8 rows is 9 KB in flight beside 9 KB being summed:
// 128 measured 7 % faster than 256 on lines streamed from memory (Ice Lake, AVX-512).
constexpr std::int64_t kChunk = 128;

enum class LinePath { Auto, Scalar, Avx2, Avx512, Neon };

// "auto", "scalar", "avx2", "avx512", "neon".
const char* line_path_name(LinePath path);
// Inverse of line_path_name; throws std::invalid_argument naming the unknown value.
LinePath parse_line_path(const std::string& name);
// Empty when `path` runs here, otherwise why not. Auto and Scalar always run.
std::string line_path_unavailable_reason(LinePath path);
// avx512, then avx2 on x86-64; neon on aarch64; scalar otherwise or with PRISM_DISABLE_SIMD=1.
LinePath line_best_path();

struct ScanShape {
  std::int64_t batch = 1;   // N (0 allowed: nothing written)
  std::int64_t rois = 1;    // R >= 1 (<= 127: ROI indices are int8)
  std::int64_t rows = 1;    // h >= 1
  std::int64_t pixels = 1;  // Q >= 1
};

struct LineThresholds {
  float intensity_threshold = 20.0f;  // t (DN)
  float channel_floor = 4.0f;         // DN
  int saturation_level = 255;         // 1..255
};

struct LineOptions {
  LinePath path = LinePath::Auto;
  int num_threads = 1;  // threads over the N scans; 0: hardware_concurrency()
};

// The decoder's table: float32 (R, ny, nc, nc), NaN = no support; y grid y0 + k dy.
struct LineLut {
  const float* table = nullptr;
  std::int64_t ny = 1;
  std::int64_t nc = 2;  // >= 2
  float y0 = 0.0f;
  float dy = 1.0f;      // > 0
  bool weighted = true;  // false: best ROI
};

// All functions throw std::invalid_argument on bad sizes or an unavailable path.

// means: float32 (N, R, Q, 3).
void roi_means(const std::uint8_t* scans, const ScanShape& shape, float* means,
               const LineOptions& options = {});

// means (N, R, Q, 3) -> valid uint8 0/1 (N, R, Q), flags (N, Q) with kDark, kSingleChannel.
void validity(const float* means, std::int64_t batch, std::int64_t rois, std::int64_t pixels,
              const LineThresholds& thresholds, std::uint8_t* valid, std::uint8_t* flags);

// features float32 (N, Q, 3R + 1), valid uint8 0/1 (N, Q), flags (N, Q).
void line_features(const std::uint8_t* scans, const ScanShape& shape,
                   const LineThresholds& thresholds, float* features, std::uint8_t* valid,
                   std::uint8_t* flags, const LineOptions& options = {});

// profile float32 (N, Q).
void gray_profile(const std::uint8_t* scans, const ScanShape& shape, float* profile,
                  const LineOptions& options = {});

struct Peak {
  std::int64_t y;
  float y_sub;
};
// Peaks of one profile (Q,), ascending y (NMS strongest first, ties to the lower y; parabolic
// refinement). min_distance >= 1.
std::vector<Peak> find_peaks(const float* profile, std::int64_t pixels, float threshold,
                             std::int64_t min_distance);

// One scan (R, h, Q, 3); y_int (K,) in [0, Q); patches float32 (K, 3, h, width R), in_bounds
// uint8 0/1 (K,). width odd >= 1.
void extract_patches(const std::uint8_t* scan, std::int64_t rois, std::int64_t rows,
                     std::int64_t pixels, const std::int64_t* y_int, std::int64_t count,
                     std::int64_t width, float* patches, std::uint8_t* in_bounds);

// What a decode call produced, over all N x Q y's: y's with a finite xv, and y's carrying each
// flag (a valid y either decodes or carries kNoLut).
struct LineCounts {
  std::int64_t decoded = 0, dark = 0, single_channel = 0, saturated = 0, no_lut = 0;
};

// The LUT decoder: xv float32 (N, Q) (NaN where not decoded), roi int8 (N, Q) (-1: none),
// flags (N, Q). lut.table must have shape.rois ROIs. counts (optional): filled with the
// call's LineCounts, counted by the kernels as they write (no second pass over the outputs).
void lut_decode(const std::uint8_t* scans, const ScanShape& shape,
                const LineThresholds& thresholds, const LineLut& lut, float* xv,
                std::int8_t* roi, std::uint8_t* flags, const LineOptions& options = {},
                LineCounts* counts = nullptr);

// An XOR checksum of `count` bytes: a decoder that only read every byte of its input once. Benchmarks
// time it as the memory floor of a line decoder on the host (sdk.tools.bench_lines).
std::uint64_t read_checksum(const std::uint8_t* bytes, std::int64_t count);

// -------------------------------------------------------------------------------------------
// Internal interface between the driver (line_decode.cpp) and the per-ISA files. Plain structs
// and function pointers only: the ISA files are compiled with their own -m flags, so they define
// nothing with external linkage except their *_line_kernels() accessor.
namespace detail {

// Scratch of one thread, sized for one chunk of every ROI. The driver owns the memory
// (allocated once per call and thread); raw pointers keep std templates out of the ISA files.
struct Scratch {
  std::uint32_t* sums;   // 3 * kChunk
  std::uint8_t* maxima;  // 3 * kChunk
  float* means;          // R * 3 * kChunk, planar per ROI: [r][c][j]
  float* peak;           // R * kChunk: max(u) per ROI
  std::uint8_t* bits;    // R * kChunk: bit 0 max(u) > t, bit 1 two channels above the floor
  std::uint8_t* sat;     // kChunk: 1 where a byte read at y is saturated
  float* top;            // kChunk: max(u) of the brightest ROI
  std::uint8_t* top_bits;  // kChunk: bits of the brightest ROI
  std::uint8_t* any;     // kChunk: 1 where some ROI is valid
  // The decoder's per-y accumulators (kChunk each): weighted sums, best weight, value, ROI.
  float* num;
  float* den;
  float* best_w;
  float* best_v;
  std::int32_t* best;
  // The decoder's per-ROI lookup inputs (kChunk each): validity, table offsets of the two y
  // cells, chromaticity fractions, and the looked-up value.
  std::int32_t* ok;
  std::int32_t* ka;
  std::int32_t* kb;
  float* t1;
  float* t2;
  float* value;
};

// One scan of the batch.
struct ScanArgs {
  const std::uint8_t* scan;
  std::int64_t rois, rows, pixels;
  Scratch* scratch;
};

// Per-y grid of the LUT (computed once per call): the table offsets (in floats, within one
// ROI's table) of the y cell's plane and of the next one, and the fraction along y.
struct LutGrid {
  const LineLut* lut;
  const std::int32_t* iy;
  const std::int32_t* iy1;
  const float* ty;
};

struct IsaKernels {
  LinePath path;
  void (*means)(const ScanArgs&, float* means);  // (R, Q, 3)
  void (*features)(const ScanArgs&, const LineThresholds&, float* features, std::uint8_t* valid,
                   std::uint8_t* flags);
  void (*gray)(const ScanArgs&, float* profile);
  // counts: the scan's LineCounts are added to it.
  void (*decode)(const ScanArgs&, const LineThresholds&, const LutGrid&, float* xv,
                 std::int8_t* roi, std::uint8_t* flags, LineCounts* counts);
};

// nullptr where the path is not built into this binary (another architecture).
const IsaKernels* scalar_line_kernels();
const IsaKernels* avx2_line_kernels();
const IsaKernels* avx512_line_kernels();
const IsaKernels* neon_line_kernels();

}  // namespace detail
}  // namespace line
}  // namespace prism
