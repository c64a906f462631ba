// PWLQ W·A8 GEMM with integer accumulators (PWLQ paper, Sect. 4, Eqs. 11-13), folded form.
//
// Activations X: uint8 (M, K) row-major, per-layer scale sx and zero point zx:
// x̂ = sx·(Xq − zx). Weights of output channel n: two int8 (N, K) code tensors
//   W0  region-0 (center) codes, folded: the center codes, and Q·sign at every tail weight
//   W1  tail codes sign·q, 0 outside the tail
// with ŵ = s1[n]·W0 + s2[n]·W1. That is the paper's tail weight sign·(s2·q + p) because the
// quantizer defines p = Q·s1 exactly (Q = 2^(b−1) − 1; sdk.formats.layer_table), so the tail-offset
// term of Eq. 12 needs no accumulator of its own. The kernel itself puts no condition on W0 and
// W1 (any int8 values, overlapping or not). Uniform int8 weights are the case with W0 only.
//
// Integer part, per (m, n), exact in int32 (K ≤ kQgemmMaxDepth keeps every sum in range):
//   A_c = Σ_k Xq·W0,  A_t = Σ_k Xq·W1,  R[m] = Σ_k Xq[m, k]
// Float epilogue (float32, in exactly this order; no fused multiply-add):
//   ac = A_c − zx·ΣW0[n], at = A_t − zx·ΣW1[n], r = R[m] − zx·K                    (int32)
//   y  = ((f(ac)·αc[n] + f(at)·αt[n]) + f(r)·γ[n]) + β[n]
// where f is int32 → float32 (round to nearest even) and the per-channel constants are rounded
// once to float32 from double products: αc = sx·s1·a, αt = sx·s2·a, γ = c·sx, β = bias. This is
//   y = sx·(s1·ac + s2·at)·a + c·sx·r + bias
// with (a, c) the per-channel bias correction (a = 1, c = 0 when off). Without a tail the at term
// is skipped (it is an exact zero). prism/fold_conv.hpp uses the same epilogue.
// Requantized output (so consecutive layers stay integer):
//   q = clamp(round_half_even(y / so) + zo, relu ? zo : 0, 255)     evaluated in float32
//
// How the integers are computed (~90 % of PWLQ weights are center weights):
//   - one dense u8×s8 GEMM with W0 gives A_c;
//   - a sparse tail pass gives A_t: per output channel, the list of 4-deep k-blocks holding at
//     least one non-zero W1 code, each with its 4 codes (one dot product per block); on AVX-512
//     VNNI, the channel's non-zero codes in quads of any 4 k-values, against the row block's
//     activations transposed once to one row per k-value (one dot product per 4 codes: ~10 %
//     of the codes against ~34 % of the blocks with random tails).
// The naive form (TailForm::Dense: two dense GEMMs with W0 and W1) is kept for comparison.
//
// Layouts. Weights are packed once (pack_pwlq_weights) into panels of 8 output channels:
// panel[kb][j][i] = W[8·p + j, 4·kb + i], K padded with zero codes to a multiple of 4, N padded
// to a multiple of 8. Activations are packed per call, per block of up to 48 rows, into
// xp[row_group][kb][r][i] = Xq[16·row_group + r, 4·kb + i]: one 64-byte vector holds 4 k-values of
// 16 rows, so a 4-byte weight group is broadcast against 16 rows (vpdpbusd, sdot by lane,
// vpmaddubsw). The same packed layout serves every SIMD path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace prism {

// Output channels per weight panel, rows per row group, k-values per k-block.
constexpr int kQgemmPanel = 8;
constexpr int kQgemmRowGroup = 16;
constexpr int kQgemmKBlock = 4;
// Largest K: 255·128·K must fit an int32 accumulator.
constexpr std::int64_t kQgemmMaxDepth = 65536;

// Instruction-set path of the integer kernels. Auto picks the best available one.
enum class QgemmPath { Auto, Scalar, Avx2, Avx512Vnni, NeonDot };

// "auto", "scalar", "avx2", "avx512vnni", "neon_dot".
const char* qgemm_path_name(QgemmPath path);
// Inverse of qgemm_path_name; throws std::invalid_argument naming the unknown value.
QgemmPath parse_qgemm_path(const std::string& name);
// Empty when `path` can run on this CPU and build, otherwise why not (e.g. "avx512vnni: this
// CPU has no AVX-512 VNNI"). Auto is always available.
std::string qgemm_path_unavailable_reason(QgemmPath path);
// The path Auto resolves to: avx512vnni, then avx2, on x86-64; neon_dot on aarch64 with the
// dot-product extension; scalar otherwise or when PRISM_DISABLE_SIMD=1.
QgemmPath qgemm_best_path();

