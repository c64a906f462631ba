// Folded convolution: geometry checks, weight packing, path selection, the threaded driver and
// the portable (scalar) kernels. The SIMD inner loops live in fold_conv_<isa>.cpp; semantics in
// prism/fold_conv.hpp.
#include "prism/fold_conv.hpp"
#include "aligned_buffer.hpp"
#include "scalar_epilogue.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/cpu_features.hpp"
#include "prism/thread_pool.hpp"

namespace prism {

// --------------------------------------------------------------------------------- geometry --

std::int64_t FoldConvGeometry::folded_out_height() const {
  return height / 2 + 2 * padding - dilation * (kernel - 1);
}

std::int64_t FoldConvGeometry::folded_out_width() const {
  return width / 2 + 2 * padding - dilation * (kernel - 1);
}

void check_fold_conv(const FoldConvGeometry& g) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("fold_conv2d: " + what); };
  if (g.batch < 0) fail("batch must be >= 0");
  const std::pair<const char*, std::int64_t> positive[] = {
      {"in_channels", g.in_channels}, {"height", g.height}, {"width", g.width},
      {"out_channels", g.out_channels}, {"kernel", g.kernel}, {"dilation", g.dilation}};
  for (const auto& f : positive) {
    if (f.second <= 0) fail(std::string(f.first) + " must be positive");
  }
  if (g.height % 2 || g.width % 2) {
    fail("the input height and width must be even (2x2 fold), got " + std::to_string(g.height) +
         "x" + std::to_string(g.width));
  }
  if (g.padding < 0) fail("padding must be >= 0");
  if (g.folded_out_height() <= 0 || g.folded_out_width() <= 0) {
    fail("the dilated kernel (" + std::to_string(g.dilation * (g.kernel - 1) + 1) +
         " folded pixels) is larger than the padded folded input");
  }
  if (g.depth() > kQgemmMaxDepth) fail("4*C_in*K*K exceeds " + std::to_string(kQgemmMaxDepth));
}

// ------------------------------------------------------------------------------------ paths --

const char* fold_conv_path_name(FoldConvPath path) {
  switch (path) {
    case FoldConvPath::Auto: return "auto";
    case FoldConvPath::Scalar: return "scalar";
    case FoldConvPath::Avx2: return "avx2";
    case FoldConvPath::Avx512: return "avx512";
    case FoldConvPath::Avx512Winograd: return "avx512_winograd";
    case FoldConvPath::Avx512Vnni: return "avx512vnni";
    case FoldConvPath::NeonDot: return "neon_dot";
    case FoldConvPath::Avx2Winograd: return "avx2_winograd";
    case FoldConvPath::Avx512Winograd4: return "avx512_winograd4";
    case FoldConvPath::Avx2Winograd4: return "avx2_winograd4";
    case FoldConvPath::NeonWinograd: return "neon_winograd";
    case FoldConvPath::NeonWinograd4: return "neon_winograd4";
  }
  return "?";
}

FoldConvPath parse_fold_conv_path(const std::string& name) {
  for (FoldConvPath p : {FoldConvPath::Auto, FoldConvPath::Scalar, FoldConvPath::Avx2,
                         FoldConvPath::Avx512, FoldConvPath::Avx512Winograd,
                         FoldConvPath::Avx512Vnni, FoldConvPath::NeonDot,
                         FoldConvPath::Avx2Winograd, FoldConvPath::Avx512Winograd4,
                         FoldConvPath::Avx2Winograd4, FoldConvPath::NeonWinograd,
                         FoldConvPath::NeonWinograd4}) {
    if (name == fold_conv_path_name(p)) return p;
  }
  throw std::invalid_argument("unknown fold_conv path '" + name +
                              "'; expected auto, scalar, avx2, avx2_winograd, avx2_winograd4, "
                              "avx512, avx512_winograd, avx512_winograd4, avx512vnni, neon_dot, "
                              "neon_winograd or neon_winograd4");
}

namespace {

using fold_conv_detail::FoldConvIsa;

const FoldConvIsa* built(FoldConvPath path) {
  switch (path) {
    case FoldConvPath::Scalar: return fold_conv_detail::fold_conv_scalar();
    case FoldConvPath::Avx2: return fold_conv_detail::fold_conv_avx2();
    case FoldConvPath::Avx512: return fold_conv_detail::fold_conv_avx512();
    case FoldConvPath::Avx512Winograd: return fold_conv_detail::fold_conv_avx512_winograd();
    case FoldConvPath::Avx512Vnni: return fold_conv_detail::fold_conv_avx512vnni();
    case FoldConvPath::NeonDot: return fold_conv_detail::fold_conv_neon_dot();
    case FoldConvPath::Avx2Winograd: return fold_conv_detail::fold_conv_avx2_winograd();
    case FoldConvPath::Avx512Winograd4: return fold_conv_detail::fold_conv_avx512_winograd4();
    case FoldConvPath::Avx2Winograd4: return fold_conv_detail::fold_conv_avx2_winograd4();
    case FoldConvPath::NeonWinograd: return fold_conv_detail::fold_conv_neon_winograd();
    case FoldConvPath::NeonWinograd4: return fold_conv_detail::fold_conv_neon_winograd4();
    case FoldConvPath::Auto: break;
  }
  return nullptr;
}

bool cpu_has(FoldConvPath path) {
  const CpuFeatures& f = cpu_features();
  switch (path) {
    case FoldConvPath::Scalar: return true;
    case FoldConvPath::Avx2: return f.avx2;
    case FoldConvPath::Avx512: return f.avx512f;
    case FoldConvPath::Avx512Winograd: return f.avx512f;
    case FoldConvPath::Avx512Vnni: return f.avx512_vnni;
    case FoldConvPath::NeonDot: return f.neon_dotprod;
    case FoldConvPath::Avx2Winograd: return f.avx2;
    case FoldConvPath::Avx512Winograd4: return f.avx512f;
    case FoldConvPath::Avx2Winograd4: return f.avx2;
    case FoldConvPath::NeonWinograd: return f.neon;
    case FoldConvPath::NeonWinograd4: return f.neon;
    case FoldConvPath::Auto: return true;
  }
  return false;
}

}  // namespace

std::string fold_conv_path_unavailable_reason(FoldConvPath path, bool integer) {
  if (path == FoldConvPath::Auto) return "";
  const std::string name = fold_conv_path_name(path);
  const FoldConvIsa* isa = built(path);
  if (!isa) {
    return name + ": not built into this binary (it was compiled for " + cpu_features().arch +
           ")";
  }
  if (integer ? isa->q_task == nullptr : isa->f32_task == nullptr) {
    return name + ": no " + (integer ? "integer" : "FP32") + " fold_conv kernel on this path";
  }
  if (!cpu_has(path)) {
    return name +
           ": this CPU lacks the instructions (or PRISM_DISABLE_SIMD=1 / PRISM_MAX_ISA caps it)";
  }
  return "";
}

FoldConvPath fold_conv_best_path(bool integer) {
  const FoldConvPath order[] = {FoldConvPath::Avx512Vnni, FoldConvPath::Avx512Winograd,
                                FoldConvPath::Avx512, FoldConvPath::Avx2Winograd,
                                FoldConvPath::Avx2, FoldConvPath::NeonDot,
                                FoldConvPath::NeonWinograd};
  for (FoldConvPath p : order) {
    if (fold_conv_path_unavailable_reason(p, integer).empty()) return p;
  }
  return FoldConvPath::Scalar;
}

