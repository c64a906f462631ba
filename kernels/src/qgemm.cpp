// PWLQ integer GEMM: weight packing, path selection, the blocked and threaded driver. The inner
// loops live in one file per instruction set (qgemm_<isa>.cpp); semantics in prism/qgemm.hpp.
#include "prism/qgemm.hpp"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/cpu_features.hpp"
#include "prism/thread_pool.hpp"
#include "aligned_buffer.hpp"

namespace prism {

void EpilogueChannelConstants::fill(std::int64_t n, const std::int32_t* sum_center,
                                    const std::int32_t* sum_tail, const PwlqEpilogue& e) {
  zero_c.resize(n);
  zero_t.resize(n);
  alpha_c.resize(n);
  alpha_t.resize(n);
  gamma.resize(n);
  beta.resize(n);
  const double sx = e.sx;
  for (std::int64_t i = 0; i < n; ++i) {
    zero_c[i] = e.zx * sum_center[i];
    zero_t[i] = e.zx * sum_tail[i];
    const double a = e.a ? e.a[i] : 1.0;
    alpha_c[i] = static_cast<float>(sx * e.s1[i] * a);
    alpha_t[i] = static_cast<float>(sx * (e.s2 ? e.s2[i] : 0.0f) * a);
    gamma[i] = static_cast<float>((e.c ? e.c[i] : 0.0f) * sx);
    beta[i] = e.bias ? e.bias[i] : 0.0f;
  }
}


// ------------------------------------------------------------------------------------ paths --

const char* qgemm_path_name(QgemmPath path) {
  switch (path) {
    case QgemmPath::Auto: return "auto";
    case QgemmPath::Scalar: return "scalar";
    case QgemmPath::Avx2: return "avx2";
    case QgemmPath::Avx512Vnni: return "avx512vnni";
    case QgemmPath::NeonDot: return "neon_dot";
  }
  return "?";
}

QgemmPath parse_qgemm_path(const std::string& name) {
  for (QgemmPath p : {QgemmPath::Auto, QgemmPath::Scalar, QgemmPath::Avx2, QgemmPath::Avx512Vnni,
                      QgemmPath::NeonDot}) {
    if (name == qgemm_path_name(p)) return p;
  }
  throw std::invalid_argument("unknown kernel path '" + name +
                              "'; expected auto, scalar, avx2, avx512vnni or neon_dot");
}

namespace {

const qgemm_detail::IsaKernels* built_kernels(QgemmPath path) {
  switch (path) {
    case QgemmPath::Scalar: return qgemm_detail::scalar_kernels();
    case QgemmPath::Avx2: return qgemm_detail::avx2_kernels();
    case QgemmPath::Avx512Vnni: return qgemm_detail::avx512vnni_kernels();
    case QgemmPath::NeonDot: return qgemm_detail::neon_dot_kernels();
    case QgemmPath::Auto: break;
  }
  return nullptr;
}

bool cpu_has(QgemmPath path) {
  const CpuFeatures& f = cpu_features();
  switch (path) {
    case QgemmPath::Scalar: return true;
    case QgemmPath::Avx2: return f.avx2;
    case QgemmPath::Avx512Vnni: return f.avx512_vnni;
    case QgemmPath::NeonDot: return f.neon_dotprod;
    case QgemmPath::Auto: return true;
  }
  return false;
}

}  // namespace

std::string qgemm_path_unavailable_reason(QgemmPath path) {
  if (path == QgemmPath::Auto || path == QgemmPath::Scalar) return "";
  const std::string name = qgemm_path_name(path);
  if (!built_kernels(path)) {
    return name + ": not built into this binary (it was compiled for " + cpu_features().arch +
           ")";
  }
  if (!cpu_has(path)) {
    static const char* what[] = {"", "", "AVX2 and FMA", "AVX-512 VNNI (with F, BW, VL)",
                                 "the ARMv8.2 dot-product extension (asimddp)"};
    return name + ": this CPU lacks " + what[static_cast<int>(path)] +
           " (or PRISM_DISABLE_SIMD=1 / PRISM_MAX_ISA caps it)";
  }
  return "";
}

QgemmPath qgemm_best_path() {
  for (QgemmPath p : {QgemmPath::Avx512Vnni, QgemmPath::Avx2, QgemmPath::NeonDot}) {
    if (qgemm_path_unavailable_reason(p).empty()) return p;
  }
  return QgemmPath::Scalar;
}

namespace qgemm_detail {

// Register-only loops of 12 independent instructions per iteration (a sink returned):
std::int64_t avx512vnni_probe_loop(std::int64_t iterations);  // vpdpbusd zmm
std::int64_t avx2_probe_loop(std::int64_t iterations);        // vpmaddubsw ymm

namespace {

// CPU time of the calling thread: on a shared machine the wall clock also counts the time the
// OS gave to other processes, which is not the instruction's throughput.
double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Instructions per CPU-second of `loop` over about `seconds`.
double probe(std::int64_t (*loop)(std::int64_t), double seconds) {
  const std::int64_t iterations = 1 << 16;
  std::int64_t done = 0;
  volatile std::int64_t sink = 0;
  const double t0 = thread_seconds();
  double elapsed = 0.0;
  while (elapsed < seconds) {
    sink = sink + loop(iterations);
    done += iterations;
    elapsed = thread_seconds() - t0;
  }
  return 12.0 * static_cast<double>(done) / elapsed;
}

}  // namespace

double vpdpbusd_per_second(double seconds) {
  return qgemm_path_unavailable_reason(QgemmPath::Avx512Vnni).empty()
             ? probe(avx512vnni_probe_loop, seconds)
             : 0.0;
}

std::int64_t int16_run_groups(int max_abs_code, bool nibbles) {
  if (max_abs_code == 0) return 64;
  const std::int64_t x_max = nibbles ? 15 : 255;
  return std::max<std::int64_t>(1, 32767 / (2 * x_max * max_abs_code));
}

double vpmaddubsw_per_second(double seconds) {
  return qgemm_path_unavailable_reason(QgemmPath::Avx2).empty()
             ? probe(avx2_probe_loop, seconds)
             : 0.0;
}

void quantize_linear(const IsaKernels& isa, const QuantizeArgs& a) {
  if (isa.quantize) {
    isa.quantize(a);
    return;
  }
  for (std::int64_t i = 0; i < a.count; ++i) {
    float x = a.x[i];
    if (a.clip) x = std::min(std::max(x, a.clip_low), a.clip_high);
    float q = std::nearbyint(x / a.scale) + a.zero_point;  // default rounding: half to even
    q = std::min(std::max(q, 0.0f), 255.0f);
    a.q[i] = static_cast<std::uint8_t>(static_cast<int>(q));
  }
}

const IsaKernels& kernels_for(QgemmPath path) {
  if (path == QgemmPath::Auto) path = qgemm_best_path();
  const std::string why = qgemm_path_unavailable_reason(path);
  if (!why.empty()) throw std::invalid_argument("kernel path " + why);
  return *built_kernels(path);
}

}  // namespace qgemm_detail

// ---------------------------------------------------------------------------------- packing --

double PackedPwlqWeights::tail_block_density() const {
  if (tail_form != TailForm::Sparse || channels == 0 || k_blocks == 0) return 0.0;
  return static_cast<double>(tail_blocks.size()) / static_cast<double>(channels * k_blocks);
}

double PackedPwlqWeights::tail_quad_density() const {
  if (tail_form != TailForm::Sparse || channels == 0 || k_blocks == 0) return 0.0;
  return static_cast<double>(tail_quads.size()) / static_cast<double>(channels * k_blocks);
}

namespace {

// Writes one (N, K) code tensor into panels; returns nothing, fills sums per panel lane.
void fill_panels(const PackedPwlqWeights& w, std::vector<std::int8_t>& panels,
                 std::vector<std::int32_t>& lane_sums, std::int64_t n, std::int64_t k,
                 int code) {
  const std::int64_t per_group = w.channels_per_group();
  const std::int64_t g = n / per_group, c = n % per_group;
  const std::int64_t panel = g * w.panels_per_group + c / kQgemmPanel;
  const std::int64_t lane = c % kQgemmPanel;
  panels[panel * w.panel_bytes() + (k / kQgemmKBlock) * (kQgemmKBlock * kQgemmPanel) +
         lane * kQgemmKBlock + k % kQgemmKBlock] = static_cast<std::int8_t>(code);
  lane_sums[panel * kQgemmPanel + lane] += code;
}

}  // namespace

PackedPwlqWeights pack_pwlq_weights(const std::int8_t* center, const std::int8_t* tail,
                                    std::int64_t channels, std::int64_t depth, TailForm form,
                                    std::int64_t groups) {
  if (channels <= 0 || depth <= 0) {
    throw std::invalid_argument("pack_pwlq_weights: N and K must be positive, got N=" +
                                std::to_string(channels) + " K=" + std::to_string(depth));
  }
  if (depth > kQgemmMaxDepth) {
    throw std::invalid_argument("pack_pwlq_weights: K=" + std::to_string(depth) +
                                " exceeds the int32 accumulator limit " +
                                std::to_string(kQgemmMaxDepth));
  }
  if (groups <= 0 || channels % groups != 0) {
    throw std::invalid_argument("pack_pwlq_weights: N=" + std::to_string(channels) +
                                " is not a multiple of groups=" + std::to_string(groups));
  }
  if (!center) throw std::invalid_argument("pack_pwlq_weights: center (W0) is required");
  const bool has_tail = tail != nullptr;
  if (has_tail && form == TailForm::None) form = TailForm::Sparse;
  if (!has_tail) form = TailForm::None;

  PackedPwlqWeights w;
  w.channels = channels;
  w.depth = depth;
  w.groups = groups;
  w.k_blocks = (depth + kQgemmKBlock - 1) / kQgemmKBlock;
  w.panels_per_group = (channels / groups + kQgemmPanel - 1) / kQgemmPanel;
  w.tail_form = form;
  const std::int64_t panels = groups * w.panels_per_group;
  const std::size_t panel_total = static_cast<std::size_t>(panels * w.panel_bytes());
  const std::size_t lanes = static_cast<std::size_t>(panels * kQgemmPanel);
  w.dense.assign(panel_total, 0);
  w.dense_sums.assign(lanes, 0);
  w.sum_center.assign(channels, 0);
  w.sum_tail.assign(channels, 0);
  if (form == TailForm::Dense) {
    w.dense_tail.assign(panel_total, 0);
    w.dense_tail_sums.assign(lanes, 0);
  }
  if (form == TailForm::Sparse) {
    w.tail_start.assign(channels + 1, 0);
    w.quad_start.assign(channels + 1, 0);
  }

  int max_abs = 0;
  for (std::int64_t n = 0; n < channels; ++n) {
    for (std::int64_t k = 0; k < depth; ++k) {
      const std::int64_t i = n * depth + k;
      const int c = center[i];
      const int t = has_tail ? tail[i] : 0;
      max_abs = std::max({max_abs, c < 0 ? -c : c, t < 0 ? -t : t});
      w.sum_center[n] += c;
      w.sum_tail[n] += t;
      fill_panels(w, w.dense, w.dense_sums, n, k, c);
      if (form == TailForm::Dense) fill_panels(w, w.dense_tail, w.dense_tail_sums, n, k, t);
    }
    if (form == TailForm::Sparse) {
      for (std::int64_t kb = 0; kb < w.k_blocks; ++kb) {
        std::uint8_t codes[4] = {0, 0, 0, 0};
        bool any = false;
        for (std::int64_t i = 0; i < kQgemmKBlock && kb * kQgemmKBlock + i < depth; ++i) {
          const std::int64_t src = n * depth + kb * kQgemmKBlock + i;
          codes[i] = static_cast<std::uint8_t>(tail[src]);
          any = any || tail[src] != 0;
        }
        if (!any) continue;
        QgemmTailBlock b;
        b.k_block = static_cast<std::int32_t>(kb);
        std::memcpy(&b.codes, codes, 4);
        w.tail_blocks.push_back(b);
      }
      w.tail_start[n + 1] = static_cast<std::int64_t>(w.tail_blocks.size());
      qgemm_detail::TailQuadBuilder quads(w.tail_quads);
      for (std::int64_t k = 0; k < depth; ++k) {
        if (tail[n * depth + k] != 0) quads.add(k, tail[n * depth + k]);
      }
      quads.finish();
      w.quad_start[n + 1] = static_cast<std::int64_t>(w.tail_quads.size());
    }
  }
  w.max_abs_code = max_abs;
  return w;
}

// ---------------------------------------------------------------------------------- driver --

namespace qgemm_detail {

void TailQuadBuilder::add(std::int64_t row, std::int8_t code) {
  quad_.row[filled_] = static_cast<std::int32_t>(row);
  quad_.codes |= static_cast<std::int32_t>(static_cast<std::uint8_t>(code)) << (8 * filled_);
  if (++filled_ < 4) return;
  out_.push_back(quad_);
  quad_ = PwlqTailQuad{};
  filled_ = 0;
}

void TailQuadBuilder::finish() {
  if (filled_ == 0) return;
  for (int j = filled_; j < 4; ++j) quad_.row[j] = quad_.row[0];  // its code byte is 0
  out_.push_back(quad_);
  quad_ = PwlqTailQuad{};
  filled_ = 0;
}
namespace {

constexpr std::int64_t kMaxRowGroupsPerBlock = 3;  // 48 rows: the AVX-512 register tile
// Below this many multiply-adds per thread, waking another thread costs more than it saves
// (automatic thread count only).
constexpr double kMinMacsPerThread = 1.5e6;

// Rows of a row-major (M, K) uint8 matrix.
class MatrixRows final : public RowSource {
 public:
  MatrixRows(const std::uint8_t* x, std::int64_t rows, std::int64_t depth)
      : x_(x), rows_(rows), depth_(depth) {}
  std::int64_t rows() const override { return rows_; }
  void pack(std::int64_t row0, std::int64_t row_groups, std::uint8_t* out, std::int32_t* row_sums,
            const IsaKernels& isa) const override {
    const std::int64_t k_blocks = (depth_ + kQgemmKBlock - 1) / kQgemmKBlock;
    if (isa.pack_matrix && !isa.biased_x) {
      isa.pack_matrix(MatrixPackArgs{x_, rows_, depth_, row0, row_groups, k_blocks, out, row_sums});
      return;
    }
    const std::uint8_t flip = isa.biased_x ? 0x80 : 0;
    const std::int64_t full = depth_ / kQgemmKBlock;
    const std::uint32_t flip4 = 0x01010101u * flip;
    for (std::int64_t g = 0; g < row_groups; ++g) {
      std::uint8_t* dst_group = out + g * k_blocks * 64;
      for (int r = 0; r < kQgemmRowGroup; ++r) {
        const std::int64_t m = row0 + g * kQgemmRowGroup + r;
        std::uint8_t* dst = dst_group + r * kQgemmKBlock;
        if (m >= rows_) {
          for (std::int64_t kb = 0; kb < k_blocks; ++kb) std::memcpy(dst + kb * 64, &flip4, 4);
          row_sums[g * kQgemmRowGroup + r] = 0;
          continue;
        }
        const std::uint8_t* src = x_ + m * depth_;
        for (std::int64_t kb = 0; kb < full; ++kb) {
          std::uint32_t v;
          std::memcpy(&v, src + kb * kQgemmKBlock, 4);
          v ^= flip4;
          std::memcpy(dst + kb * 64, &v, 4);
        }
        if (full < k_blocks) {
          std::uint8_t last[4] = {0, 0, 0, 0};
          for (std::int64_t i = full * kQgemmKBlock; i < depth_; ++i)
            last[i - full * kQgemmKBlock] = src[i];
          for (auto& b : last) b ^= flip;
          std::memcpy(dst + full * 64, last, 4);
        }
        std::int32_t sum = 0;
        for (std::int64_t k = 0; k < depth_; ++k) sum += src[k];
        row_sums[g * kQgemmRowGroup + r] = sum;
      }
    }
  }

