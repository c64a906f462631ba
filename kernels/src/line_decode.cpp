// Line-sensor kernels: path selection, argument checks, per-call scratch, threads over the batch,
// and the parts that are not per-ISA (validity from means, peaks, patches). The per-scan work
// lives in line_decode_body.inc, compiled once per instruction set; semantics in
// prism/line_decode.hpp.
#include "prism/line_decode.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "prism/cpu_features.hpp"
#include "aligned_buffer.hpp"

namespace prism {
namespace line {

// ------------------------------------------------------------------------------------ paths --

const char* line_path_name(LinePath path) {
  switch (path) {
    case LinePath::Auto: return "auto";
    case LinePath::Scalar: return "scalar";
    case LinePath::Avx2: return "avx2";
    case LinePath::Avx512: return "avx512";
    case LinePath::Neon: return "neon";
  }
  return "?";
}

LinePath parse_line_path(const std::string& name) {
  for (LinePath p :
       {LinePath::Auto, LinePath::Scalar, LinePath::Avx2, LinePath::Avx512, LinePath::Neon}) {
    if (name == line_path_name(p)) return p;
  }
  throw std::invalid_argument("unknown line kernel path '" + name +
                              "'; expected auto, scalar, avx2, avx512 or neon");
}

namespace {

const detail::IsaKernels* built(LinePath path) {
  switch (path) {
    case LinePath::Scalar: return detail::scalar_line_kernels();
    case LinePath::Avx2: return detail::avx2_line_kernels();
    case LinePath::Avx512: return detail::avx512_line_kernels();
    case LinePath::Neon: return detail::neon_line_kernels();
    case LinePath::Auto: break;
  }
  return nullptr;
}

bool cpu_has(LinePath path) {
  const CpuFeatures& f = cpu_features();
  switch (path) {
    case LinePath::Avx2: return f.avx2;
    case LinePath::Avx512: return f.avx512f;  // detection requires BW and VL with F
    case LinePath::Neon: return f.neon;
    case LinePath::Scalar:
    case LinePath::Auto: return true;
  }
  return false;
}

}  // namespace

std::string line_path_unavailable_reason(LinePath path) {
  if (path == LinePath::Auto || path == LinePath::Scalar) return "";
  const std::string name = line_path_name(path);
  if (!built(path)) {
    return name + ": not built into this binary (it was compiled for " + cpu_features().arch + ")";
  }
  if (!cpu_has(path)) {
    static const char* what[] = {"", "", "AVX2 and FMA", "AVX-512 F, BW and VL",
                                 "Advanced SIMD (NEON)"};
    return name + ": this CPU lacks " + what[static_cast<int>(path)] +
           " (or PRISM_DISABLE_SIMD=1 / PRISM_MAX_ISA caps it)";
  }
  return "";
}

LinePath line_best_path() {
  for (LinePath p : {LinePath::Avx512, LinePath::Avx2, LinePath::Neon}) {
    if (line_path_unavailable_reason(p).empty()) return p;
  }
  return LinePath::Scalar;
}

namespace {

const detail::IsaKernels& kernels_for(LinePath path) {
  if (path == LinePath::Auto) path = line_best_path();
  const std::string why = line_path_unavailable_reason(path);
  if (!why.empty()) throw std::invalid_argument("line kernel path " + why);
  return *built(path);
}

void check_shape(const ScanShape& s, const char* who) {
  if (s.batch < 0 || s.rois < 1 || s.rois > 127 || s.rows < 1 || s.pixels < 1) {
    throw std::invalid_argument(std::string(who) + ": scans must be (N, R, h, Q, 3) with N >= 0, "
                                "1 <= R <= 127, h >= 1, Q >= 1; got N=" +
                                std::to_string(s.batch) + " R=" + std::to_string(s.rois) +
                                " h=" + std::to_string(s.rows) + " Q=" + std::to_string(s.pixels));
  }
  // 255 * R * h must fit the u32 accumulators of the gray profile.
  if (s.rois * s.rows > (std::int64_t{1} << 24)) {
    throw std::invalid_argument(std::string(who) + ": R * h = " +
                                std::to_string(s.rois * s.rows) + " rows is too many");
  }
}

void check_thresholds(const LineThresholds& t, const char* who) {
  if (!std::isfinite(t.intensity_threshold) || t.intensity_threshold < 0.0f ||
      !std::isfinite(t.channel_floor) || t.channel_floor < 0.0f || t.saturation_level < 1 ||
      t.saturation_level > 255) {
    throw std::invalid_argument(std::string(who) +
                                ": thresholds must be finite and >= 0, saturation level 1..255");
  }
}

// The scratch of one thread (see detail::Scratch), owning its memory. Its arrays start 64-byte
// aligned and are cut at multiples of kChunk elements, so no vector the decoder loads from them
// straddles two cache lines.
struct ScratchBuffers {
  ::prism::detail::AlignedBuffer<std::uint32_t> sums_;
  ::prism::detail::AlignedBuffer<std::uint8_t> bytes_;
  ::prism::detail::AlignedBuffer<float> floats_;
  detail::Scratch view{};