namespace {

const FoldConvIsa& resolve(FoldConvPath path, bool integer) {
  if (path == FoldConvPath::Auto) path = fold_conv_best_path(integer);
  const std::string why = fold_conv_path_unavailable_reason(path, integer);
  if (!why.empty()) throw std::invalid_argument("fold_conv2d: path " + why);
  return *built(path);
}

// Threads for `macs` multiply-adds: at most `requested` (0: the hardware count), and one per
// ~2M multiply-adds so that tiny problems stay on the calling thread.
int thread_count(int requested, double macs, std::int64_t tasks) {
  if (requested < 0) {
    throw std::invalid_argument("num_threads must be >= 0, got " + std::to_string(requested));
  }
  int threads = requested;
  if (threads == 0) {
    threads = std::min<int>(hardware_thread_count(),
                            std::max<int>(1, static_cast<int>(macs / 2.0e6)));
  } else {
    kernel_thread_pool().reserve(threads);
  }
  return static_cast<int>(std::min<std::int64_t>(threads, std::max<std::int64_t>(tasks, 1)));
}

void run_tasks(std::int64_t tasks, int threads, const std::function<void(std::int64_t)>& fn) {
  if (threads <= 1) {
    for (std::int64_t t = 0; t < tasks; ++t) fn(t);
  } else {
    kernel_thread_pool().parallel_for(tasks, threads, fn);
  }
}

std::int64_t blocks_for(std::int64_t out_channels) {
  return (out_channels + kFoldBlock - 1) / kFoldBlock;
}

void check_packing_sizes(std::int64_t in_channels, std::int64_t out_channels,
                         std::int64_t kernel) {
  if (in_channels <= 0 || out_channels <= 0 || kernel <= 0) {
    throw std::invalid_argument("fold_conv weights: C_in, C_out and K must be positive");
  }
  if (4 * in_channels * kernel * kernel > kQgemmMaxDepth) {
    throw std::invalid_argument("fold_conv weights: 4*C_in*K*K exceeds " +
                                std::to_string(kQgemmMaxDepth));
  }
}

void check_weights_match(const FoldConvGeometry& g, std::int64_t in_channels,
                         std::int64_t out_channels, std::int64_t kernel) {
  if (in_channels != g.in_channels || out_channels != g.out_channels || kernel != g.kernel) {
    throw std::invalid_argument(
        "fold_conv2d: weights packed for C_in=" + std::to_string(in_channels) + " C_out=" +
        std::to_string(out_channels) + " K=" + std::to_string(kernel) +
        " but the input needs C_in=" + std::to_string(g.in_channels) + " C_out=" +
        std::to_string(g.out_channels) + " K=" + std::to_string(g.kernel));
  }
}

}  // namespace

// ------------------------------------------------------------------------------------- FP32 --

namespace {

// U = G·g·Gᵀ for every (folded output, folded input) channel pair, in double, rounded once, as
// out[ξ][b][cf][12] (kWinoBlock folded output channels per block b) with ξ = α·a + b.
// F(2×2, 3×3): G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]. F(4×4, 3×3), points 0, 1, −1, ½, −2 (Barabasz
// et al., "Error analysis and improving the accuracy of Winograd convolution"; Lavin's 0, ±1, ±2
// gave 3–4× the error at 256 folded input channels): G = [1 0 0; ⅓ ⅓ ⅓; −⅓ ⅓ −⅓;
// −16/15 −8/15 −4/15; 1/15 −2/15 4/15; 0 0 1].
constexpr int kWinoBlock = 12;

void pack_winograd(const float* w, std::int64_t fin, std::int64_t nf, std::int64_t blocks,
                   int alpha, std::vector<float>& out) {
  out.assign(static_cast<std::size_t>(alpha * alpha * blocks * fin * kWinoBlock), 0.0f);
  auto transform = [alpha](const double v[3], double t[6]) {
    if (alpha == 4) {
      t[0] = v[0];
      t[1] = (v[0] + v[1] + v[2]) / 2;
      t[2] = (v[0] - v[1] + v[2]) / 2;
      t[3] = v[2];
      return;
    }
    t[0] = v[0];
    t[1] = (v[0] + v[1] + v[2]) / 3;
    t[2] = -(v[0] - v[1] + v[2]) / 3;
    t[3] = -(16 * v[0] + 8 * v[1] + 4 * v[2]) / 15;
    t[4] = (v[0] - 2 * v[1] + 4 * v[2]) / 15;
    t[5] = v[2];
  };
  for (std::int64_t n = 0; n < nf; ++n) {
    for (std::int64_t cf = 0; cf < fin; ++cf) {
      const float* g = w + (n * fin + cf) * 9;
      double rows[6][3];  // G·g
      for (int kw = 0; kw < 3; ++kw) {
        const double column[3] = {g[kw], g[3 + kw], g[6 + kw]};
        double t[6];
        transform(column, t);
        for (int a = 0; a < alpha; ++a) rows[a][kw] = t[a];
      }
      for (int a = 0; a < alpha; ++a) {
        double u[6];
        transform(rows[a], u);  // (G·g)·Gᵀ
        for (int b = 0; b < alpha; ++b) {
          const std::int64_t xi = a * alpha + b;
          out[((xi * blocks + n / kWinoBlock) * fin + cf) * kWinoBlock + n % kWinoBlock] =
              static_cast<float>(u[b]);
        }
      }
    }
  }
}

}  // namespace

PackedFoldWeights pack_fold_weights(const float* w, const float* bias, std::int64_t in_channels,
                                    std::int64_t out_channels, std::int64_t kernel) {
  check_packing_sizes(in_channels, out_channels, kernel);
  PackedFoldWeights p;
  p.in_channels = in_channels;
  p.out_channels = out_channels;
  p.kernel = kernel;
  p.blocks = blocks_for(out_channels);
  const std::int64_t k = kernel, ci_n = in_channels;
  const std::int64_t block_size = k * k * 2 * ci_n * 48;
  p.data.assign(static_cast<std::size_t>(p.blocks * block_size), 0.0f);
  p.bias.assign(static_cast<std::size_t>(p.blocks * 24), 0.0f);
  const std::int64_t fin = 4 * in_channels;  // folded input channels
  for (std::int64_t co = 0; co < out_channels; ++co) {
    const std::int64_t b = co / kFoldBlock, cl = co % kFoldBlock;
    float* blk = p.data.data() + b * block_size;
    for (int py = 0; py < 2; ++py) {
      for (int px = 0; px < 2; ++px) {
        const std::int64_t n = co * 4 + py * 2 + px;
        if (bias) p.bias[b * 24 + (cl * 2 + py) * 2 + px] = bias[n];
        for (std::int64_t ci = 0; ci < ci_n; ++ci) {
          for (int bh = 0; bh < 2; ++bh) {
            for (int bw = 0; bw < 2; ++bw) {
              const std::int64_t c = ci * 4 + bh * 2 + bw;
              for (std::int64_t kh = 0; kh < k; ++kh) {
                for (std::int64_t kw = 0; kw < k; ++kw) {
                  const float v = w[((n * fin + c) * k + kh) * k + kw];
                  const std::int64_t tap = ((kh * k + kw) * 2 + bh) * ci_n + ci;
                  blk[tap * 48 + ((bw * kFoldBlock + cl) * 2 + py) * 2 + px] = v;
                }
              }
            }
          }
        }
      }
    }
  }
  // The Winograd forms (16/9 and 36/9 the plain weights' size) only where a Winograd path can
  // run: not on aarch64 or CPUs without AVX2.
  const bool winograd =
      fold_conv_path_unavailable_reason(FoldConvPath::Avx2Winograd, false).empty() ||
      fold_conv_path_unavailable_reason(FoldConvPath::Avx512Winograd, false).empty() ||
      fold_conv_path_unavailable_reason(FoldConvPath::NeonWinograd, false).empty();
  if (kernel == 3 && winograd) {
    const std::int64_t nf = 4 * out_channels;
    p.winograd_blocks = (nf + kWinoBlock - 1) / kWinoBlock;
    p.folded_bias.assign(static_cast<std::size_t>(nf), 0.0f);
    if (bias) std::copy(bias, bias + nf, p.folded_bias.begin());
    pack_winograd(w, fin, nf, p.winograd_blocks, 4, p.winograd);
    pack_winograd(w, fin, nf, p.winograd_blocks, 6, p.winograd4);
  }
  return p;
}