 private:
  const std::uint8_t* x_;
  std::int64_t rows_, depth_;
};

using detail::AlignedBuffer;

// Per-thread scratch, reused across calls.
struct Scratch {
  AlignedBuffer<std::uint8_t> rows, planar;
  AlignedBuffer<std::int32_t> row_sums, acc, acc_t;
  AlignedBuffer<float> y;
  AlignedBuffer<std::uint8_t> q;
};

Scratch& thread_scratch() {
  thread_local Scratch s;
  return s;
}

// Per-call, per-channel constants of the float epilogue.
struct EpilogueConstants : EpilogueChannelConstants {
  std::int32_t row_zero = 0;
  float out_scale = 1.0f, out_zero = 0.0f, out_low = 0.0f;

  // Refills the constants for one call (the vectors keep their capacity between calls).
  void reset(const PackedPwlqWeights& w, const PwlqEpilogue& e, const Requantization* rq) {
    const std::int64_t n = w.channels;
    fill(n, w.sum_center.data(), w.sum_tail.data(), e);
    row_zero = e.zx * static_cast<std::int32_t>(w.depth);
    if (rq) {
      out_scale = rq->scale;
      out_zero = static_cast<float>(rq->zero_point);
      out_low = rq->relu ? out_zero : 0.0f;
    }
  }
};

// Calls fn(tile_row, output_row, count) for each run of output rows among the source's rows
// [row0, row0 + n): tile row i is source row row0 + i (see RowSource::row_period).
template <class Fn>
void for_each_output_run(const RowSource& src, std::int64_t row0, std::int64_t n, Fn fn) {
  const std::int64_t period = src.row_period();
  if (period == 0) {
    if (n > 0) fn(std::int64_t{0}, row0, n);
    return;
  }
  const std::int64_t valid = src.row_valid();
  for (std::int64_t m = row0, end = row0 + n; m < end;) {
    const std::int64_t line = m / period, col = m % period;
    const std::int64_t stop = std::min(end, (line + 1) * period);
    if (col < valid) fn(m - row0, line * valid + col, std::min(stop, line * period + valid) - m);
    m = stop;
  }
}

struct Task {
  std::int64_t job;
  std::int64_t row0, row_groups;
  std::int64_t panel0, panel1;
};

void run_task(const Task& task, const GemmJob& job, const PackedPwlqWeights& w,
              const IsaKernels& isa, const EpilogueConstants* ec) {
  Scratch& s = thread_scratch();
  const std::int64_t rows = task.row_groups * kQgemmRowGroup;
  const std::int64_t valid_rows = std::min(rows, job.source->rows() - task.row0);
  const std::int64_t ld = rows;
  std::uint8_t* xp = s.rows.get(static_cast<std::size_t>(task.row_groups * w.k_blocks * 64));
  std::int32_t* row_sums = s.row_sums.get(static_cast<std::size_t>(rows));
  job.source->pack(task.row0, task.row_groups, xp, row_sums, isa);
  const PackedRows x{xp, task.row_groups, w.k_blocks};
  std::uint8_t* planar = nullptr;
  if (w.tail_form == TailForm::Sparse && isa.planar) {
    planar = s.planar.get(static_cast<std::size_t>(w.k_blocks * kQgemmKBlock * 64));
    isa.planar(x, planar);
  }

  const std::size_t tile = static_cast<std::size_t>(kQgemmPanel * ld);
  std::int32_t* acc = s.acc.get(tile);
  const bool has_tail = w.tail_form != TailForm::None;
  std::int32_t* acc_t = has_tail ? s.acc_t.get(tile) : nullptr;
  const bool wide = w.max_abs_code > kNarrowCodeLimit;
  const std::int64_t runs = int16_run_groups(w.max_abs_code, wide);  // AVX2 splits wide codes
  const std::int64_t per_group = w.channels_per_group();
  const OutputSpec& out = job.out;

  const RowSource& src = *job.source;
  if (out.kind == OutputSpec::Kind::Accumulators && task.panel0 == 0) {
    for_each_output_run(src, task.row0, valid_rows,
                        [&](std::int64_t t, std::int64_t o, std::int64_t n) {
                          for (std::int64_t r = 0; r < n; ++r) out.r[o + r] = row_sums[t + r];
                        });
  }
  for (std::int64_t p = task.panel0; p < task.panel1; ++p) {
    const std::int64_t c0 = p * kQgemmPanel;  // first channel of the panel within the group
    const std::int64_t nc = std::min<std::int64_t>(kQgemmPanel, per_group - c0);
    const std::int64_t gc0 = job.group * per_group + c0;  // global channel index
    const std::int64_t panel = job.group * w.panels_per_group + p;
    const std::int64_t poff = panel * w.panel_bytes();
    const std::int32_t* lane_sums = w.dense_sums.data() + panel * kQgemmPanel;
    isa.dense(DenseArgs{x, w.dense.data() + poff, wide, runs, lane_sums, acc, ld});
    if (w.tail_form == TailForm::Sparse) {
      isa.tail(TailArgs{x, nc, w.tail_start.data() + gc0, w.tail_blocks.data(), wide, runs,
                        w.sum_tail.data() + gc0, acc_t, ld, planar, w.quad_start.data() + gc0,
                        w.tail_quads.data()});
    } else if (w.tail_form == TailForm::Dense) {
      isa.dense(DenseArgs{x, w.dense_tail.data() + poff, wide, runs,
                          w.dense_tail_sums.data() + panel * kQgemmPanel, acc_t, ld});
    }

    if (out.kind == OutputSpec::Kind::Accumulators) {
      for_each_output_run(src, task.row0, valid_rows,
                          [&](std::int64_t t0, std::int64_t o0, std::int64_t n) {
        for (std::int64_t j = 0; j < nc; ++j) {
          for (std::int64_t r = 0; r < n; ++r) {
            const std::int64_t i = j * ld + t0 + r;
            const std::int64_t o = (o0 + r) * out.row_stride + (c0 + j) * out.channel_stride;
            out.a_c[o] = acc[i];
            out.a_t[o] = has_tail ? acc_t[i] : 0;
          }
        }
      });
      continue;
    }

    EpilogueArgs e{};
    e.acc = acc;
    e.acc_t = acc_t;
    e.row_sums = row_sums;
    e.row_zero = ec->row_zero;
    e.channels = nc;
    e.rows = rows;
    e.ld = ld;
    e.zero_c = ec->zero_c.data() + gc0;
    e.zero_t = ec->zero_t.data() + gc0;
    e.alpha_c = ec->alpha_c.data() + gc0;
    e.alpha_t = ec->alpha_t.data() + gc0;
    e.gamma = ec->gamma.data() + gc0;
    e.beta = ec->beta.data() + gc0;
    e.out_scale = ec->out_scale;
    e.out_zero = ec->out_zero;
    e.out_low = ec->out_low;
    if (out.kind == OutputSpec::Kind::Float && isa.epilogue_store && nc == kQgemmPanel &&
        out.channel_stride == 1 && !out.residual && !out.relu) {
      // Row-major output of whole panels: the epilogue stores its rows itself, no float tile.
      for_each_output_run(src, task.row0, valid_rows,
                          [&](std::int64_t t0, std::int64_t o0, std::int64_t n) {
        isa.epilogue_store(EpilogueStoreArgs{e, t0, n, out.y + o0 * out.row_stride + c0,
                                             out.row_stride});
      });
    } else if (out.kind == OutputSpec::Kind::Float) {
      float* y = s.y.get(tile);
      e.y = y;
      isa.epilogue(e);
      for_each_output_run(src, task.row0, valid_rows,
                          [&](std::int64_t t0, std::int64_t o0, std::int64_t n) {
        for (std::int64_t j = 0; j < nc; ++j) {
          float* dst = out.y + o0 * out.row_stride + (c0 + j) * out.channel_stride;
          const float* tile_row = y + j * ld + t0;
          if (out.residual || out.relu) {
            const float* res =
                out.residual ? out.residual + o0 * out.row_stride + (c0 + j) * out.channel_stride
                             : nullptr;
            for (std::int64_t r = 0; r < n; ++r) {
              float v = tile_row[r];
              if (res) v = v + res[r * out.row_stride];
              dst[r * out.row_stride] = out.relu ? (v > 0.0f ? v : 0.0f) : v;
            }
          } else if (out.row_stride == 1) {
            std::memcpy(dst, tile_row, static_cast<std::size_t>(n) * sizeof(float));
          } else if (isa.store_rows && nc == kQgemmPanel && out.channel_stride == 1) {
            isa.store_rows(StoreRowsArgs{tile_row, ld, n, dst, out.row_stride});
            break;  // all 8 channels stored
          } else {
            for (std::int64_t r = 0; r < n; ++r) dst[r * out.row_stride] = tile_row[r];
          }
        }
      });
    } else {
      std::uint8_t* q = s.q.get(tile);
      e.q = q;
      isa.epilogue(e);
      for_each_output_run(src, task.row0, valid_rows,
                          [&](std::int64_t t0, std::int64_t o0, std::int64_t n) {
        for (std::int64_t j = 0; j < nc; ++j) {
          std::uint8_t* dst = out.q + o0 * out.row_stride + (c0 + j) * out.channel_stride;
          const std::uint8_t* tile_row = q + j * ld + t0;
          if (out.row_stride == 1) {
            std::memcpy(dst, tile_row, static_cast<std::size_t>(n));
          } else {
            for (std::int64_t r = 0; r < n; ++r) dst[r * out.row_stride] = tile_row[r];
          }
        }
      });
    }
  }
}

}  // namespace

void run_gemm_jobs(const std::vector<GemmJob>& jobs, const PackedPwlqWeights& w,
                   const PwlqEpilogue* epilogue, const Requantization* requant,
                   const QgemmOptions& options) {
  const IsaKernels& isa = kernels_for(options.path);
  if (options.num_threads < 0) {
    throw std::invalid_argument("num_threads must be >= 0, got " +
                                std::to_string(options.num_threads));
  }
  // Row blocks of up to 3 row groups, sized evenly (49 rows: 2 + 2 groups, not 3 + 1).
  // Reused across the calls of this thread: a small layer should not pay for allocations.
  thread_local std::vector<Task> blocks, tasks;
  thread_local EpilogueConstants constants;
  blocks.clear();
  tasks.clear();
  double macs = 0.0;
  for (std::int64_t j = 0; j < static_cast<std::int64_t>(jobs.size()); ++j) {
    const std::int64_t m = jobs[j].source->rows();
    if (m <= 0) continue;
    macs += static_cast<double>(m) * w.channels_per_group() * w.depth;
    const std::int64_t groups = (m + kQgemmRowGroup - 1) / kQgemmRowGroup;
    // Blocks of 3 row groups; with a 4-group tile, blocks of 3 and 4 where threes alone would
    // leave blocks of 2 (4 groups: one block of 4, not 2 + 2).
    const std::int64_t count =
        isa.max_row_groups >= 4 && groups % kMaxRowGroupsPerBlock != 0
            ? (groups + 3) / 4
            : (groups + kMaxRowGroupsPerBlock - 1) / kMaxRowGroupsPerBlock;
    std::int64_t g0 = 0;
    for (std::int64_t b = 0; b < count; ++b) {
      const std::int64_t g1 = groups * (b + 1) / count;
      blocks.push_back(Task{j, g0 * kQgemmRowGroup, g1 - g0, 0, w.panels_per_group});
      g0 = g1;
    }
  }
  if (blocks.empty()) return;

  ThreadPool& pool = kernel_thread_pool();
  int threads = options.num_threads;
  if (threads == 0) {
    threads = std::min<int>(hardware_thread_count(),
                            std::max<int>(1, static_cast<int>(macs / kMinMacsPerThread)));
  } else {
    pool.reserve(threads);
  }
  // Few row blocks for the threads: split the channel panels as well (each part packs its rows
  // again, which costs K bytes per row against 8·K multiply-adds per row and panel).
  const std::int64_t want = 2 * static_cast<std::int64_t>(threads);
  const std::int64_t nblocks = static_cast<std::int64_t>(blocks.size());
  const std::int64_t splits = threads > 1 && nblocks < want
                                  ? std::min(w.panels_per_group, (want + nblocks - 1) / nblocks)
                                  : 1;
  for (const Task& b : blocks) {
    for (std::int64_t s = 0; s < splits; ++s) {
      Task t = b;
      t.panel0 = w.panels_per_group * s / splits;
      t.panel1 = w.panels_per_group * (s + 1) / splits;
      if (t.panel1 > t.panel0) tasks.push_back(t);
    }
  }

  const EpilogueConstants* ec = nullptr;
  if (epilogue) {
    constants.reset(w, *epilogue, requant);
    ec = &constants;
  }
  // A lambda names thread_local variables directly instead of capturing them, so the workers
  // get the caller's task list through a plain pointer.
  const Task* task_list = tasks.data();
  auto run = [&jobs, &w, &isa, ec, task_list](std::int64_t i) {
    const Task& t = task_list[i];
    run_task(t, jobs[t.job], w, isa, ec);
  };
  if (threads <= 1) {
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(tasks.size()); ++i) run(i);
  } else {
    pool.parallel_for(static_cast<std::int64_t>(tasks.size()), threads, run);
  }
}

}  // namespace qgemm_detail