  explicit ScratchBuffers(std::int64_t rois) {
    std::uint32_t* sums = sums_.get(static_cast<std::size_t>(3 * kChunk + 4 * kChunk));
    std::uint8_t* bytes =
        bytes_.get(static_cast<std::size_t>(3 * kChunk + rois * kChunk + 3 * kChunk));
    float* floats =
        floats_.get(static_cast<std::size_t>(rois * 3 * kChunk + rois * kChunk + 8 * kChunk));
    view.sums = sums;
    view.best = reinterpret_cast<std::int32_t*>(view.sums + 3 * kChunk);
    view.ok = view.best + kChunk;
    view.ka = view.ok + kChunk;
    view.kb = view.ka + kChunk;
    view.maxima = bytes;
    view.bits = view.maxima + 3 * kChunk;
    view.sat = view.bits + rois * kChunk;
    view.top_bits = view.sat + kChunk;
    view.any = view.top_bits + kChunk;
    view.means = floats;
    view.peak = view.means + rois * 3 * kChunk;
    view.top = view.peak + rois * kChunk;
    view.num = view.top + kChunk;
    view.den = view.num + kChunk;
    view.best_w = view.den + kChunk;
    view.best_v = view.best_w + kChunk;
    view.t1 = view.best_v + kChunk;
    view.t2 = view.t1 + kChunk;
    view.value = view.t2 + kChunk;
  }
};

// Runs per_scan(scan_index, args) for every scan, on `threads` threads in contiguous blocks;
// an exception in a worker is rethrown after all threads are joined.
template <typename PerScan>
void run_batch(const std::uint8_t* scans, const ScanShape& shape, int num_threads,
               PerScan per_scan) {
  if (shape.batch == 0) return;
  std::int64_t threads = num_threads > 0
                             ? num_threads
                             : std::max<std::int64_t>(1, std::thread::hardware_concurrency());
  threads = std::max<std::int64_t>(1, std::min(threads, shape.batch));
  const std::int64_t scan_bytes = shape.rois * shape.rows * shape.pixels * 3;
  auto block = [&](std::int64_t first, std::int64_t last) {
    ScratchBuffers scratch(shape.rois);
    detail::ScanArgs args{nullptr, shape.rois, shape.rows, shape.pixels, &scratch.view};
    for (std::int64_t n = first; n < last; ++n) {
      args.scan = scans + n * scan_bytes;
      per_scan(n, args);
    }
  };
  if (threads == 1) {
    block(0, shape.batch);
    return;
  }
  std::vector<std::exception_ptr> errors(threads);
  auto run = [&](std::int64_t t) {
    try {
      block(shape.batch * t / threads, shape.batch * (t + 1) / threads);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(threads - 1);
  try {
    for (std::int64_t t = 1; t < threads; ++t) workers.emplace_back(run, t);
  } catch (...) {
    for (auto& w : workers) w.join();
    throw;
  }
  run(0);
  for (auto& w : workers) w.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

// ------------------------------------------------------------------------------ entry points --

void roi_means(const std::uint8_t* scans, const ScanShape& shape, float* means,
               const LineOptions& options) {
  check_shape(shape, "roi_means");
  const detail::IsaKernels& k = kernels_for(options.path);
  const std::int64_t per_scan = shape.rois * shape.pixels * 3;
  run_batch(scans, shape, options.num_threads, [&](std::int64_t n, const detail::ScanArgs& a) {
    k.means(a, means + n * per_scan);
  });
}

void validity(const float* means, std::int64_t batch, std::int64_t rois, std::int64_t pixels,
              const LineThresholds& th, std::uint8_t* valid, std::uint8_t* flags) {
  check_shape(ScanShape{batch, rois, 1, pixels}, "validity");
  check_thresholds(th, "validity");
  const float t = th.intensity_threshold, floor = th.channel_floor;
  for (std::int64_t n = 0; n < batch; ++n) {
    for (std::int64_t y = 0; y < pixels; ++y) {
      float top = -1.0f;
      int top_count = 0;
      for (std::int64_t r = 0; r < rois; ++r) {
        const float* u = means + ((n * rois + r) * pixels + y) * 3;
        const float peak = std::max(std::max(u[0], u[1]), u[2]);
        const int count = (u[0] > floor) + (u[1] > floor) + (u[2] > floor);
        valid[(n * rois + r) * pixels + y] = peak > t && count >= 2;
        if (r == 0 || peak > top) {
          top = peak;
          top_count = count;
        }
      }
      const bool dark = !(top > t);
      const bool single = !dark && top_count < 2;
      flags[n * pixels + y] =
          static_cast<std::uint8_t>((dark ? kDark : 0) | (single ? kSingleChannel : 0));
    }
  }
}

void line_features(const std::uint8_t* scans, const ScanShape& shape, const LineThresholds& th,
                   float* features, std::uint8_t* valid, std::uint8_t* flags,
                   const LineOptions& options) {
  check_shape(shape, "line_features");
  check_thresholds(th, "line_features");
  const detail::IsaKernels& k = kernels_for(options.path);
  const std::int64_t q = shape.pixels, stride = 3 * shape.rois + 1;
  run_batch(scans, shape, options.num_threads, [&](std::int64_t n, const detail::ScanArgs& a) {
    k.features(a, th, features + n * q * stride, valid + n * q, flags + n * q);
  });
}

void gray_profile(const std::uint8_t* scans, const ScanShape& shape, float* profile,
                  const LineOptions& options) {
  check_shape(shape, "gray_profile");
  const detail::IsaKernels& k = kernels_for(options.path);
  run_batch(scans, shape, options.num_threads, [&](std::int64_t n, const detail::ScanArgs& a) {
    k.gray(a, profile + n * shape.pixels);
  });
}

std::vector<Peak> find_peaks(const float* p, std::int64_t pixels, float threshold,
                             std::int64_t min_distance) {
  if (pixels < 1 || min_distance < 1) {
    throw std::invalid_argument("find_peaks: need Q >= 1 and min_distance >= 1");
  }
  std::vector<std::int64_t> candidates;
  for (std::int64_t y = 0; y < pixels; ++y) {
    const bool left_ok = y == 0 || p[y] >= p[y - 1];
    const bool right_ok = y == pixels - 1 || p[y] > p[y + 1];
    if (p[y] > threshold && left_ok && right_ok) candidates.push_back(y);
  }
  // Strongest first; stable keeps ties in ascending y.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](std::int64_t a, std::int64_t b) { return p[a] > p[b]; });
  std::vector<std::uint8_t> taken(pixels, 0);
  std::vector<std::int64_t> kept;
  for (std::int64_t y : candidates) {
    const std::int64_t lo = std::max<std::int64_t>(0, y - min_distance + 1);
    const std::int64_t hi = std::min(pixels, y + min_distance);
    bool free = true;
    for (std::int64_t i = lo; i < hi && free; ++i) free = !taken[i];
    if (free) {
      taken[y] = 1;
      kept.push_back(y);
    }
  }
  std::sort(kept.begin(), kept.end());
  std::vector<Peak> peaks;
  peaks.reserve(kept.size());
  for (std::int64_t y : kept) {
    float sub = static_cast<float>(y);
    if (y > 0 && y < pixels - 1) {
      const float a = p[y - 1], b = p[y], c = p[y + 1];
      const float den = (a - 2.0f * b) + c;
      if (den < 0.0f) sub = static_cast<float>(y) + (0.5f * (a - c)) / den;
    }
    peaks.push_back(Peak{y, sub});
  }
  return peaks;
}

void extract_patches(const std::uint8_t* scan, std::int64_t rois, std::int64_t rows,
                     std::int64_t pixels, const std::int64_t* y_int, std::int64_t count,
                     std::int64_t width, float* patches, std::uint8_t* in_bounds) {
  check_shape(ScanShape{1, rois, rows, pixels}, "extract_patches");
  if (width < 1 || width % 2 == 0) {
    throw std::invalid_argument("extract_patches: patch width must be odd and >= 1, got " +
                                std::to_string(width));
  }
  const std::int64_t half = width / 2, out_w = width * rois, plane = rows * out_w;
  for (std::int64_t k = 0; k < count; ++k) {
    const std::int64_t y = y_int[k];
    if (y < 0 || y >= pixels) {
      throw std::invalid_argument("extract_patches: peak " + std::to_string(y) +
                                  " outside [0, Q)");
    }
    float* out = patches + k * 3 * plane;
    int peak = 0;
    for (std::int64_t r = 0; r < rois; ++r) {
      for (std::int64_t i = 0; i < rows; ++i) {
        const std::uint8_t* row = scan + ((r * rows + i) * pixels) * 3;
        for (std::int64_t j = 0; j < width; ++j) {
          const std::int64_t yy = y - half + j;
          const bool inside = yy >= 0 && yy < pixels;
          for (int c = 0; c < 3; ++c) {
            const int v = inside ? row[yy * 3 + c] : 0;
            peak = std::max(peak, v);
            out[c * plane + i * out_w + r * width + j] = static_cast<float>(v);
          }
        }
      }
    }
    if (peak > 0) {
      const float m = static_cast<float>(peak);
      for (std::int64_t i = 0; i < 3 * plane; ++i) out[i] = out[i] / m;
    }
    in_bounds[k] = y - half >= 0 && y + half < pixels;
  }
}

void lut_decode(const std::uint8_t* scans, const ScanShape& shape, const LineThresholds& th,
                const LineLut& lut, float* xv, std::int8_t* roi, std::uint8_t* flags,
                const LineOptions& options, LineCounts* counts) {
  check_shape(shape, "lut_decode");
  check_thresholds(th, "lut_decode");
  if (!lut.table || lut.ny < 1 || lut.nc < 2 || !(lut.dy > 0.0f) || !std::isfinite(lut.dy) ||
      !std::isfinite(lut.y0)) {
    throw std::invalid_argument("lut_decode: the LUT needs a table, ny >= 1, nc >= 2, finite y0 "
                                "and dy > 0");
  }
  if (lut.ny * lut.nc * lut.nc > 0x7fffffff) {
    throw std::invalid_argument("lut_decode: one ROI's table (ny * nc * nc = " +
                                std::to_string(lut.ny * lut.nc * lut.nc) +
                                " floats) exceeds the int32 offsets of the decoder");
  }
  const detail::IsaKernels& k = kernels_for(options.path);
  // The y grid cell of every sensor pixel, computed once per call (the twin's float32 steps).
  const std::int64_t q = shape.pixels;
  std::vector<std::int32_t> iy(q), iy1(q);
  std::vector<float> ty(q);
  const float top = static_cast<float>(lut.ny - 1);
  for (std::int64_t y = 0; y < q; ++y) {
    float f = (static_cast<float>(y) - lut.y0) / lut.dy;
    f = f < 0.0f ? 0.0f : (f > top ? top : f);
    std::int64_t i = static_cast<std::int64_t>(f);
    i = std::min<std::int64_t>(i, std::max<std::int64_t>(lut.ny - 2, 0));
    // As table offsets of the y cell's plane (nc·nc floats), so the decoder only adds the
    // chromaticity cell.
    iy[y] = static_cast<std::int32_t>(i * lut.nc * lut.nc);
    iy1[y] = static_cast<std::int32_t>(std::min<std::int64_t>(i + 1, lut.ny - 1) * lut.nc * lut.nc);
    ty[y] = f - static_cast<float>(i);
  }
  const detail::LutGrid grid{&lut, iy.data(), iy1.data(), ty.data()};
  // Per scan, then added to the call's totals (scans run on several threads).
  std::atomic<std::int64_t> totals[5] = {0, 0, 0, 0, 0};
  run_batch(scans, shape, options.num_threads, [&](std::int64_t n, const detail::ScanArgs& a) {
    LineCounts c;
    k.decode(a, th, grid, xv + n * q, roi + n * q, flags + n * q, &c);
    totals[0] += c.decoded;
    totals[1] += c.dark;
    totals[2] += c.single_channel;
    totals[3] += c.saturated;
    totals[4] += c.no_lut;
  });
  if (counts) {
    counts->decoded = totals[0];
    counts->dark = totals[1];
    counts->single_channel = totals[2];
    counts->saturated = totals[3];
    counts->no_lut = totals[4];
  }
}

std::uint64_t read_checksum(const std::uint8_t* bytes, std::int64_t count) {
  // XOR of 64-bit words in eight independent lanes: the compiler turns the loop into wide
  // vector XORs, so the probe is bound by how fast the memory delivers the bytes.
  std::uint64_t lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 64 <= count; i += 64) {
    for (int k = 0; k < 8; ++k) {
      std::uint64_t v;
      std::memcpy(&v, bytes + i + 8 * k, 8);
      lanes[k] ^= v;
    }
  }
  std::uint64_t sum = 0;
  for (; i < count; ++i) sum ^= static_cast<std::uint64_t>(bytes[i]) << (8 * (i % 8));
  for (std::uint64_t v : lanes) sum ^= v;
  return sum;
}

}  // namespace line
}  // namespace prism