namespace {

// Folded output rows (or columns) that start a Winograd tile {i, i + d, .., i + (m − 1)·d}: each
// residue class modulo d, in runs of m.
std::vector<std::int32_t> tile_starts(std::int64_t size, std::int64_t dilation, int m) {
  std::vector<std::int32_t> starts;
  for (std::int64_t rho = 0; rho < std::min(dilation, size); ++rho) {
    for (std::int64_t i = rho; i < size; i += m * dilation) {
      starts.push_back(static_cast<std::int32_t>(i));
    }
  }
  return starts;
}

// tile_starts(size, dilation, m).size() without building the list: residue class ρ < d holds
// ⌈(size − ρ)/d⌉ rows, in ⌈rows/m⌉ tiles.
std::int64_t tile_count(std::int64_t size, std::int64_t dilation, int m) {
  std::int64_t count = 0;
  for (std::int64_t rho = 0; rho < std::min(dilation, size); ++rho) {
    const std::int64_t rows = (size - rho + dilation - 1) / dilation;
    count += (rows + m - 1) / m;
  }
  return count;
}

// The tiles of one image of F(m×m, 3×3).
std::int64_t winograd_tiles(const FoldConvGeometry& g, int m) {
  return tile_count(g.folded_out_height(), g.dilation, m) *
         tile_count(g.folded_out_width(), g.dilation, m);
}

// Transformed tiles and products, 64-byte aligned: the GEMM reads 64-byte rows of v (one zmm or
// two ymm), which straddled two cache lines in a plain vector (glibc serves such blocks 16 bytes
// past a page). AVX-512, 1 thread: 28×28 d=2 1.39–1.48 → 1.18 ms, 56×56 4.9–5.3 → 4.1–4.6 ms.
struct WinoScratch {
  detail::AlignedBuffer<float> v, m;
  detail::AlignedBuffer<std::int32_t> tile_i, tile_j;
  // WinoTask::pixel_blocks, and the layout its zero border was last written for (only the
  // image part changes between calls of one geometry).
  detail::AlignedBuffer<float> pixel_blocks;
  std::int64_t zeroed[6] = {-1, -1, -1, -1, -1, -1};  // channels, rows, cols, p, H, W
  const float* zeroed_at = nullptr;
  std::int64_t zeroed_images = 0;  // images (from the first) whose border is written
};

// Images per Winograd pass: enough that the pass has 8 tile vectors (its GEMM then reads the
// transformed weights once for all of them), at most the batch.
std::int64_t winograd_group(std::int64_t batch, std::int64_t tiles) {
  const std::int64_t image_vectors = std::max<std::int64_t>((tiles + 15) / 16, 1);
  return std::max<std::int64_t>(1, std::min(batch, (8 + image_vectors - 1) / image_vectors));
}

// Channels [c0, c1) of WinoTask::pixel_blocks from the image x: the image part, and with
// `border` the zero border as well.
void build_pixel_blocks(const float* x, const FoldConvGeometry& g, std::int64_t rows,
                        std::int64_t cols, bool border, float* blocks, std::int64_t c0,
                        std::int64_t c1) {
  const std::int64_t hf = g.height / 2, wf = g.width / 2, p = g.padding;
  const std::int64_t plane = rows * cols * 4;
  for (std::int64_t ci = c0; ci < c1; ++ci) {
    float* dst = blocks + ci * plane;
    if (border) std::fill(dst, dst + plane, 0.0f);
    const float* src = x + ci * g.height * g.width;
    for (std::int64_t r = 0; r < hf; ++r) {
      // A block is the pixel pair of the top row, then that of the bottom row: 8 bytes each.
      const float* top = src + 2 * r * g.width;
      const float* bottom = top + g.width;
      float* out = dst + ((r + p) * cols + p) * 4;
      for (std::int64_t c = 0; c < wf; ++c) {
        std::uint64_t pair[2];
        std::memcpy(&pair[0], top + 2 * c, 8);
        std::memcpy(&pair[1], bottom + 2 * c, 8);
        std::memcpy(out + 4 * c, pair, 16);
      }
    }
  }
}

void winograd(const float* x, const FoldConvGeometry& g, const PackedFoldWeights& w, bool relu,
              float* y, const FoldConvIsa& isa, int requested_threads) {
  const int tile = isa.wino_tile, alpha = tile + 2, points = alpha * alpha;
  const std::int64_t hf = g.folded_out_height(), wf = g.folded_out_width();
  const std::vector<std::int32_t> rows = tile_starts(hf, g.dilation, tile);
  const std::vector<std::int32_t> cols = tile_starts(wf, g.dilation, tile);
  const std::int64_t tiles = static_cast<std::int64_t>(rows.size() * cols.size());
  const std::int64_t image_vectors = (tiles + 15) / 16;
  const std::int64_t group = winograd_group(g.batch, tiles);
  const std::int64_t vectors = group * image_vectors;  // of a whole group
  const std::int64_t fin = 4 * g.in_channels, nf = 4 * g.out_channels;
  // One scratch per calling thread, reused across calls (the transformed tiles are megabytes).
  thread_local WinoScratch s;
  float* v = s.v.get(static_cast<std::size_t>(points * vectors * fin * 16));
  float* m = s.m.get(static_cast<std::size_t>(points * vectors * nf * 16));
  std::int32_t* tile_i = s.tile_i.get(static_cast<std::size_t>(image_vectors * 16));
  std::int32_t* tile_j = s.tile_j.get(static_cast<std::size_t>(image_vectors * 16));
  std::fill(tile_i, tile_i + image_vectors * 16, -1);
  std::fill(tile_j, tile_j + image_vectors * 16, -1);
  for (std::size_t r = 0, t = 0; r < rows.size(); ++r) {
    for (std::size_t c = 0; c < cols.size(); ++c, ++t) {
      tile_i[t] = rows[r];
      tile_j[t] = cols[c];
    }
  }
  // Every tile point R = i + a·d lies below hf + (α − 1)·d (i < hf, a < α); the image starts
  // at p.
  const std::int64_t block_rows =
      std::max(hf + (alpha - 1) * g.dilation, g.height / 2 + g.padding);
  const std::int64_t block_cols =
      std::max(wf + (alpha - 1) * g.dilation, g.width / 2 + g.padding);
  const std::int64_t image_blocks = g.in_channels * block_rows * block_cols * 4;
  float* pixel_blocks = s.pixel_blocks.get(static_cast<std::size_t>(group * image_blocks));
  const std::int64_t layout[6] = {g.in_channels, block_rows, block_cols, g.padding, g.height,
                                  g.width};
  if (s.zeroed_at != pixel_blocks || !std::equal(layout, layout + 6, s.zeroed)) {
    s.zeroed_images = 0;  // no image's border is written for this layout
  }
  const double macs = static_cast<double>(g.batch) * points * nf * fin * tiles / 4;
  const std::int64_t in_chunk = 8, out_chunk = 32;
  const std::int64_t gemm_tasks = points * w.winograd_blocks;
  const std::int64_t parts = (nf + out_chunk - 1) / out_chunk;
  const int threads = thread_count(requested_threads, macs, gemm_tasks);
  const std::int64_t in_image = g.in_channels * g.height * g.width;
  const std::int64_t out_image = g.out_channels * g.out_height() * g.out_width();
  fold_conv_detail::WinoTask task;
  task.u = tile == 4 ? w.winograd4.data() : w.winograd.data();
  task.bias = w.folded_bias.data();
  task.v = v;
  task.m = m;
  task.tile_i = tile_i;
  task.tile_j = tile_j;
  task.pixel_blocks = pixel_blocks;
  task.block_rows = block_rows;
  task.block_cols = block_cols;
  task.tile = tile;
  task.blocks = w.winograd_blocks;
  task.image_vectors = image_vectors;
  task.image_in_stride = image_blocks;
  task.image_out_stride = out_image;
  task.in_channels = g.in_channels;
  task.out_channels = g.out_channels;
  task.dilation = g.dilation;
  task.folded_out_height = hf;
  task.folded_out_width = wf;
  task.relu = relu;
  const std::int64_t chunks = (g.in_channels + in_chunk - 1) / in_chunk;
  for (std::int64_t first = 0; first < g.batch; first += group) {
    const std::int64_t images = std::min(group, g.batch - first);
    const std::int64_t zeroed = s.zeroed_images;  // images whose border is already written
    task.y = y + first * out_image;
    task.tile_vectors = images * image_vectors;
    // A task builds its channels' pixel blocks of every image of the group, then transforms
    // them for every tile vector.
    run_tasks(chunks, threads, [&](std::int64_t t) {
      const std::int64_t c0 = t * in_chunk, c1 = std::min(c0 + in_chunk, g.in_channels);
      for (std::int64_t k = 0; k < images; ++k) {
        build_pixel_blocks(x + (first + k) * in_image, g, block_rows, block_cols, k >= zeroed,
                           pixel_blocks + k * image_blocks, c0, c1);
      }
      for (std::int64_t tv = 0; tv < task.tile_vectors; ++tv) isa.wino_input(task, tv, c0, c1);
    });
    s.zeroed_images = std::max(zeroed, images);
    std::copy(layout, layout + 6, s.zeroed);
    s.zeroed_at = pixel_blocks;
    // ξ-major: consecutive tasks share the transformed input of one ξ (in L2).
    run_tasks(gemm_tasks, threads, [&](std::int64_t t) {
      isa.wino_gemm(task, t / w.winograd_blocks, t % w.winograd_blocks);
    });
    run_tasks(task.tile_vectors * parts, threads, [&](std::int64_t t) {
      const std::int64_t n0 = (t % parts) * out_chunk;
      isa.wino_output(task, t / parts, n0, std::min(n0 + out_chunk, nf));
    });
  }
}

}  // namespace