// How the tail region is computed.
enum class TailForm {
  None,    // uniform weights: Wc only
  Sparse,  // dense GEMM with W0 + sparse tail pass over W1 (the fast form)
  Dense,   // two dense GEMMs with W0 and W1 (the naive form, for comparison)
};

// One 4-deep k-block of a channel's tail: the 4 tail codes as packed int8 lanes.
struct QgemmTailBlock {
  std::int32_t k_block;
  std::int32_t codes;  // 4 × int8 W1[n, 4·k_block + i], little endian
};

// Four tail codes of one channel and the rows of transposed activations they multiply (the
// AVX-512 VNNI quad tail passes, kernels/src/vnni_quads.inc): in the GEMM, k-values row[0..3] in
// k order (the last quad of a channel padded with zero codes at its first k); in the folded
// convolution (prism/fold_conv.hpp), elements 4·group + q of one kernel row.
struct PwlqTailQuad {
  std::int32_t row[4];
  std::int32_t codes;  // 4 × int8: byte j is the code at row[j]
};

// Weights packed once at load time. Channels of group g are [g·N_g, (g+1)·N_g); every group
// starts a new panel (panels_per_group = ceil(N_g / 8)).
struct PackedPwlqWeights {
  std::int64_t channels = 0;          // N (all groups)
  std::int64_t depth = 0;             // K per output channel
  std::int64_t groups = 1;
  std::int64_t k_blocks = 0;          // ceil(K / 4)
  std::int64_t panels_per_group = 0;
  TailForm tail_form = TailForm::None;
  int max_abs_code = 0;               // largest |code| in any dense panel set
  // Panels of the dense GEMM with W0.
  std::vector<std::int8_t> dense;
  std::vector<std::int8_t> dense_tail;       // TailForm::Dense only: W1 panels
  std::vector<std::int64_t> tail_start;      // TailForm::Sparse: N + 1 offsets
  // TailForm::Sparse: each channel's blocks holding a non-zero code, in k order.
  std::vector<QgemmTailBlock> tail_blocks;
  // TailForm::Sparse: each channel's non-zero tail codes in quads (N + 1 offsets into tail_quads).
  std::vector<std::int64_t> quad_start;
  std::vector<PwlqTailQuad> tail_quads;
  std::vector<std::int32_t> sum_center, sum_tail;  // ΣW0[n], ΣW1[n]
  // Per panel and lane (panels × 8, padded channels 0): Σ codes of each dense panel set.
  std::vector<std::int32_t> dense_sums, dense_tail_sums;

  std::int64_t channels_per_group() const { return channels / groups; }
  std::int64_t panel_bytes() const { return k_blocks * kQgemmKBlock * kQgemmPanel; }
  // Fraction of (channel, k-block) pairs holding a non-zero tail code: what the block-wise tail
  // passes visit (AVX2, NEON, scalar).
  double tail_block_density() const;
  // Quads (padding counted) per (channel, k-block) pair: what the AVX-512 VNNI tail pass
  // visits, one vpdpbusd per quad and 16 rows.
  double tail_quad_density() const;
};

// Packs (N, K) int8 code tensors W0 (`center`, folded) and W1 (`tail`), row-major. `tail` null:
// uniform weights, TailForm::None. Throws std::invalid_argument when N or K is not positive,
// K > kQgemmMaxDepth or N is not a multiple of `groups`. `form` is ignored without a tail.
PackedPwlqWeights pack_pwlq_weights(const std::int8_t* center, const std::int8_t* tail,
                                    std::int64_t channels, std::int64_t depth,
                                    TailForm form = TailForm::Sparse, std::int64_t groups = 1);

// The per-layer and per-channel constants of the float epilogue. Arrays have N entries; a null
// s2, c or bias means zeros, a null a means ones. There is no tail offset: it is folded into W0.
struct PwlqEpilogue {
  float sx = 1.0f;
  std::int32_t zx = 0;  // 0..255
  const float* s1 = nullptr;
  const float* s2 = nullptr;
  const float* a = nullptr;
  const float* c = nullptr;
  const float* bias = nullptr;
};

