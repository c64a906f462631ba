// Folded convolution (Fold-ASPP; Zhao et al., "Suppress and Balance", ECCV 2020, Sect. 3.3):
// Fold (2×2 stride-2 space-to-depth) → K×K dilated convolution → Unfold (depth-to-space), in one
// pass and without materialising the folded tensors. The result equals PyTorch's
//
//   pixel_shuffle(conv2d(pixel_unshuffle(x, 2), W, b, padding=p, dilation=d), 2)
//
// Channel order (PyTorch's, not ONNX SpaceToDepth's): folded channel c·4 + bh·2 + bw holds pixel
// (2i + bh, 2j + bw) of channel c. W is the folded convolution's (4·C_out, 4·C_in, K, K) weight.
// Output pixel (y, x) of channel co therefore comes from folded position (y/2, x/2) and folded
// output channel co·4 + (y%2)·2 + (x%2); its tap (kh, kw) on folded input channel ci·4 + bh·2 + bw
// reads input pixel (2·(y/2 + kh·d − p) + bh, 2·(x/2 + kw·d − p) + bw), or padding.
//
// How the kernels avoid the folded tensors:
//   FP32: the output is computed in rows of 16 (or 8) consecutive output pixels. Lanes 2t and
//   2t+1 belong to the same folded position, so one contiguous input load, duplicated even or
//   odd lanes (bw = 0 / 1), feeds both output phases px, each with its own weight: the weight is
//   a broadcast (w[px=0], w[px=1]) pair. Both output rows of a folded row (py = 0, 1) reuse the
//   same loads. Zero padding is a masked load.
//   FP32, K = 3, AVX-512: Winograd F(2×2, 3×3) on dilated tiles (2×2 folded output positions
//   {i, i + d} × {j, j + d} from 4×4 folded inputs spaced d apart): 16 multiplications per
//   tile and channel pair instead of 36. The fold is in the gather indices of the input
//   transform, the unfold in the scatter indices of the output transform. It trades 2.25×
//   fewer multiplications for transformed weights 16/9 the size and two scratch tensors in the
//   Winograd domain (per calling thread, reused), and wastes work on tiles that overhang the
//   output when a residue class modulo d has an odd number of rows.
//   Integer: the four pixels of a 2×2 fold block are exactly the four bytes that one int32 lane
//   of a u8×s8 dot-product instruction (vpdpbusd) reduces, so each folded row is gathered once
//   per output row into a small per-thread buffer of 4-byte groups (zero-point padded), and every
//   tap is a plain offset into it.
//
// Integer arithmetic is the PWLQ W·A8 arithmetic of prism/qgemm.hpp (folded form: W0 the folded
// center codes, W1 the tail codes), applied to the folded convolution: per folded output channel
// n = co·4 + py·2 + px and folded position (i, j),
//   A_c = Σ Xq·W0, A_t = Σ Xq·W1 over the 4·C_in·K·K window (padding = zx), and
//   R(i, j) = Σ Xq over the same window; then the float epilogue of prism/qgemm.hpp with the
//   reduction depth 4·C_in·K·K and per-channel constants indexed by n (the same bits as qconv2d
//   of the unfused sequence).
// sdk/fold_conv.py documents the Python API and holds the NumPy twins.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "prism/qgemm.hpp"

namespace prism {

struct FoldConvGeometry {
  std::int64_t batch = 1;
  std::int64_t in_channels = 0;        // C_in of x (the folded convolution sees 4·C_in)
  std::int64_t height = 0, width = 0;  // H, W of x; both even
  std::int64_t out_channels = 0;       // C_out of y (the folded convolution makes 4·C_out)
  std::int64_t kernel = 3;             // K (square kernel)
  std::int64_t dilation = 1;           // d, in folded pixels
  std::int64_t padding = 0;            // p, in folded pixels, on every side (zero / zx)