namespace fold_conv_detail {

void wino_block_offsets(const WinoTask& t, std::int64_t tv, std::int64_t lane[16],
                        std::int64_t point[36]) {
  const std::int64_t d = t.dilation, cols = t.block_cols;
  const int alpha = t.tile + 2;
  const std::int64_t image = (tv / t.image_vectors) * t.image_in_stride;
  const std::int64_t v = tv % t.image_vectors;
  for (int l = 0; l < 16; ++l) {
    const std::int64_t i = t.tile_i[16 * v + l], j = t.tile_j[16 * v + l];
    lane[l] = image + (i < 0 ? 0 : (i * cols + j) * 4);
  }
  for (int k = 0; k < alpha * alpha; ++k) {
    point[k] = ((k / alpha) * d * cols + (k % alpha) * d) * 4;
  }
}

void wino_output_offsets(const WinoTask& t, std::int64_t tv, std::int64_t idx[16][16]) {
  const std::int64_t d = t.dilation, out_w = 2 * t.folded_out_width;
  const int m = t.tile;
  const std::int64_t image = (tv / t.image_vectors) * t.image_out_stride;
  const std::int64_t v = tv % t.image_vectors;
  for (int l = 0; l < 16; ++l) {
    const std::int64_t i = t.tile_i[16 * v + l], j = t.tile_j[16 * v + l];
    for (int a = 0; a < m; ++a) {
      for (int b = 0; b < m; ++b) {
        const std::int64_t row = i + a * d, col = j + b * d;
        const bool ok = i >= 0 && row < t.folded_out_height && col < t.folded_out_width;
        idx[a * m + b][l] = ok ? image + row * 2 * out_w + 2 * col : -1;
      }
    }
  }
}

void wino_store_results(const WinoTask& t, std::int64_t n, const std::int64_t idx[16][16],
                        const float y[16][16]) {
  const std::int64_t out_w = 2 * t.folded_out_width;
  const std::int64_t out_plane = 4 * t.folded_out_height * t.folded_out_width;
  float* base = t.y + (n / 4) * out_plane + ((n / 2) % 2) * out_w + (n % 2);
  for (int k = 0; k < t.tile * t.tile; ++k) {
    for (int l = 0; l < 16; ++l) {
      if (idx[k][l] >= 0) base[idx[k][l]] = y[k][l];
    }
  }
}

// Auto runs a 3×3 geometry as the cheaper Winograd form when its estimated cost is at most a
// margin times the direct kernel's, from 16 tiles up. Per output, in units of the direct
// kernel's multiply-adds over the full window:
// - direct: the fraction of (output row, kernel row) pairs inside the image (it skips kernel
//   rows in the padding, not columns);
// - F(m×m, 3×3): α²·slots / (9·outputs), slots = 16·tile vectors (a tile runs partly empty
//   where m does not divide a residue class modulo d, a vector where 16 does not divide the
//   tiles), times the overhead of its two transforms: 1.2 for m = 2, 1.35 for m = 4.
// AVX-512 (wide = true): margin 0.9, and F(4×4) only from 64 tiles in a pass (the images of a
// batch go through together, up to 8 tile vectors): its transformed weights (α²·4C_in·4C_out
// floats, 9.4 MB at 64 channels) stream from memory once per pass, and with one vector the
// 16-lane GEMM waits on them (28×28 d = 2: F(4×4)/F(2×2) 0.97 against 0.64 on
// AVX2). AVX2: margin 1.0 (its direct kernel has half the lanes and registers), F(4×4) from one
// vector. Measured against the model (1 thread; C = 64, same padding), time / direct time:
//   AVX-512 F(2×2): 28×28 d = 2, 4, 6: 0.65, 0.72, 0.82 (2 threads 0.79, 0.86, 1.03) against
//   0.77, 0.86, 0.98; F(4×4) 56×56 d = 2, 4: 0.39, 0.44 against 0.46, 0.46; 64×64 d = 1: 0.39.
//   AVX2 F(4×4): 28×28 d = 2, 4: 0.34, 0.42; 24×24 d = 4: 0.69 (F(2×2) 1.06); 56×56 d = 4: 0.39.
//   F(4×4)/F(2×2) where the model picks F(2×2): 56×56 d = 6 1.2–1.35, 40×40 d = 2 1.1,
//   16×16 d = 2 2.4.
double winograd_cost(const FoldConvGeometry& g, int tile) {
  const std::int64_t hf = g.folded_out_height(), wf = g.folded_out_width();
  const std::int64_t tiles = winograd_tiles(g, tile);
  if (tiles < 16) return 0.0;
  const double slots = 16.0 * static_cast<double>((tiles + 15) / 16);
  const double alpha = tile + 2.0, overhead = tile == 4 ? 1.35 : 1.2;
  return alpha * alpha * slots / (9.0 * static_cast<double>(hf * wf)) * overhead;
}

double direct_cost(const FoldConvGeometry& g) {
  const std::int64_t hf = g.folded_out_height(), k = g.kernel;
  std::int64_t live = 0;  // (output row, kernel row) pairs inside the image
  for (std::int64_t i = 0; i < hf; ++i) {
    for (std::int64_t kh = 0; kh < k; ++kh) {
      const std::int64_t r = i + kh * g.dilation - g.padding;
      live += r >= 0 && r < g.height / 2;
    }
  }
  return static_cast<double>(live) / static_cast<double>(hf * k);
}

double direct_lane_factor(const FoldConvGeometry& g, int lanes) {
  const std::int64_t w = g.out_width();
  if (lanes <= 1 || w <= 0) return 1.0;
  return static_cast<double>((w + lanes - 1) / lanes * lanes) / static_cast<double>(w);
}

int winograd_tile(const FoldConvGeometry& g, bool wide, int direct_lanes) {
  if (g.kernel != 3) return 0;
  int best = 0;
  double cost = (wide ? 0.9 : 1.0) * direct_cost(g) * direct_lane_factor(g, direct_lanes);
  for (int tile : {2, 4}) {
    const double c = winograd_cost(g, tile);
    if (c <= 0.0 || c > cost) continue;
    if (tile == 4 && wide) {  // 4 vectors of tiles in a pass (the images of a batch together)
      const std::int64_t tiles = winograd_tiles(g, 4);
      if (winograd_group(g.batch, tiles) * tiles < 4 * 16) continue;
    }
    best = tile;
    cost = c;
  }
  return best;
}

}  // namespace fold_conv_detail