// ------------------------------------------------------------------------------- entry points --

namespace {

void check_gemm(const PackedPwlqWeights& w, std::int64_t rows) {
  if (w.groups != 1) {
    throw std::invalid_argument("qgemm: weights packed with groups=" + std::to_string(w.groups) +
                                " are convolution weights; GEMM needs groups=1");
  }
  if (rows < 0) throw std::invalid_argument("qgemm: M must be >= 0");
}

void check_epilogue(const PwlqEpilogue& e) {
  if (!e.s1) throw std::invalid_argument("qgemm: the center scale s1 is required");
  if (e.zx < 0 || e.zx > 255) {
    throw std::invalid_argument("qgemm: zero point zx=" + std::to_string(e.zx) +
                                " is outside 0..255");
  }
}

std::vector<qgemm_detail::GemmJob> gemm_job(const qgemm_detail::RowSource& src,
                                            const PackedPwlqWeights& w,
                                            qgemm_detail::OutputSpec out) {
  out.row_stride = w.channels;
  out.channel_stride = 1;
  return {qgemm_detail::GemmJob{&src, 0, out}};
}

}  // namespace

void qgemm_accumulators(const std::uint8_t* x, std::int64_t rows, const PackedPwlqWeights& w,
                        std::int32_t* a_c, std::int32_t* a_t, std::int32_t* r,
                        const QgemmOptions& options) {
  check_gemm(w, rows);
  qgemm_detail::MatrixRows src(x, rows, w.depth);
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Accumulators;
  out.a_c = a_c;
  out.a_t = a_t;
  out.r = r;
  qgemm_detail::run_gemm_jobs(gemm_job(src, w, out), w, nullptr, nullptr, options);
}

void qgemm(const std::uint8_t* x, std::int64_t rows, const PackedPwlqWeights& w,
           const PwlqEpilogue& epilogue, float* y, const QgemmOptions& options) {
  check_gemm(w, rows);
  check_epilogue(epilogue);
  qgemm_detail::MatrixRows src(x, rows, w.depth);
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Float;
  out.y = y;
  qgemm_detail::run_gemm_jobs(gemm_job(src, w, out), w, &epilogue, nullptr, options);
}

void qgemm_requantized(const std::uint8_t* x, std::int64_t rows, const PackedPwlqWeights& w,
                       const PwlqEpilogue& epilogue, const Requantization& requant,
                       std::uint8_t* q, const QgemmOptions& options) {
  check_gemm(w, rows);
  check_epilogue(epilogue);
  if (!(requant.scale > 0.0f) || requant.zero_point < 0 || requant.zero_point > 255) {
    throw std::invalid_argument("qgemm: output scale must be > 0 and zero point in 0..255");
  }
  qgemm_detail::MatrixRows src(x, rows, w.depth);
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Requantized;
  out.q = q;
  qgemm_detail::run_gemm_jobs(gemm_job(src, w, out), w, &epilogue, &requant, options);
}

}  // namespace prism