// Per-channel float32 constants of the epilogue (products formed in double, rounded once), and
// the zero-point corrections zx·ΣW. Shared by qgemm/qconv and fold_conv so they give the same bits.
struct EpilogueChannelConstants {
  std::vector<std::int32_t> zero_c, zero_t;
  std::vector<float> alpha_c, alpha_t, gamma, beta;

  // n channels; sum_* are ΣW0, ΣW1 per channel. Vectors keep their capacity between calls.
  void fill(std::int64_t n, const std::int32_t* sum_center, const std::int32_t* sum_tail,
            const PwlqEpilogue& e);
};

struct Requantization {
  float scale = 1.0f;           // so > 0
  std::int32_t zero_point = 0;  // zo, 0..255
  bool relu = false;            // clamp below at zo instead of 0
};

struct QgemmOptions {
  QgemmPath path = QgemmPath::Auto;
  // 0: automatic (up to hardware_thread_count(), fewer for small problems). n > 0: exactly
  // min(n, tasks) threads. Results never depend on the thread count.
  int num_threads = 0;
};

// x: (M, K) uint8 row-major. Outputs (M, N) int32 row-major a_c, a_t and (M,) int32 r; all
// three are written whole. Throws std::invalid_argument if the path is unavailable.
void qgemm_accumulators(const std::uint8_t* x, std::int64_t rows, const PackedPwlqWeights& w,
                        std::int32_t* a_c, std::int32_t* a_t, std::int32_t* r,
                        const QgemmOptions& options = {});

// x: (M, K) uint8 row-major -> y: (M, N) float32 row-major.
void qgemm(const std::uint8_t* x, std::int64_t rows, const PackedPwlqWeights& w,
           const PwlqEpilogue& epilogue, float* y, const QgemmOptions& options = {});