namespace {

// The direct, F(2×2) and F(4×4) paths of one ISA's Winograd family, and whether its vectors are
// AVX-512's 16 lanes (the cost model's `wide`).
struct WinogradFamily {
  FoldConvPath direct, f2, f4;
  bool wide;
  int direct_lanes;  // output columns per vector of the direct kernel (1: the portable one)
};

WinogradFamily winograd_family(FoldConvPath path) {
  switch (path) {
    case FoldConvPath::Avx512Winograd:
    case FoldConvPath::Avx512Winograd4:
      return {FoldConvPath::Avx512, FoldConvPath::Avx512Winograd, FoldConvPath::Avx512Winograd4,
              true, 16};
    case FoldConvPath::Avx2Winograd:
    case FoldConvPath::Avx2Winograd4:
      return {FoldConvPath::Avx2, FoldConvPath::Avx2Winograd, FoldConvPath::Avx2Winograd4, false,
              8};
    default:  // NEON: the portable direct kernel
      return {FoldConvPath::Scalar, FoldConvPath::NeonWinograd, FoldConvPath::NeonWinograd4,
              false, 1};
  }
}

// fold_conv_fp32_algorithm for a checked geometry.
FoldConvPath fp32_algorithm(const FoldConvGeometry& g, FoldConvPath path) {
  const FoldConvIsa& isa = resolve(path, false);
  if (!isa.wino_input) return isa.path;
  const WinogradFamily family = winograd_family(isa.path);
  if (g.kernel != 3) return family.direct;
  // A forced Winograd path runs its own tile size; Auto (resolved to the F(2×2) path of the
  // best ISA) runs the model's choice between direct, F(2×2) and F(4×4).
  const int tile =
      path == isa.path ? isa.wino_tile
                       : fold_conv_detail::winograd_tile(g, family.wide, family.direct_lanes);
  return tile == 0 ? family.direct : tile == 4 ? family.f4 : family.f2;
}

}  // namespace

FoldConvPath fold_conv_fp32_algorithm(const FoldConvGeometry& g, FoldConvPath path) {
  check_fold_conv(g);
  return fp32_algorithm(g, path);
}

void fold_conv2d(const float* x, const FoldConvGeometry& g, const PackedFoldWeights& w, bool relu,
                 float* y, const FoldConvOptions& options) {
  check_fold_conv(g);
  check_weights_match(g, w.in_channels, w.out_channels, w.kernel);
  const FoldConvIsa& isa = *built(fp32_algorithm(g, options.path));
  if (isa.wino_input && g.batch > 0) {
    if ((isa.wino_tile == 4 ? w.winograd4 : w.winograd).empty()) {
      throw std::invalid_argument(
          "fold_conv2d: these weights were packed without their Winograd form (packed where no "
          "Winograd path could run); pack them again here");
    }
    winograd(x, g, w, relu, y, isa, options.num_threads);
    return;
  }
  const std::int64_t hf = g.folded_out_height();
  const std::int64_t tasks = g.batch * w.blocks * hf;
  const double macs = static_cast<double>(g.batch) * g.out_channels * 4 * hf *
                      g.folded_out_width() * g.depth();
  const int threads = thread_count(options.num_threads, macs, tasks);
  const std::int64_t block_size = g.kernel * g.kernel * 2 * g.in_channels * 48;
  const std::int64_t in_image = g.in_channels * g.height * g.width;
  const std::int64_t out_image = g.out_channels * g.out_height() * g.out_width();
  // Consecutive tasks share a weight block (kept in L2 across the rows of an image).
  run_tasks(tasks, threads, [&](std::int64_t t) {
    const std::int64_t i = t % hf, b = (t / hf) % w.blocks, image = t / (hf * w.blocks);
    fold_conv_detail::F32Task task;
    task.x = x + image * in_image;
    task.w = w.data.data() + b * block_size;
    task.bias = w.bias.data() + b * 24;
    task.y = y + image * out_image;
    task.in_channels = g.in_channels;
    task.height = g.height;
    task.width = g.width;
    task.kernel = g.kernel;
    task.dilation = g.dilation;
    task.padding = g.padding;
    task.out_height = g.out_height();
    task.out_width = g.out_width();
    task.co0 = b * kFoldBlock;
    task.co_count = std::min<std::int64_t>(kFoldBlock, g.out_channels - task.co0);
    task.i = i;
    task.relu = relu;
    isa.f32_task(task);
  });
}

// ---------------------------------------------------------------------------------- integer --

double PackedFoldQWeights::tail_group_density() const {
  if (!has_tail) return 0.0;
  const double pairs = 4.0 * out_channels * kernel * kernel * in_channels;
  return static_cast<double>(tail_groups.size()) / pairs;
}

double PackedFoldQWeights::tail_code_density() const {
  if (!has_tail) return 0.0;
  return static_cast<double>(tail_code_count) / (4.0 * out_channels * depth());
}

double PackedFoldQWeights::tail_quad_density() const {
  if (!has_tail) return 0.0;
  const double pairs = 4.0 * out_channels * kernel * kernel * in_channels;
  return static_cast<double>(tail_quads.size()) / pairs;
}

PackedFoldQWeights pack_fold_qweights(const std::int8_t* center, const std::int8_t* tail,
                                      std::int64_t in_channels, std::int64_t out_channels,
                                      std::int64_t kernel) {
  check_packing_sizes(in_channels, out_channels, kernel);
  PackedFoldQWeights p;
  p.in_channels = in_channels;
  p.out_channels = out_channels;
  p.kernel = kernel;
  p.blocks = (out_channels + kFoldQBlock - 1) / kFoldQBlock;
  p.has_tail = tail != nullptr;
  const std::int64_t k = kernel, ci_n = in_channels, fin = 4 * in_channels;
  const std::int64_t nf = 4 * out_channels;  // folded output channels
  const std::int64_t block_size = k * k * ci_n * kFoldQBlock * 16;  // 12 channels × 4 bytes
  p.dense.assign(static_cast<std::size_t>(p.blocks * block_size), 0);
  p.sum_center.assign(static_cast<std::size_t>(nf), 0);
  p.sum_tail.assign(static_cast<std::size_t>(nf), 0);
  p.tail_start.assign(static_cast<std::size_t>(nf * k + 1), 0);
  p.quad_start.assign(static_cast<std::size_t>(nf * k + 1), 0);
  p.row_sums.assign(static_cast<std::size_t>(nf * k), 0);
  p.tail_row_sums.assign(static_cast<std::size_t>(nf * k), 0);
  for (std::int64_t n = 0; n < nf; ++n) {
    const std::int64_t b = (n / 4) / kFoldQBlock, nl = n % (4 * kFoldQBlock);
    std::int8_t* blk = p.dense.data() + b * block_size;
    for (std::int64_t kh = 0; kh < k; ++kh) {
      qgemm_detail::TailQuadBuilder quads(p.tail_quads);
      for (std::int64_t kw = 0; kw < k; ++kw) {
        for (std::int64_t ci = 0; ci < ci_n; ++ci) {
          std::int32_t codes = 0;
          for (int q = 0; q < 4; ++q) {
            const std::int64_t idx = ((n * fin + ci * 4 + q) * k + kh) * k + kw;
            const std::int8_t w0 = center[idx];
            const std::int8_t w1 = tail ? tail[idx] : 0;
            p.max_abs_code = std::max({p.max_abs_code, std::abs(int{w0}), std::abs(int{w1})});
            p.sum_center[n] += w0;
            p.sum_tail[n] += w1;
            p.row_sums[n * k + kh] += w0;
            p.tail_row_sums[n * k + kh] += w1;
            blk[(((kh * k + kw) * ci_n + ci) * 4 * kFoldQBlock + nl) * 4 + q] = w0;
            codes |= static_cast<std::int32_t>(static_cast<std::uint8_t>(w1)) << (8 * q);
            if (w1 != 0) {
              ++p.tail_code_count;
              quads.add(4 * ((kh * k + kw) * ci_n + ci) + q, w1);  // element 4·group + q
            }
          }
          if (codes != 0) {  // a group with a non-zero tail code
            p.tail_groups.push_back(
                FoldTailGroup{static_cast<std::int32_t>((kh * k + kw) * ci_n + ci), codes});
          }
        }
      }
      p.tail_start[n * k + kh + 1] = static_cast<std::int64_t>(p.tail_groups.size());
      quads.finish();
      p.quad_start[n * k + kh + 1] = static_cast<std::int64_t>(p.tail_quads.size());
    }
  }
  return p;
}