  // H/2 + 2p − d·(K − 1) (stride 1), and likewise for W.
  std::int64_t folded_out_height() const;
  std::int64_t folded_out_width() const;
  // The unfolded output: twice the folded size.
  std::int64_t out_height() const { return 2 * folded_out_height(); }
  std::int64_t out_width() const { return 2 * folded_out_width(); }
  // 4·C_in·K·K, the reduction depth of one folded output value.
  std::int64_t depth() const { return 4 * in_channels * kernel * kernel; }
};

// Throws std::invalid_argument naming the first bad field: non-positive sizes (batch may be 0),
// odd H or W, negative padding, an empty output.
void check_fold_conv(const FoldConvGeometry& geometry);

// Instruction-set paths. FP32: scalar (portable C++), avx2 (AVX2 + FMA), avx512 (AVX-512F), all
// direct; avx2_winograd / avx512_winograd: Winograd F(2×2, 3×3) for K = 3 (2.25× fewer
// multiplications), avx2_winograd4 / avx512_winograd4: F(4×4, 3×3) (4× fewer; the direct kernel
// of the same ISA for other K); neon_winograd / neon_winograd4: the same on aarch64 NEON (the
// portable direct kernel for other K). Integer: scalar, avx2
// (vpmaddubsw, saturation-free: int16 runs bounded by the largest code, activations split into
// nibbles for codes beyond ±64), avx512vnni (vpdpbusd), neon_dot (aarch64 sdot on x − 128). Auto picks the best available
// one (for FP32 with K = 3: direct, Winograd F(2×2) or F(4×4) by a cost model, see
// fold_conv_detail::winograd_tile);
// PRISM_DISABLE_SIMD=1 makes it scalar, PRISM_MAX_ISA caps it (prism/cpu_features.hpp).
enum class FoldConvPath {
  Auto, Scalar, Avx2, Avx512, Avx512Winograd, Avx512Vnni, NeonDot, Avx2Winograd,
  Avx512Winograd4, Avx2Winograd4, NeonWinograd, NeonWinograd4
};

const char* fold_conv_path_name(FoldConvPath path);
// Inverse of fold_conv_path_name; throws std::invalid_argument naming an unknown value.
FoldConvPath parse_fold_conv_path(const std::string& name);
// Empty when the FP32 (integer = false) or integer kernel can take `path` here, else why not.
std::string fold_conv_path_unavailable_reason(FoldConvPath path, bool integer);
// The path Auto resolves to for the FP32 or the integer kernel.
FoldConvPath fold_conv_best_path(bool integer);

struct FoldConvOptions {
  FoldConvPath path = FoldConvPath::Auto;
  // 0: automatic (up to hardware_thread_count(), fewer for small problems); n > 0: at most n.
  // Results never depend on the thread count.
  int num_threads = 0;
};

// ------------------------------------------------------------------------------------ FP32 --

// Output channels per weight block: 6 output channels = 24 folded channels (6 co × 2 py × 2 px).
constexpr int kFoldBlock = 6;

// FP32 weights packed once. Block b holds output channels [6b, 6b + 6) (zeros past C_out) as
//   data[b][kh][kw][bh][ci][bw][co 6][py 2][px 2]
// so the inner loop over input channels reads 48 consecutive floats per tap.
//
// For K = 3 also the Winograd form U = G·g·Gᵀ of every (folded output, folded input) channel
// pair, as winograd[ξ 16][b][cf 4·C_in][n 12]: 12 folded output channels per block b (zeros past
// 4·C_out), ξ = α·4 + β the position in the 4×4 transformed tile.
struct PackedFoldWeights {
  std::int64_t in_channels = 0, out_channels = 0, kernel = 0;
  std::int64_t blocks = 0;
  std::vector<float> data;
  std::vector<float> bias;  // [blocks][co 6][py 2][px 2]; zeros without a bias
  std::int64_t winograd_blocks = 0;
  std::vector<float> winograd;
  // F(4×4, 3×3): the same for U = G₄·g·G₄ᵀ, ξ = α·6 + β < 36 (K = 3 only).
  std::vector<float> winograd4;
  std::vector<float> folded_bias;  // (4·C_out,), zeros without a bias
};

// w: (4·C_out, 4·C_in, K, K) float32 row-major; bias: (4·C_out,) or null.
PackedFoldWeights pack_fold_weights(const float* w, const float* bias, std::int64_t in_channels,
                                    std::int64_t out_channels, std::int64_t kernel);

// The FP32 path fold_conv2d runs for `geometry` when asked for `path`: Auto resolves to the best
// ISA and there, for K = 3, to its direct path or its F(2×2) or F(4×4) Winograd path by the cost
// model (fold_conv_detail::winograd_tile); a Winograd path runs its direct kernel for K ≠ 3.
// Throws std::invalid_argument on a bad geometry or an unavailable path.
FoldConvPath fold_conv_fp32_algorithm(const FoldConvGeometry& geometry, FoldConvPath path);

// x: (batch, C_in, H, W) float32 C-contiguous -> y: (batch, C_out, 2·Hf, 2·Wf) float32, with
// y = max(y, 0) when relu. Throws std::invalid_argument on a bad geometry or path.
void fold_conv2d(const float* x, const FoldConvGeometry& geometry, const PackedFoldWeights& w,
                 bool relu, float* y, const FoldConvOptions& options = {});

// --------------------------------------------------------------------------------- integer --

// One 4-byte group (the 2×2 fold block of one input channel and tap) of one channel's tail.
struct FoldTailGroup {
  std::int32_t group;  // (kh·K + kw)·C_in + ci
  std::int32_t codes;  // 4 × int8 W1[n, ci·4 + q, kh, kw], q = bh·2 + bw, little endian
};

// Output channels per integer weight block: 3 output channels = 12 folded channels.
constexpr int kFoldQBlock = 3;

// Integer weights packed once: the folded center codes W0 as
//   dense[b][kh][kw][ci][n 12][q 4]        (n = co·4 + py·2 + px within block b)
// and, with a tail, per folded channel n and kernel row kh the list of 4-byte groups holding a
// non-zero W1 code, in group order (what the AVX2 and NEON tail passes read). The same codes,
// element by element, in quads per (n, kh) list (the last one of a list padded with zero codes on
// its first element): what the AVX-512 VNNI tail pass reads, so its work follows the ~10 % of
// tail codes rather than the ~34 % of groups that hold one.
struct PackedFoldQWeights {
  std::int64_t in_channels = 0, out_channels = 0, kernel = 0;
  std::int64_t blocks = 0;
  bool has_tail = false;
  int max_abs_code = 0;  // largest |code| of W0 and W1 (the AVX2 path splits codes beyond ±64)
  std::vector<std::int8_t> dense;
  std::vector<std::int64_t> tail_start;  // 4·C_out·K + 1 offsets: list (n, kh) at n·K + kh
  std::vector<FoldTailGroup> tail_groups;
  std::vector<std::int64_t> quad_start;  // as tail_start, into tail_quads
  std::vector<PwlqTailQuad> tail_quads;  // row[j]: element 4·group + q
  std::int64_t tail_code_count = 0;      // non-zero tail codes
  std::vector<std::int32_t> sum_center, sum_tail;  // ΣW0[n], ΣW1[n]
  // Σ W0[n, ·, kh, ·] and Σ W1[n, ·, kh, ·] per [n][kh]: what a kernel row lying wholly in the
  // zero-point padding adds (times zx), so the dense and tail passes can skip it.
  std::vector<std::int32_t> row_sums, tail_row_sums;