// x: (M, K) uint8 row-major -> q: (M, N) uint8 row-major, requantized.
void qgemm_requantized(const std::uint8_t* x, std::int64_t rows, const PackedPwlqWeights& w,
                       const PwlqEpilogue& epilogue, const Requantization& requant,
                       std::uint8_t* q, const QgemmOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Internal interface between the driver (qgemm.cpp, qconv.cpp) and the per-ISA kernels
// (qgemm_scalar.cpp, qgemm_avx2.cpp, qgemm_avx512vnni.cpp, qgemm_neon_dot.cpp). Plain structs
// only: the ISA files are compiled with their own -m flags and must not emit inline or template
// code that the linker could pick for the rest of the program.
namespace qgemm_detail {

// Packed activations of one row block: row_groups × (k_blocks × 64 bytes).
struct PackedRows {
  const std::uint8_t* data;
  std::int64_t row_groups;
  std::int64_t k_blocks;  // stride between row groups: k_blocks * 64 bytes
};

// out[j·ld + r] = Σ_k x[r, k]·panel[k, j] for the 8 channels j of one panel and all rows r.
struct DenseArgs {
  PackedRows x;
  const std::int8_t* panel;
  bool wide_codes;               // some |code| > 64 (AVX2 then avoids vpmaddubsw saturation)
  std::int64_t int16_groups;  // int16_run_groups(max|code|, wide_codes): the AVX2 run length
  const std::int32_t* code_sums;  // [8] Σ codes per channel (paths that bias x by −128)
  std::int32_t* out;
  std::int64_t ld;
};

// Sparse tail of `channels` (≤ 8) channels: out_t[j·ld + r] = Σ x·W1.
struct TailArgs {
  PackedRows x;
  std::int64_t channels;
  const std::int64_t* start;  // [channels + 1] offsets into blocks
  const QgemmTailBlock* blocks;
  bool wide_codes;
  std::int64_t int16_groups;      // as DenseArgs
  const std::int32_t* tail_sums;  // [channels] ΣW1
  std::int32_t* out_t;
  std::int64_t ld;
  // IsaKernels::planar's rows of x (null on paths without it), and the channels' quads.
  const std::uint8_t* planar;
  const std::int64_t* quad_start;  // [channels + 1] offsets into quads
  const PwlqTailQuad* quads;
};

// The float epilogue of `channels` channels × `rows` rows (rows a multiple of 16). Inputs are
// tiles [j·ld + r]; acc_t is null without a tail.
struct EpilogueArgs {
  const std::int32_t* acc;    // A_c
  const std::int32_t* acc_t;  // A_t
  const std::int32_t* row_sums;  // [rows] R
  std::int32_t row_zero;         // zx·K
  std::int64_t channels, rows, ld;
  // Per channel, offset to the tile's first channel.
  const std::int32_t* zero_c;  // zx·ΣW0
  const std::int32_t* zero_t;  // zx·ΣW1
  const float* alpha_c;
  const float* alpha_t;
  const float* gamma;
  const float* beta;
  // Output tile [j·ld + r]: y when q is null, else requantized q.
  float* y;
  std::uint8_t* q;
  float out_scale, out_zero, out_low;  // so, zo, lower clamp (0 or zo)
};

// Packs rows [row0, row0 + 16·row_groups) of a row-major (rows, depth) uint8 matrix into
// `out` (row_groups × k_blocks × 64 bytes, x itself, not biased) and their sums into row_sums;
// rows past the matrix and bytes past K are zeros.
struct MatrixPackArgs {
  const std::uint8_t* x;
  std::int64_t rows, depth, row0, row_groups, k_blocks;
  std::uint8_t* out;
  std::int32_t* row_sums;
};

// dst[r·row_stride + j] = tile[j·ld + r] for r < rows, j < 8: a float tile of 8 channels
// stored into row-major (M, N) output.
struct StoreRowsArgs {
  const float* tile;
  std::int64_t ld, rows;
  float* dst;
  std::int64_t row_stride;
};

// Packs rows [row0, row0 + 16·row_groups) of an implicit im2col matrix (see prism/qconv.hpp):
// element (m, k) is planes[tap_offset[k] + m] for k < depth, 0 past K. `out` and `row_sums` as
// MatrixPackArgs, except that a biased path (IsaKernels::biased_x) writes x ^ 0x80 (x − 128 as
// int8; bytes past K then hold 0x80) while row_sums stay sums of x. The caller guarantees that
// every read is in bounds.
struct TapPackArgs {
  const std::uint8_t* planes;
  const std::int64_t* tap_offset;  // [depth]
  std::int64_t depth, k_blocks, row0, row_groups;
  std::uint8_t* out;
  std::int32_t* row_sums;
};

// ONNX QuantizeLinear to uint8 of `count` contiguous float32 values, in float32:
//   q = saturate(round_half_even(x / scale) + zero_point)      (a true division)
// after x = min(max(x, clip_low), clip_high) when `clip`.
struct QuantizeArgs {
  const float* x;
  std::int64_t count;
  float scale, zero_point;
  bool clip;
  float clip_low, clip_high;
  std::uint8_t* q;
};

// The float epilogue of tile rows [t0, t0 + n) of all 8 channels of a panel (EpilogueArgs:
// acc, acc_t, row_sums, the per-channel constants; y and q unused), stored straight into
// row-major output: dst[r·row_stride + j] = y(channel j, tile row t0 + r). The same float32
// operations as `epilogue`, so the same bits as the epilogue followed by store_rows.
struct EpilogueStoreArgs {
  EpilogueArgs e;
  std::int64_t t0, n;
  float* dst;
  std::int64_t row_stride;
};

struct IsaKernels {
  QgemmPath path;
  bool biased_x;  // packed activations hold Xq − 128 as int8 (sdot paths)
  void (*dense)(const DenseArgs&);
  void (*tail)(const TailArgs&);
  void (*epilogue)(const EpilogueArgs&);
  void (*pack_matrix)(const MatrixPackArgs&);  // null: the portable packer (qgemm.cpp)
  void (*store_rows)(const StoreRowsArgs&);    // null: the portable loop (qgemm.cpp)
  void (*pack_taps)(const TapPackArgs&);       // null: the portable packer (qconv.cpp)
  void (*quantize)(const QuantizeArgs&);       // null: the portable loop (qgemm.cpp)
  // dense and tail take blocks of up to this many row groups (3, or 4 where they have a
  // 4-group tile: the driver then sizes row blocks 3 and 4 instead of 2 and 3).
  int max_row_groups = 3;
  // null: the epilogue into a float tile, then store_rows (or the portable loop)
  void (*epilogue_store)(const EpilogueStoreArgs&) = nullptr;
  // null: the tail reads the packed rows block by block. Otherwise it reads the quads from the
  // packed rows element by element, which this writes once per row block: 4·k_blocks rows of
  // 64 bytes, row k holding k-value k of row 16·v + 4·L + i at byte
  // 16·L + 4·v + i (v < 4 row groups, zeros past x's), so that two interleaving steps over 4
  // rows give row group v back as 16 rows × 4 k-values.
  void (*planar)(const PackedRows& x, std::uint8_t* out) = nullptr;
};

// QuantizeLinear (QuantizeArgs) on the path's vector unit, or portably where it has none.
void quantize_linear(const IsaKernels& isa, const QuantizeArgs& args);

// nullptr where the path is not built into this binary (another architecture).
const IsaKernels* scalar_kernels();
const IsaKernels* avx2_kernels();
const IsaKernels* avx512vnni_kernels();
const IsaKernels* neon_dot_kernels();

// Throughput of independent vpdpbusd zmm instructions on the calling thread over about
// `seconds` of its CPU time (instructions per CPU-second; 0 where the AVX-512 VNNI path is not
// built or the CPU lacks it). A benchmark's measured denominator for "fraction of peak": 64
// u8·s8 MACs each.
double vpdpbusd_per_second(double seconds);
// The same for vpmaddubsw ymm (0 where the AVX2 path cannot run): the probe of hosts without
// VNNI (32 u8·s8 products each, into int16 pairs).
double vpmaddubsw_per_second(double seconds);

// The AVX2 paths' int16 bound (avx2_int.inc): codes beyond ±kNarrowCodeLimit ("wide") could
// saturate a single vpmaddubsw pair, so those paths split the activations into nibbles. Groups
// (4-byte k-blocks) whose pair sums add up exactly in int16: 32767 / (2·x_max·max|code|), at
// least 1, x_max = 15 for nibbles and 255 otherwise (any count when every code is 0).
constexpr int kNarrowCodeLimit = 64;
std::int64_t int16_run_groups(int max_abs_code, bool nibbles);

// Appends one list of tail quads (PwlqTailQuad) to `out`: add() each non-zero code with its row
// in row order, then finish() once (the last quad padded with zero codes at its first row).
// Packing of the GEMM (a channel's k-values) and of the folded convolution (a channel's
// elements of one kernel row) both build their quads with it.
class TailQuadBuilder {
 public:
  explicit TailQuadBuilder(std::vector<PwlqTailQuad>& out) : out_(out) {}
  void add(std::int64_t row, std::int8_t code);
  void finish();

 private:
  std::vector<PwlqTailQuad>& out_;
  PwlqTailQuad quad_{};
  int filled_ = 0;
};

// Resolves the path (Auto -> best); throws std::invalid_argument if it cannot run here.
const IsaKernels& kernels_for(QgemmPath path);

// A source of activation rows: fills one packed row block. Rows beyond the source are zeros.
class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual std::int64_t rows() const = 0;
  // Packs rows [row0, row0 + 16·row_groups) into out (row_groups × k_blocks × 64 bytes) in the
  // form `isa` reads (x − 128 where isa.biased_x) and their sums into row_sums[16·row_groups].
  virtual void pack(std::int64_t row0, std::int64_t row_groups, std::uint8_t* out,
                    std::int32_t* row_sums, const IsaKernels& isa) const = 0;
  // Rows come in periods of row_period() rows whose first row_valid() are output rows; the
  // others (padding columns of an implicit im2col) are computed and dropped. 0: all are output
  // rows, row m is output row m.
  virtual std::int64_t row_period() const { return 0; }
  virtual std::int64_t row_valid() const { return 0; }
};

// Where and how results go.
struct OutputSpec {
  enum class Kind { Accumulators, Float, Requantized } kind = Kind::Float;
  // Element (row m, channel n) goes to base + m·row_stride + n·channel_stride.
  std::int64_t row_stride = 0, channel_stride = 0;
  float* y = nullptr;
  // Kind::Float only, applied as y is stored, in this order: y = y + residual[same element]
  // (when not null; an ONNX Add), then y = y > 0 ? y : 0 (when relu; NumPy's maximum(y, 0)).
  const float* residual = nullptr;
  bool relu = false;
  std::uint8_t* q = nullptr;
  std::int32_t *a_c = nullptr, *a_t = nullptr, *r = nullptr;
};

// One GEMM: rows from `source`, channels [channel0, channel0 + N_g) of group `group`.
struct GemmJob {
  const RowSource* source;
  std::int64_t group;
  OutputSpec out;  // bases already offset to the group's first channel
};

// Runs jobs (all with the same weights and epilogue) on the kernel thread pool.
void run_gemm_jobs(const std::vector<GemmJob>& jobs, const PackedPwlqWeights& w,
                   const PwlqEpilogue* epilogue, const Requantization* requant,
                   const QgemmOptions& options);

}  // namespace qgemm_detail
}  // namespace prism