namespace fold_conv_detail {

std::int64_t q_planes_bytes(const FoldConvGeometry& g) {
  const std::int64_t hp = g.height / 2 + 2 * g.padding, wp = g.width / 2 + 2 * g.padding;
  return g.in_channels * hp * wp * 4 + 64;
}

void q_build_planes(const std::uint8_t* image, const FoldConvGeometry& g, std::uint8_t zx,
                    std::uint8_t* planes, std::int64_t c0, std::int64_t c1) {
  const std::int64_t hf = g.height / 2, wf = g.width / 2, p = g.padding;
  const std::int64_t hp = hf + 2 * p, wp = wf + 2 * p;
  std::uint8_t* dst = planes + c0 * hp * wp * 4;
  for (std::int64_t ci = c0; ci < c1; ++ci) {
    for (std::int64_t row = 0; row < hp; ++row, dst += 4 * wp) {
      const std::int64_t ir = row - p;
      if (ir < 0 || ir >= hf) {
        std::memset(dst, zx, static_cast<std::size_t>(4 * wp));
        continue;
      }
      std::memset(dst, zx, static_cast<std::size_t>(4 * p));
      std::memset(dst + 4 * (p + wf), zx, static_cast<std::size_t>(4 * p));
      // Group = (top[2c], top[2c + 1], bottom[2c], bottom[2c + 1]): two 16-bit halves
      // (little endian), a loop the compiler vectorizes.
      const std::uint8_t* top = image + (ci * g.height + 2 * ir) * g.width;
      const std::uint8_t* bottom = top + g.width;
      std::uint8_t* out = dst + 4 * p;
      for (std::int64_t c = 0; c < wf; ++c) {
        std::uint16_t lo, hi;
        std::memcpy(&lo, top + 2 * c, 2);
        std::memcpy(&hi, bottom + 2 * c, 2);
        const std::uint32_t v =
            static_cast<std::uint32_t>(lo) | (static_cast<std::uint32_t>(hi) << 16);
        std::memcpy(out + 4 * c, &v, 4);
      }
    }
  }
  if (c1 == g.in_channels) std::memset(dst, zx, 64);  // read slack
}

std::int64_t q_vector_bytes(std::int64_t in_channels, std::int64_t kernel) {
  return kernel * kernel * in_channels * 64;
}

std::int64_t q_buffer_bytes(std::int64_t in_channels, std::int64_t kernel) {
  return kFoldQVectors * q_vector_bytes(in_channels, kernel) + 64;
}

void live_rows(std::int64_t v0, std::int64_t vectors, std::int64_t folded_out_height,
               std::int64_t folded_out_width, std::int64_t height, std::int64_t kernel,
               std::int64_t dilation, std::int64_t padding, std::int64_t& kh0,
               std::int64_t& kh1) {
  const std::int64_t wf = folded_out_width, pixels = folded_out_height * wf;
  const std::int64_t m0 = 16 * v0, m1 = std::min(16 * (v0 + vectors), pixels);
  const std::int64_t i0 = m0 / wf, i1 = (m1 - 1) / wf, hf = height / 2;
  auto live = [&](std::int64_t kh) {
    const std::int64_t shift = kh * dilation - padding;
    return i1 + shift >= 0 && i0 + shift < hf;
  };
  kh0 = 0;
  while (kh0 < kernel && !live(kh0)) ++kh0;
  kh1 = kh0;
  while (kh1 < kernel && live(kh1)) ++kh1;
}

void q_live_rows(const QTask& t, std::int64_t& kh0, std::int64_t& kh1) {
  live_rows(t.v0, t.vectors, t.folded_out_height, t.folded_out_width, t.height, t.kernel,
            t.dilation, t.padding, kh0, kh1);
}

void q_pack_vectors(const QTask& t, std::int64_t kh0, std::int64_t kh1) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, d = t.dilation;
  const std::int64_t wf = t.folded_out_width, pixels = t.folded_out_height * wf;
  const std::uint32_t pad = 0x01010101u * t.zx;
  for (std::int64_t v = 0; v < t.vectors; ++v) {
    for (std::int64_t l = 0; l < 16; ++l) {
      const std::int64_t m = 16 * (t.v0 + v) + l, i = m / wf, j = m % wf;
      for (std::int64_t kh = kh0; kh < kh1; ++kh) {
        for (std::int64_t kw = 0; kw < k; ++kw) {
          for (std::int64_t ci = 0; ci < ci_n; ++ci) {
            std::uint8_t* dst =
                t.buffer + v * 64 + ((kh * k + kw) * ci_n + ci) * kFoldQRowBytes + 4 * l;
            if (m >= pixels) {
              std::memcpy(dst, &pad, 4);
              continue;
            }
            const std::int64_t row = i + kh * d, col = j + kw * d;
            std::memcpy(dst, t.planes + ((ci * t.plane_height + row) * t.plane_width + col) * 4,
                        4);
          }
        }
      }
    }
  }
}

}  // namespace fold_conv_detail

namespace {

struct QConstants : EpilogueChannelConstants {
  fold_conv_detail::QEpilogue view{};

