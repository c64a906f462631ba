// Hand-computed cases of the line-sensor kernels (prism/line_decode.hpp), on every path this CPU
// runs (a path it lacks is reported as skipped with the reason). The exhaustive comparison
// against the NumPy twins lives in tests/lines/test_line_preprocess.py and test_line_lut.py.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/line_decode.hpp"

namespace {

using namespace prism::line;

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

// A scan (R, h, Q, 3) of zeros with setters.
struct Scan {
  std::int64_t rois, rows, pixels;
  std::vector<std::uint8_t> data;
  Scan(std::int64_t r, std::int64_t h, std::int64_t q)
      : rois(r), rows(h), pixels(q), data(static_cast<size_t>(r * h * q * 3), 0) {}
  void set(std::int64_t r, std::int64_t i, std::int64_t y, int red, int green, int blue) {
    std::uint8_t* p = &data[static_cast<size_t>(((r * rows + i) * pixels + y) * 3)];
    p[0] = static_cast<std::uint8_t>(red);
    p[1] = static_cast<std::uint8_t>(green);
    p[2] = static_cast<std::uint8_t>(blue);
  }
  ScanShape shape() const { return ScanShape{1, rois, rows, pixels}; }
};

void means_are_row_averages(LinePath path) {
  const std::string tag = std::string("[") + line_path_name(path) + "] ";
  Scan s(2, 2, 3);
  s.set(0, 0, 1, 10, 20, 30);
  s.set(0, 1, 1, 11, 20, 255);
  s.set(1, 1, 2, 1, 0, 0);
  std::vector<float> m(2 * 3 * 3, -1.0f);
  roi_means(s.data.data(), s.shape(), m.data(), LineOptions{path, 1});
  check(m[3] == 10.5f && m[4] == 20.0f && m[5] == 142.5f, tag + "ROI 0, y 1 is the row mean");
  check(m[0] == 0.0f && m[9 + 6] == 0.5f && m[9 + 7] == 0.0f, tag + "other pixels");
}

void validity_flags_and_features(LinePath path) {
  const std::string tag = std::string("[") + line_path_name(path) + "] ";
  // y 0: dark; y 1: ROI 0 bright, two channels (valid); y 2: ROI 1 brightest but only red
  // (single channel), ROI 0 valid; y 3: saturated byte in ROI 1, ROI 1 valid.
  Scan s(2, 1, 4);
  s.set(0, 0, 0, 5, 5, 5);
  s.set(0, 0, 1, 30, 40, 0);
  s.set(0, 0, 2, 25, 25, 0);
  s.set(1, 0, 2, 200, 0, 0);
  s.set(1, 0, 3, 255, 100, 0);
  LineThresholds th;  // t = 20, floor = 4, saturation 255
  std::vector<float> f(4 * 7, -1.0f);
  std::vector<std::uint8_t> valid(4, 9), flags(4, 9);
  line_features(s.data.data(), s.shape(), th, f.data(), valid.data(), flags.data(),
                LineOptions{path, 1});
  check(valid[0] == 0 && valid[1] == 1 && valid[2] == 1 && valid[3] == 1, tag + "valid y");
  check(flags[0] == kDark && flags[1] == 0 && flags[2] == kSingleChannel &&
            flags[3] == kSaturated,
        tag + "flags");
  // y 1, ROI 0: (30, 40, 0) / 50.
  check(f[7 + 0] == 0.6f && f[7 + 1] == 0.8f && f[7 + 2] == 0.0f, tag + "unit colour");
  check(f[7 + 3] == 0.0f && f[7 + 6] == 1.0f / 3.0f, tag + "invalid ROI zeros, y/(Q-1)");
  check(f[6] == 0.0f && f[3 * 7 + 6] == 1.0f, tag + "y feature at the ends");
}

void gray_profile_is_the_mean(LinePath path) {
  const std::string tag = std::string("[") + line_path_name(path) + "] ";
  Scan s(2, 2, 2);
  s.set(0, 0, 1, 12, 0, 0);
  s.set(1, 1, 1, 0, 0, 12);
  std::vector<float> g(2, -1.0f);
  gray_profile(s.data.data(), s.shape(), g.data(), LineOptions{path, 1});
  check(g[0] == 0.0f && g[1] == 2.0f, tag + "gray profile = 24 / 12");
}

void lut_decode_at_grid_nodes(LinePath path) {
  const std::string tag = std::string("[") + line_path_name(path) + "] ";
  // nc = 3 (c = 0, 0.5, 1), ny = 2 over y in [0, 2], R = 2. Table value = 100 r + 10 k + i + j/10.
  const std::int64_t rois = 2, ny = 2, nc = 3;
  std::vector<float> table(rois * ny * nc * nc);
  for (std::int64_t r = 0; r < rois; ++r)
    for (std::int64_t k = 0; k < ny; ++k)
      for (std::int64_t i = 0; i < nc; ++i)
        for (std::int64_t j = 0; j < nc; ++j)
          table[((r * ny + k) * nc + i) * nc + j] = 100.0f * r + 10.0f * k + i + 0.1f * j;
  // ROI 1 has no support at (k = 1, i = 1, j = 1).
  table[((1 * ny + 1) * nc + 1) * nc + 1] = std::nanf("");
  LineLut lut;
  lut.table = table.data();
  lut.ny = ny;
  lut.nc = nc;
  lut.y0 = 0.0f;
  lut.dy = 2.0f;
  // y 0: ROI 0 colour (50, 50, 0) -> c = (0.5, 0.5) -> node (0, 1, 1) = 1.1.
  // y 2: ROI 0 (100, 0, 100) -> (0.5, 0) -> node (1, 1, 0) = 11; ROI 1 (50, 50, 0) -> NaN.
  // y 1: ROI 1 (60, 60, 0) only -> (0.5, 0.5) at fy = 0.5: lerp(101.1, NaN) = NaN -> no LUT.
  Scan s(2, 1, 3);
  s.set(0, 0, 0, 50, 50, 0);
  s.set(0, 0, 2, 100, 0, 100);
  s.set(1, 0, 2, 50, 50, 0);
  s.set(1, 0, 1, 60, 60, 0);
  LineThresholds th;
  for (bool weighted : {false, true}) {
    lut.weighted = weighted;
    std::vector<float> xv(3, -1.0f);
    std::vector<std::int8_t> roi(3, 9);
    std::vector<std::uint8_t> flags(3, 9);
    lut_decode(s.data.data(), s.shape(), th, lut, xv.data(), roi.data(), flags.data(),
               LineOptions{path, 1});
    check(std::fabs(xv[0] - 1.1f) < 1e-6f && roi[0] == 0, tag + "node value at y 0");
    check(xv[2] == 11.0f && roi[2] == 0 && flags[2] == 0, tag + "NaN ROI left out at y 2");
    check(std::isnan(xv[1]) && roi[1] == -1 && flags[1] == kNoLut, tag + "no LUT at y 1");
  }
}

void decode_weighted_average() {
  // One-node-per-ROI tables (ny = 1, constant over chromaticity): ROI 0 = 10, ROI 1 = 20.
  std::vector<float> table(2 * 1 * 2 * 2);
  for (int i = 0; i < 4; ++i) {
    table[i] = 10.0f;
    table[4 + i] = 20.0f;
  }
  LineLut lut;
  lut.table = table.data();
  lut.ny = 1;
  lut.nc = 2;
  Scan s(2, 1, 1);
  s.set(0, 0, 0, 30, 30, 0);   // weight 30
  s.set(1, 0, 0, 90, 90, 0);   // weight 90, brightest (c = 0.5: exact interpolation weights)
  float xv = 0.0f;
  std::int8_t roi = 0;
  std::uint8_t flags = 9;
  lut.weighted = true;
  lut_decode(s.data.data(), s.shape(), LineThresholds{}, lut, &xv, &roi, &flags);
  check(xv == (30.0f * 10.0f + 90.0f * 20.0f) / 120.0f && roi == 1 && flags == 0,
        "weighted = (30*10 + 90*20) / 120");
  lut.weighted = false;
  lut_decode(s.data.data(), s.shape(), LineThresholds{}, lut, &xv, &roi, &flags);
  check(xv == 20.0f && roi == 1, "best = brightest ROI");
}

void peaks_and_patches() {
  const std::vector<float> p = {0, 5, 20, 10, 0, 0, 0, 30, 30, 0, 12, 0};
  const auto peaks = find_peaks(p.data(), static_cast<std::int64_t>(p.size()), 8.0f, 3);
  // Candidates 2 (20), 8 (30, right end of the plateau), 10 (12): 10 is within 3 of 8.
  check(peaks.size() == 2 && peaks[0].y == 2 && peaks[1].y == 8, "peaks and suppression");
  // y 2: a = 5, b = 20, c = 10: den = -25, offset 0.5 * (-5) / -25 = 0.1.
  check(peaks.size() == 2 && peaks[0].y_sub == 2.0f + (0.5f * -5.0f) / -25.0f, "sub-pixel");

  Scan s(2, 1, 4);
  s.set(0, 0, 0, 10, 0, 0);
  s.set(1, 0, 1, 0, 40, 0);
  const std::int64_t y[2] = {0, 1};
  std::vector<float> patches(2 * 3 * 1 * 6, -1.0f);
  std::uint8_t in_bounds[2] = {9, 9};
  extract_patches(s.data.data(), 2, 1, 4, y, 2, 3, patches.data(), in_bounds);
  // Peak 0: window y -1..1; ROI 0 red at column 1 (y 0), ROI 1 green at column 3 + 2 (y 1).
  check(patches[1] == 0.25f && patches[6 + 5] == 1.0f && patches[0] == 0.0f,
        "patch layout and L-inf normalisation");
  check(in_bounds[0] == 0 && in_bounds[1] == 1, "patch bounds");
}

void bad_arguments_throw() {
  std::vector<std::uint8_t> d(3, 0);
  float m[3];
  bool threw = false;
  try {
    roi_means(d.data(), ScanShape{1, 1, 0, 1}, m);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "h = 0 throws");
  threw = false;
  try {
    parse_line_path("sse9");
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "unknown path throws");
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i]) || (!std::isnan(a[i]) && a[i] != b[i])) return false;
  }
  return true;
}