  std::int64_t depth() const { return 4 * in_channels * kernel * kernel; }
  // Fraction of (channel, group) pairs with a non-zero tail code.
  double tail_group_density() const;
  // Fraction of the tail codes that are non-zero, and the quads (padding counted) per
  // (channel, group) pair: the AVX-512 VNNI tail pass runs one vpdpbusd per quad and vector
  // where the group-wise passes run one per group.
  double tail_code_density() const;
  double tail_quad_density() const;
};

// center (W0, folded), tail (W1): (4·C_out, 4·C_in, K, K) int8 row-major; tail null for uniform
// int8 weights. As pack_pwlq_weights, no condition on the codes themselves. Throws
// std::invalid_argument on non-positive sizes or a depth beyond kQgemmMaxDepth.
PackedFoldQWeights pack_fold_qweights(const std::int8_t* center, const std::int8_t* tail,
                                      std::int64_t in_channels, std::int64_t out_channels,
                                      std::int64_t kernel);

// Where the integer kernel writes. Exactly one kind:
//   accumulators: a_c, a_t (batch, C_out, 2·Hf, 2·Wf) int32 (unfolded like y) and
//                 r (batch, Hf, Wf) int32 (one window sum per folded position);
//   float:        y (batch, C_out, 2·Hf, 2·Wf) float32 through the epilogue;
//   requantized:  q (batch, C_out, 2·Hf, 2·Wf) uint8 through the epilogue and `requant`.
struct FoldQOutput {
  std::int32_t *a_c = nullptr, *a_t = nullptr, *r = nullptr;
  float* y = nullptr;
  std::uint8_t* q = nullptr;
  const Requantization* requant = nullptr;
};

// x: (batch, C_in, H, W) uint8 C-contiguous, zero point epilogue.zx (also the padding value).
// epilogue: per-channel arrays have 4·C_out entries (indexed by the folded channel n); it is
// read only for the float and requantized outputs (s1 then required).
void fold_qconv2d(const std::uint8_t* x, const FoldConvGeometry& geometry,
                  const PackedFoldQWeights& w, const PwlqEpilogue& epilogue,
                  const FoldQOutput& out, const FoldConvOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Internal interface between the driver (fold_conv.cpp) and the per-ISA files
// (fold_conv_avx2.cpp, fold_conv_avx512.cpp, fold_conv_avx512vnni.cpp, fold_conv_neon_dot.cpp).
// Plain structs and function pointers only: the ISA files are compiled with their own -m flags
// and must not emit inline or template code that the linker could pick for the rest of the
// program.
namespace fold_conv_detail {

// One FP32 task: output rows 2i and 2i + 1 of the channels of one weight block, all columns.
struct F32Task {
  const float* x;       // image: (C_in, H, W)
  const float* w;       // the block's packed weights
  const float* bias;    // the block's [6][2][2] biases
  float* y;             // image output (C_out, 2·Hf, 2·Wf)
  std::int64_t in_channels, height, width;
  std::int64_t kernel, dilation, padding;
  std::int64_t out_height, out_width;  // 2·Hf, 2·Wf
  std::int64_t co0, co_count;          // output channels [co0, co0 + co_count), co_count ≤ 6
  std::int64_t i;                      // folded output row
  bool relu;
};

// The epilogue constants per folded channel (4·C_out each), prepared once per call.
struct QEpilogue {
  const std::int32_t *zero_c, *zero_t;  // zx·ΣW0, zx·ΣW1
  const float *alpha_c, *alpha_t, *gamma, *beta;
  std::int32_t row_zero;  // zx·depth
  float out_scale, out_zero, out_low;
};

// Folded output pixels are handled in vectors of 16, in row-major order over the image (a vector
// may span rows); an integer task takes up to kFoldQVectors of them.
constexpr int kFoldQVectors = 4;

// One integer task: vectors [v0, v0 + vectors) of one image (folded output pixels
// m = 16·v0 .. 16·(v0 + vectors) − 1; those ≥ Hf·Wf are not outputs), weight blocks
// [block0, block1).
struct QTask {
  // The image's folded input in zero-point padded planes (q_build_planes), 4-byte groups.
  const std::uint8_t* planes;
  std::uint8_t* buffer;  // scratch, q_buffer_bytes(...) bytes, 64-byte aligned
  // On a path with FoldConvIsa::q_nibbles and some |code| > 64, a second scratch of the same
  // size (the AVX2 path then splits each activation into nibbles, x = 16·high + low: buffer
  // holds the low, buffer_high the high ones); null otherwise.
  std::uint8_t* buffer_high;
  // On a path with FoldConvIsa::q_planar and a tail, a third scratch of the buffer's size for
  // the buffer's bytes element by element: row e = 4·g + q (64 bytes at planar + 64·e) holds
  // byte q of buffer row g for the task's 64 pixels, pixel 16·v + 4·L + i at byte
  // 16·L + 4·v + i (so two interleaving steps give vector v back as 16 pixels × 4 elements);
  // null otherwise.
  std::uint8_t* planar;
  // The packed weights (PackedFoldQWeights) as plain pointers.
  const std::int8_t* dense;
  const std::int32_t* row_sums;
  const std::int32_t* tail_row_sums;
  const std::int64_t* tail_start;
  const FoldTailGroup* tail_groups;
  const std::int64_t* quad_start;
  const PwlqTailQuad* tail_quads;
  bool has_tail;
  // int16_run_groups(max|code|, buffer_high != null) (prism/qgemm.hpp): the groups the AVX2
  // path sums in int16 before widening.
  std::int64_t int16_groups;
  std::int64_t out_channels;
  std::int64_t in_channels, height;  // C_in, H of x
  std::int64_t kernel, dilation, padding;
  std::int64_t folded_out_height, folded_out_width;  // Hf, Wf
  std::int64_t plane_height, plane_width;            // H/2 + 2p, W/2 + 2p
  std::int64_t out_height, out_width;                // 2·Hf, 2·Wf
  std::int64_t v0, vectors;
  std::int64_t block0, block1;
  std::uint8_t zx;
  bool write_r;         // write R of these pixels (the task with block0 = 0)
  const QEpilogue* epilogue;  // null for the accumulator output
  // Image bases of the outputs (as FoldQOutput, offset to this image).
  std::int32_t *a_c, *a_t, *r;
  float* y;
  std::uint8_t* q;
};

// The padded planes of one image: plane ci holds, at (row, column), the 2×2 fold block of folded
// input (row − p, column − p) as 4 bytes (top-left, top-right, bottom-left, bottom-right), zx
// outside the image. q_planes_bytes(...) bytes (with one vector of read slack). Builds the planes
// of input channels [c0, c1) (the slack with the last).
std::int64_t q_planes_bytes(const FoldConvGeometry& geometry);
void q_build_planes(const std::uint8_t* image, const FoldConvGeometry& geometry, std::uint8_t zx,
                    std::uint8_t* planes, std::int64_t c0, std::int64_t c1);

// The 4-byte-group buffer of one integer task: one kFoldQRowBytes row per tap (kh, kw) and input
// channel, row (kh·K + kw)·C_in + ci holding the task's vectors side by side: vector v's lane l
// (bytes 64·v + 4·l) is the group of plane ci at (i + kh·d, j + kw·d), (i, j) the folded output
// pixel 16·(v0 + v) + l. A tail group's vectors are thus 4 adjacent cache lines, and no vector
// load splits a line. q_vector_bytes(...) is the buffer's size per vector.
constexpr std::int64_t kFoldQRowBytes = 64 * kFoldQVectors;
std::int64_t q_vector_bytes(std::int64_t in_channels, std::int64_t kernel);
std::int64_t q_buffer_bytes(std::int64_t in_channels, std::int64_t kernel);
// Fills the rows of task.buffer for kernel rows [kh0, kh1) (the portable packer; lanes past the
// last pixel hold zx).
void q_pack_vectors(const QTask& task, std::int64_t kh0, std::int64_t kh1);
// The kernel rows [kh0, kh1) that read the image for at least one pixel of vectors
// [v0, v0 + vectors); the others lie wholly in the zero-point padding (an interval: the input row
// grows with kh). q_live_rows: those of a task.
void live_rows(std::int64_t v0, std::int64_t vectors, std::int64_t folded_out_height,
               std::int64_t folded_out_width, std::int64_t height, std::int64_t kernel,
               std::int64_t dilation, std::int64_t padding, std::int64_t& kh0,
               std::int64_t& kh1);
void q_live_rows(const QTask& task, std::int64_t& kh0, std::int64_t& kh1);

// The SIMD tasks' shared helpers (row segments, kernel-row code sums) are in
// kernels/src/fold_q_common.hpp.

// Winograd F(m×m, 3×3) (m = WinoTask::tile: 2 or 4) on dilated tiles, a group of images at a
// time, in three phases. A tile is the m×m folded output positions {i + a·d} × {j + b·d}
// (a, b < m); its input is the α×α folded positions {i − p + a·d} × {j − p + b·d} (a, b < α =
// m + 2). An image's tiles are numbered t and handled 16 at a time in image_vectors tile
// vectors (lanes past its last tile have tile_i = −1); the group's images follow each other, so
// tile vector tv is vector tv % image_vectors of image tv / image_vectors (one GEMM over the
// group's vectors reads the transformed weights once). ξ = a·α + b < α² is a position in the
// transformed tile.
//   input:  V[ξ][tv][cf][16] = (Bᵀ·D·B)[ξ] of folded input channel cf, gathered from x;
//   gemm:   M[ξ][tv][n][16]  = Σ_cf U[ξ][n][cf]·V[ξ][tv][cf];
//   output: y = Aᵀ·M·A + bias, scattered to the unfolded output (ReLU optional).
struct WinoTask {
  float* y;             // the group's first image output (C_out, 2·Hf, 2·Wf)
  const float* u;       // PackedFoldWeights::winograd (m = 2) or winograd4 (m = 4)
  const float* bias;    // PackedFoldWeights::folded_bias
  float* v;             // scratch: α² · tile_vectors · 4·C_in · 16 floats
  float* m;             // scratch: α² · tile_vectors · 4·C_out · 16 floats
  const std::int32_t* tile_i;  // [image_vectors · 16], the same for every image
  const std::int32_t* tile_j;
  // Each image as zero-padded planes of 2×2 blocks, image_in_stride floats apart, built by the
  // driver (fold_conv.cpp) before wino_input reads them:
  // pixel_blocks[image][ci][R][C][q] = x[image][ci][2(R − p) + bh][2(C − p) + bw] with
  // q = bh·2 + bw, zero outside the image. R < block_rows and C < block_cols cover every point
  // R = i + a·d, C = j + b·d (a, b < α) of every tile, so the input transform reads 16 bytes
  // per tile and point (all four fold phases) with plain loads, no gathers and no masks.
  const float* pixel_blocks;
  std::int64_t block_rows, block_cols;
  int tile = 2;  // m: 2 (F(2×2, 3×3)) or 4 (F(4×4, 3×3))
  std::int64_t tile_vectors, blocks;  // tile vectors of the group; weight blocks
  std::int64_t image_vectors;          // tile vectors per image
  std::int64_t image_in_stride;        // floats between images in pixel_blocks
  std::int64_t image_out_stride;       // floats between images in y
  std::int64_t in_channels, out_channels;
  std::int64_t dilation, folded_out_height, folded_out_width;
  bool relu;
};

struct FoldConvIsa {
  FoldConvPath path;
  void (*f32_task)(const F32Task&);  // null: no FP32 kernel on this path
  void (*q_task)(const QTask&);      // null: no integer kernel on this path
  // Winograd phases (null: no Winograd on this path): input for tile vector tv and input
  // channels [c0, c1); gemm for ξ and weight block b; output for tile vector tv and folded
  // output channels [n0, n1).
  void (*wino_input)(const WinoTask&, std::int64_t tv, std::int64_t c0, std::int64_t c1);
  void (*wino_gemm)(const WinoTask&, std::int64_t xi, std::int64_t b);
  void (*wino_output)(const WinoTask&, std::int64_t tv, std::int64_t n0, std::int64_t n1);
  // The integer task splits activations into nibbles when some |code| > 64 and then needs
  // QTask::buffer_high (AVX2).
  bool q_nibbles = false;
  // Winograd paths: the output tile m their functions run (2 or 4; WinoTask::tile).
  int wino_tile = 0;
  // The integer task's tail pass reads the tail quads from QTask::planar (AVX-512 VNNI).
  bool q_planar = false;
};

// Float offsets into one channel of the group's first image in WinoTask::pixel_blocks for the
// input transform of tile vector tv: lane[l] of tile l's first point (that of the vector's image;
// the image's first block for unused lanes, whose results are never stored) and point[a·α + b]
// of point (a, b) relative to it (α² entries).
void wino_block_offsets(const WinoTask& t, std::int64_t tv, std::int64_t lane[16],
                        std::int64_t point[36]);

// For the output transforms without a scatter instruction (AVX2, NEON): idx[a·m + b][l] is the
// offset in WinoTask::y, from folded output channel n's first element of the group's first image,
// of result (a, b) of tile l of tile vector tv, or −1 where that is not an output (m =
// WinoTask::tile);
// wino_store_results writes channel n's results y[a·m + b][l] by them.
void wino_output_offsets(const WinoTask& t, std::int64_t tv, std::int64_t idx[16][16]);
void wino_store_results(const WinoTask& t, std::int64_t n, const std::int64_t idx[16][16],
                        const float y[16][16]);

// How the automatic FP32 path runs a 3×3 geometry: 0 directly, 2 as Winograd F(2×2, 3×3), 4 as
// F(4×4, 3×3), by the cost model in fold_conv.cpp for AVX-512 (wide = true) or AVX2/NEON, against
// a direct kernel that computes output rows in vectors of direct_lanes columns (16 on AVX-512, 8
// on AVX2, 1 for the portable kernel NEON falls back to): a row of 28 columns costs it 32.
int winograd_tile(const FoldConvGeometry& geometry, bool wide, int direct_lanes);
// The model's cost per output of F(m×m, 3×3) (m = 2, 4; 0 under 16 tiles) and of the direct
// kernel, in units of the direct kernel's multiply-adds over the full window.
double winograd_cost(const FoldConvGeometry& geometry, int tile);
double direct_cost(const FoldConvGeometry& geometry);
// The direct kernel's columns computed per output column: ⌈2·Wf / lanes⌉·lanes / (2·Wf).
double direct_lane_factor(const FoldConvGeometry& geometry, int lanes);

// nullptr where the path is not built into this binary.
const FoldConvIsa* fold_conv_scalar();
const FoldConvIsa* fold_conv_avx2();
const FoldConvIsa* fold_conv_avx2_winograd();
const FoldConvIsa* fold_conv_avx2_winograd4();
const FoldConvIsa* fold_conv_avx512();
const FoldConvIsa* fold_conv_avx512_winograd();
const FoldConvIsa* fold_conv_avx512_winograd4();
const FoldConvIsa* fold_conv_avx512vnni();
const FoldConvIsa* fold_conv_neon_dot();
const FoldConvIsa* fold_conv_neon_winograd();
const FoldConvIsa* fold_conv_neon_winograd4();

}  // namespace fold_conv_detail
}  // namespace prism