  // The same float32 constants as prism::qgemm (double products rounded once).
  QConstants(const PackedFoldQWeights& w, const PwlqEpilogue& e, const Requantization* rq) {
    const std::int64_t n = 4 * w.out_channels;
    fill(n, w.sum_center.data(), w.sum_tail.data(), e);
    view.zero_c = zero_c.data();
    view.zero_t = zero_t.data();
    view.alpha_c = alpha_c.data();
    view.alpha_t = alpha_t.data();
    view.gamma = gamma.data();
    view.beta = beta.data();
    view.row_zero = e.zx * static_cast<std::int32_t>(w.depth());
    view.out_scale = rq ? rq->scale : 1.0f;
    view.out_zero = rq ? static_cast<float>(rq->zero_point) : 0.0f;
    view.out_low = rq && rq->relu ? view.out_zero : 0.0f;
  }
};

// A 64-byte aligned scratch area per thread, grown on demand and reused across calls.
struct Scratch {
  detail::AlignedBuffer<std::uint8_t> buffer;  // a task's gathered vectors (QTask::buffer)
  std::vector<std::uint8_t> planes;  // fold_qconv2d's padded planes (the calling thread's)
};

Scratch& thread_scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

void fold_qconv2d(const std::uint8_t* x, const FoldConvGeometry& g, const PackedFoldQWeights& w,
                  const PwlqEpilogue& e, const FoldQOutput& out, const FoldConvOptions& options) {
  check_fold_conv(g);
  check_weights_match(g, w.in_channels, w.out_channels, w.kernel);
  const bool accumulators = out.a_c || out.a_t || out.r;
  const int kinds = (accumulators ? 1 : 0) + (out.y ? 1 : 0) + (out.q ? 1 : 0);
  if (kinds != 1) throw std::invalid_argument("fold_qconv2d: give exactly one kind of output");
  if (accumulators && !(out.a_c && out.a_t && out.r)) {
    throw std::invalid_argument("fold_qconv2d: the accumulator output needs a_c, a_t and r");
  }
  if (e.zx < 0 || e.zx > 255) {
    throw std::invalid_argument("fold_qconv2d: zero point zx=" + std::to_string(e.zx) +
                                " is outside 0..255");
  }
  std::unique_ptr<QConstants> constants;
  if (!accumulators) {
    if (!e.s1) throw std::invalid_argument("fold_qconv2d: the center scale s1 is required");
    if (out.q && (!out.requant || !(out.requant->scale > 0.0f) || out.requant->zero_point < 0 ||
                  out.requant->zero_point > 255)) {
      throw std::invalid_argument(
          "fold_qconv2d: requantized output needs a scale > 0 and a zero point in 0..255");
    }
    constants.reset(new QConstants(w, e, out.q ? out.requant : nullptr));
  }
  const FoldConvIsa& isa = resolve(options.path, true);
  const std::int64_t hf = g.folded_out_height(), wf = g.folded_out_width();
  const double macs = static_cast<double>(g.batch) * g.out_channels * 4 * hf * wf * g.depth();
  // Units are blocks of up to kFoldQVectors vectors of 16 folded output pixels (as even as
  // possible: 13 vectors are 4 + 3 + 3 + 3, not 4 + 4 + 4 + 1). A unit and a range of weight
  // blocks make a piece of work (vectors × blocks). With several threads the sequence of all
  // (unit, block) pairs is cut into 2 chunks per thread of equal work, handed out dynamically:
  // the threads finish together, and a unit is gathered again only where a cut splits it.
  const std::int64_t vecs = (hf * wf + 15) / 16;
  constexpr std::int64_t kVectors = fold_conv_detail::kFoldQVectors;
  const std::int64_t vblocks = (vecs + kVectors - 1) / kVectors;
  const std::int64_t units = g.batch * vblocks;
  const std::int64_t per_block = vecs / vblocks, extra = vecs % vblocks;
  auto unit_vectors = [&](std::int64_t u) { return per_block + (u % vblocks < extra ? 1 : 0); };
  // Work of one weight block of unit u: its vectors times its kernel rows that read the image
  // (rows lying wholly in the padding are skipped).
  std::vector<std::int64_t> unit_work(static_cast<std::size_t>(units));
  std::int64_t work = 0;
  auto unit_v0 = [&](std::int64_t u) {
    const std::int64_t vb = u % vblocks;
    return vb * per_block + std::min(vb, extra);
  };
  for (std::int64_t u = 0; u < units; ++u) {
    std::int64_t kh0, kh1;
    fold_conv_detail::live_rows(unit_v0(u), unit_vectors(u), hf, wf, g.height, g.kernel,
                                g.dilation, g.padding, kh0, kh1);
    unit_work[static_cast<std::size_t>(u)] =
        unit_vectors(u) * std::max<std::int64_t>(kh1 - kh0, 1);
    work += unit_work[static_cast<std::size_t>(u)] * w.blocks;
  }
  int threads = thread_count(options.num_threads, macs, units * w.blocks);
  const std::int64_t tasks =
      threads > 1 ? std::min<std::int64_t>(units * w.blocks, 2 * threads) : 1;
  threads = static_cast<int>(std::min<std::int64_t>(threads, tasks));
  const std::int64_t buffer = fold_conv_detail::q_buffer_bytes(g.in_channels, g.kernel);
  const bool nibbles = w.max_abs_code > qgemm_detail::kNarrowCodeLimit && isa.q_nibbles;
  const std::int64_t int16_groups = qgemm_detail::int16_run_groups(w.max_abs_code, nibbles);
  const bool planar = w.has_tail && isa.q_planar;
  const std::int64_t plane_bytes = fold_conv_detail::q_planes_bytes(g);
  const std::int64_t in_image = g.in_channels * g.height * g.width;
  const std::int64_t out_image = g.out_channels * g.out_height() * g.out_width();
  // The padded planes of every image, in the calling thread's scratch: built in channel ranges
  // by all threads first, then read by all.
  std::vector<std::uint8_t>& planes = thread_scratch().planes;
  if (static_cast<std::int64_t>(planes.size()) < g.batch * plane_bytes)
    planes.resize(static_cast<std::size_t>(g.batch * plane_bytes));
  // Channel ranges of the images, so that one image gives every thread a part.
  const std::int64_t parts = std::min<std::int64_t>(
      g.in_channels, std::max<std::int64_t>(1, (threads + g.batch - 1) / g.batch));
  run_tasks(g.batch * parts, threads, [&](std::int64_t t) {
    const std::int64_t image = t / parts, part = t % parts;
    fold_conv_detail::q_build_planes(x + image * in_image, g, static_cast<std::uint8_t>(e.zx),
                                     planes.data() + image * plane_bytes,
                                     g.in_channels * part / parts,
                                     g.in_channels * (part + 1) / parts);
  });
  auto run_piece = [&](std::int64_t unit, std::int64_t b0, std::int64_t b1) {
    const std::int64_t image = unit / vblocks;
    Scratch& scratch = thread_scratch();
    fold_conv_detail::QTask task;
    task.planes = planes.data() + image * plane_bytes;
    const std::int64_t scratches = 1 + (nibbles ? 1 : 0) + (planar ? 1 : 0);
    task.buffer = scratch.buffer.get(static_cast<std::size_t>(scratches * buffer));
    task.buffer_high = nibbles ? task.buffer + buffer : nullptr;
    task.planar = planar ? task.buffer + (nibbles ? 2 : 1) * buffer : nullptr;
    task.dense = w.dense.data();
    task.row_sums = w.row_sums.data();
    task.tail_row_sums = w.tail_row_sums.data();
    task.tail_start = w.tail_start.data();
    task.tail_groups = w.tail_groups.data();
    task.quad_start = w.quad_start.data();
    task.tail_quads = w.tail_quads.data();
    task.has_tail = w.has_tail;
    task.int16_groups = int16_groups;
    task.out_channels = w.out_channels;
    task.in_channels = g.in_channels;
    task.height = g.height;
    task.kernel = g.kernel;
    task.dilation = g.dilation;
    task.padding = g.padding;
    task.folded_out_height = hf;
    task.folded_out_width = wf;
    task.plane_height = g.height / 2 + 2 * g.padding;
    task.plane_width = g.width / 2 + 2 * g.padding;
    task.out_height = g.out_height();
    task.out_width = g.out_width();
    task.v0 = unit_v0(unit);
    task.vectors = unit_vectors(unit);
    task.block0 = b0;
    task.block1 = b1;
    task.zx = static_cast<std::uint8_t>(e.zx);
    task.write_r = b0 == 0;
    task.epilogue = constants ? &constants->view : nullptr;
    const std::int64_t off = image * out_image;
    task.a_c = out.a_c ? out.a_c + off : nullptr;
    task.a_t = out.a_t ? out.a_t + off : nullptr;
    task.r = out.r ? out.r + image * hf * wf : nullptr;
    task.y = out.y ? out.y + off : nullptr;
    task.q = out.q ? out.q + off : nullptr;
    isa.q_task(task);
  };
  run_tasks(tasks, threads, [&](std::int64_t t) {
    // Work [start, end) of the sequence. Unit u's block b covers [offset + b·v, offset +
    // (b + 1)·v), v the unit's work per block; a chunk takes the blocks whose work starts in its
    // range, so the chunks tile the blocks.
    const std::int64_t start = work * t / tasks, end = work * (t + 1) / tasks;
    std::int64_t offset = 0;
    for (std::int64_t u = 0; u < units && offset < end; ++u) {
      const std::int64_t v = unit_work[static_cast<std::size_t>(u)], size = v * w.blocks;
      if (offset + size > start) {
        auto first_block = [&](std::int64_t at) {
          return std::min(w.blocks, std::max<std::int64_t>(0, (at - offset + v - 1) / v));
        };
        const std::int64_t b0 = first_block(start), b1 = first_block(end);
        if (b0 < b1) run_piece(u, b0, b1);
      }
      offset += size;
    }
  });
}

// ------------------------------------------------------------------------- portable kernels --

namespace fold_conv_detail {
namespace {

// FP32: one task, 16 output columns at a time, the same loop nest as the SIMD paths.
void scalar_f32_task(const F32Task& t) {
  constexpr int L = 16;
  const std::int64_t hw = t.height * t.width, hf_in = t.height / 2, k = t.kernel;
  const std::int64_t ci_n = t.in_channels;
  for (std::int64_t x0 = 0; x0 < t.out_width; x0 += L) {
    float acc[kFoldBlock][2][L];
    for (int c = 0; c < kFoldBlock; ++c)
      for (int py = 0; py < 2; ++py)
        for (int l = 0; l < L; ++l) acc[c][py][l] = t.bias[(c * 2 + py) * 2 + (l & 1)];
    for (std::int64_t kh = 0; kh < k; ++kh) {
      const std::int64_t fr = t.i + kh * t.dilation - t.padding;
      if (fr < 0 || fr >= hf_in) continue;  // zero padding rows add nothing
      for (int bh = 0; bh < 2; ++bh) {
        const std::int64_t row = 2 * fr + bh;
        for (std::int64_t kw = 0; kw < k; ++kw) {
          const std::int64_t col0 = x0 + 2 * (kw * t.dilation - t.padding);
          bool valid[L];
          for (int l = 0; l < L; ++l) valid[l] = col0 + l >= 0 && col0 + l < t.width;
          const float* wp = t.w + ((kh * k + kw) * 2 + bh) * ci_n * 48;
          for (std::int64_t ci = 0; ci < ci_n; ++ci, wp += 48) {
            const float* src = t.x + ci * hw + row * t.width + col0;
            float raw[L], e[2][L];
            for (int l = 0; l < L; ++l) raw[l] = valid[l] ? src[l] : 0.0f;
            for (int l = 0; l < L; ++l) {
              e[0][l] = raw[l & ~1];
              e[1][l] = raw[l | 1];
            }
            for (int bw = 0; bw < 2; ++bw)
              for (int c = 0; c < kFoldBlock; ++c)
                for (int py = 0; py < 2; ++py) {
                  const float* pair = wp + ((bw * kFoldBlock + c) * 2 + py) * 2;
                  for (int l = 0; l < L; ++l) acc[c][py][l] += e[bw][l] * pair[l & 1];
                }
          }
        }
      }
    }
    const std::int64_t n = std::min<std::int64_t>(L, t.out_width - x0);
    for (std::int64_t c = 0; c < t.co_count; ++c) {
      for (int py = 0; py < 2; ++py) {
        float* dst = t.y + ((t.co0 + c) * t.out_height + 2 * t.i + py) * t.out_width + x0;
        for (std::int64_t l = 0; l < n; ++l) {
          const float v = acc[c][py][l];
          dst[l] = t.relu && !(v > 0.0f) ? 0.0f : v;
        }
      }
    }
  }
}

// Integer: the gathered 4-byte groups against the packed codes, 16 folded columns at a time.
inline std::int32_t dot4(const std::uint8_t* x, const std::int8_t* w) {
  return x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3];
}

void scalar_q_task(const QTask& t) {
  constexpr int L = 16, NB = 4 * kFoldQBlock;
  const std::int64_t k = t.kernel, ci_n = t.in_channels, wf = t.folded_out_width;
  const std::int64_t taps = k * k * ci_n, pixels = t.folded_out_height * wf;
  const std::int64_t block_size = taps * NB * 4;
  q_pack_vectors(t, 0, k);  // every kernel row, padding included
  for (std::int64_t v = 0; v < t.vectors; ++v) {
    const std::uint8_t* buffer = t.buffer + v * 64;
    const std::int64_t m0 = 16 * (t.v0 + v);
    std::int32_t r[L] = {};
    for (std::int64_t g = 0; g < taps; ++g) {
      const std::uint8_t* xg = buffer + kFoldQRowBytes * g;
      for (int l = 0; l < L; ++l)
        r[l] += xg[4 * l] + xg[4 * l + 1] + xg[4 * l + 2] + xg[4 * l + 3];
    }
    if (t.write_r && t.r) {
      for (std::int64_t l = 0; l < L && m0 + l < pixels; ++l) t.r[m0 + l] = r[l];
    }
    for (std::int64_t b = t.block0; b < t.block1; ++b) {
      std::int32_t acc[NB][L] = {};
      const std::int8_t* wp = t.dense + b * block_size;
      for (std::int64_t g = 0; g < taps; ++g, wp += NB * 4) {
        const std::uint8_t* xg = buffer + kFoldQRowBytes * g;
        for (int n = 0; n < NB; ++n)
          for (int l = 0; l < L; ++l) acc[n][l] += dot4(xg + 4 * l, wp + 4 * n);
      }
      const std::int64_t co_count =
          std::min<std::int64_t>(kFoldQBlock, t.out_channels - b * kFoldQBlock);
      for (std::int64_t nl = 0; nl < 4 * co_count; ++nl) {
        const std::int64_t n = b * NB + nl;  // folded channel
        std::int32_t at[L] = {};
        for (std::int64_t e = t.tail_start[n * k]; e < t.tail_start[(n + 1) * k]; ++e) {
          const FoldTailGroup& tg = t.tail_groups[e];
          const std::uint8_t* xg = buffer + kFoldQRowBytes * tg.group;
          std::int8_t tc[4];
          std::memcpy(tc, &tg.codes, 4);
          for (int l = 0; l < L; ++l) at[l] += dot4(xg + 4 * l, tc);
        }
        const std::int64_t co = n / 4, py = (n / 2) % 2, px = n % 2;
        for (std::int64_t l = 0; l < L && m0 + l < pixels; ++l) {
          const std::int64_t i = (m0 + l) / wf, j = (m0 + l) % wf;
          const std::int64_t o = (co * t.out_height + 2 * i + py) * t.out_width + 2 * j + px;
          const std::int32_t ac = acc[nl][l];
          if (!t.epilogue) {
            t.a_c[o] = ac;
            t.a_t[o] = at[l];
            continue;
          }
          const QEpilogue& q = *t.epilogue;
          const float y = scalar_epilogue::value(ac, q.zero_c[n], q.alpha_c[n], t.has_tail, at[l],
                                                 q.zero_t[n], q.alpha_t[n], r[l], q.row_zero,
                                                 q.gamma[n], q.beta[n]);
          if (t.y) {
            t.y[o] = y;
            continue;
          }
          t.q[o] = scalar_epilogue::requantize(y, q.out_scale, q.out_zero, q.out_low);
        }
      }
    }
  }
}

const FoldConvIsa kScalar{FoldConvPath::Scalar, scalar_f32_task, scalar_q_task, nullptr,
                          nullptr, nullptr};

}  // namespace

const FoldConvIsa* fold_conv_scalar() { return &kScalar; }

}  // namespace fold_conv_detail
}  // namespace prism