// Every SIMD path gives the scalar path's bits on sparse random scans (several chunks of y, Q
// not a multiple of any vector width) and a LUT with holes.
void paths_agree_with_scalar(LinePath path) {
  const std::string tag = std::string("[") + line_path_name(path) + "] ";
  const std::int64_t n = 3, rois = 3, rows = 8, q = 601, ny = 9, nc = 17;
  std::mt19937 gen(7);
  std::vector<std::uint8_t> scans(static_cast<size_t>(n * rois * rows * q * 3));
  for (size_t i = 0; i < scans.size(); i += 3) {
    const bool lit = gen() % 3 == 0;
    for (int c = 0; c < 3; ++c) {
      scans[i + c] = static_cast<std::uint8_t>(lit ? gen() % 256 : gen() % 6);
    }
  }
  std::vector<float> table(static_cast<size_t>(rois * ny * nc * nc));
  for (float& v : table) {
    v = gen() % 10 == 0 ? std::nanf("") : static_cast<float>(gen() % 100000) / 97.0f;
  }
  const ScanShape shape{n, rois, rows, q};
  LineThresholds th;
  auto run = [&](LinePath p, bool weighted, std::vector<float>& xv, std::vector<std::int8_t>& roi,
                 std::vector<std::uint8_t>& flags, std::vector<float>& means,
                 std::vector<float>& features, std::vector<float>& gray) {
    LineLut lut;
    lut.table = table.data();
    lut.ny = ny;
    lut.nc = nc;
    lut.y0 = -3.0f;
    lut.dy = 77.5f;
    lut.weighted = weighted;
    xv.assign(n * q, 0.0f);
    roi.assign(n * q, 0);
    flags.assign(n * q, 0);
    means.assign(n * rois * q * 3, 0.0f);
    features.assign(n * q * (3 * rois + 1), 0.0f);
    gray.assign(n * q, 0.0f);
    std::vector<std::uint8_t> valid(n * q), fflags(n * q);
    LineCounts counts;
    lut_decode(scans.data(), shape, th, lut, xv.data(), roi.data(), flags.data(),
               LineOptions{p, 1}, &counts);
    // The kernel's counts are the outputs' counts (decoded = finite xv, one count per flag).
    LineCounts want;
    for (std::int64_t i = 0; i < n * q; ++i) {
      want.decoded += std::isfinite(xv[i]) ? 1 : 0;
      want.dark += (flags[i] & kDark) != 0;
      want.single_channel += (flags[i] & kSingleChannel) != 0;
      want.saturated += (flags[i] & kSaturated) != 0;
      want.no_lut += (flags[i] & kNoLut) != 0;
    }
    check(counts.decoded == want.decoded && counts.dark == want.dark &&
              counts.single_channel == want.single_channel &&
              counts.saturated == want.saturated && counts.no_lut == want.no_lut,
          std::string("[") + line_path_name(p) + "] counts equal the outputs' counts");
    roi_means(scans.data(), shape, means.data(), LineOptions{p, 2});
    line_features(scans.data(), shape, th, features.data(), valid.data(), fflags.data(),
                  LineOptions{p, 1});
    gray_profile(scans.data(), shape, gray.data(), LineOptions{p, 1});
  };
  for (bool weighted : {false, true}) {
    std::vector<float> xv0, m0, f0, g0, xv1, m1, f1, g1;
    std::vector<std::int8_t> r0, r1;
    std::vector<std::uint8_t> fl0, fl1;
    run(LinePath::Scalar, weighted, xv0, r0, fl0, m0, f0, g0);
    run(path, weighted, xv1, r1, fl1, m1, f1, g1);
    check(same_floats(xv0, xv1) && r0 == r1 && fl0 == fl1, tag + "decode equals scalar");
    check(m0 == m1 && f0 == f1 && g0 == g1, tag + "means, features, gray equal scalar");
  }
}

}  // namespace

int main() {
  for (LinePath path : {LinePath::Scalar, LinePath::Avx2, LinePath::Avx512, LinePath::Neon}) {
    const std::string why = line_path_unavailable_reason(path);
    if (!why.empty()) {
      std::printf("skipped %s\n", why.c_str());
      continue;
    }
    means_are_row_averages(path);
    validity_flags_and_features(path);
    gray_profile_is_the_mean(path);
    lut_decode_at_grid_nodes(path);
    paths_agree_with_scalar(path);
  }
  decode_weighted_average();
  peaks_and_patches();
  bad_arguments_throw();
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("test_line_decode: all checks passed\n");
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
