// prism::qgemm: hand-computed cases, every built SIMD path against a naive reference on random
// data (integers bit-exact, float and requantized output bit-exact), packing errors, threads.
// The exhaustive comparison against the NumPy twin lives in tests/kernels/test_qgemm.py.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/qgemm.hpp"
#include "prism/thread_pool.hpp"
#include "../src/aligned_buffer.hpp"  // internal: the kernels' per-thread scratch

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

using prism::QgemmPath;

// The scratch the GEMM, the folded convolution's Winograd and the line decoder reuse: 64-byte
// aligned at every size (glibc's large, mmap-served blocks start 16 bytes past a page, which is
// what a plain vector gave), zeroed when it grows, kept while it does not.
void aligned_buffer() {
  prism::detail::AlignedBuffer<float> f;
  prism::detail::AlignedBuffer<std::uint8_t> b;
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{1} << 20,
                        std::size_t{3} << 20}) {
    float* p = f.get(n);
    std::uint8_t* q = b.get(n);
    check(reinterpret_cast<std::uintptr_t>(p) % 64 == 0 &&
              reinterpret_cast<std::uintptr_t>(q) % 64 == 0,
          "AlignedBuffer: 64-byte aligned at " + std::to_string(n) + " elements");
    check(std::all_of(p, p + n, [](float v) { return v == 0.0f; }) &&
              std::all_of(q, q + n, [](std::uint8_t v) { return v == 0; }),
          "AlignedBuffer: zeroed when it grows, " + std::to_string(n) + " elements");
    p[n - 1] = 1.5f;
    check(f.get(n / 2 + 1) == p && p[n - 1] == 1.5f, "AlignedBuffer: kept while it does not grow");
  }
}

// The paths this CPU and build can run; the others are reported once, with the reason.
const std::vector<QgemmPath>& available_paths() {
  static const std::vector<QgemmPath> paths = [] {
    std::vector<QgemmPath> p;
    for (QgemmPath path : {QgemmPath::Scalar, QgemmPath::Avx2, QgemmPath::Avx512Vnni,
                           QgemmPath::NeonDot}) {
      const std::string why = prism::qgemm_path_unavailable_reason(path);
      if (why.empty()) {
        p.push_back(path);
      } else {
        std::printf("skipped path %s\n", why.c_str());
      }
    }
    return p;
  }();
  return paths;
}

// PWLQ weights as the two folded code tensors: W0 (center codes, max_code·sign at every tail
// weight) and W1 (tail codes).
struct Codes {
  std::int64_t n, k;
  std::vector<std::int8_t> center, tail;
};

Codes random_codes(std::mt19937& rng, std::int64_t n, std::int64_t k, int max_code,
                   double tail_fraction) {
  Codes w{n, k, std::vector<std::int8_t>(n * k), std::vector<std::int8_t>(n * k)};
  std::uniform_int_distribution<int> code(-max_code, max_code);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t i = 0; i < n * k; ++i) {
    if (u(rng) < tail_fraction) {
      const int s = u(rng) < 0.5 ? -1 : 1;
      const int mag = std::abs(code(rng));  // may be 0: a tail weight at the breakpoint
      w.center[i] = static_cast<std::int8_t>(s * max_code);
      w.tail[i] = static_cast<std::int8_t>(s * mag);
    } else {
      w.center[i] = static_cast<std::int8_t>(code(rng));
    }
  }
  return w;
}

struct Reference {
  std::vector<std::int32_t> a_c, a_t, r;
};

Reference naive_accumulators(const std::vector<std::uint8_t>& x, std::int64_t m, const Codes& w) {
  Reference ref{std::vector<std::int32_t>(m * w.n), std::vector<std::int32_t>(m * w.n),
                std::vector<std::int32_t>(m)};
  for (std::int64_t i = 0; i < m; ++i) {
    std::int64_t r = 0;
    for (std::int64_t k = 0; k < w.k; ++k) r += x[i * w.k + k];
    ref.r[i] = static_cast<std::int32_t>(r);
    for (std::int64_t n = 0; n < w.n; ++n) {
      std::int64_t c = 0, t = 0;
      for (std::int64_t k = 0; k < w.k; ++k) {
        const std::int64_t xv = x[i * w.k + k];
        c += xv * w.center[n * w.k + k];
        t += xv * w.tail[n * w.k + k];
      }
      ref.a_c[i * w.n + n] = static_cast<std::int32_t>(c);
      ref.a_t[i * w.n + n] = static_cast<std::int32_t>(t);
    }
  }
  return ref;
}

struct Scales {
  std::vector<float> s1, s2, a, c, bias;
  prism::PwlqEpilogue epilogue(float sx, int zx) const {
    prism::PwlqEpilogue e;
    e.sx = sx;
    e.zx = zx;
    e.s1 = s1.data();
    e.s2 = s2.data();
    e.a = a.data();
    e.c = c.data();
    e.bias = bias.data();
    return e;
  }
};

Scales random_scales(std::mt19937& rng, std::int64_t n) {
  std::uniform_real_distribution<float> pos(0.001f, 0.05f), sym(-1.0f, 1.0f);
  Scales s;
  for (std::int64_t i = 0; i < n; ++i) {
    s.s1.push_back(pos(rng));
    s.s2.push_back(pos(rng));
    s.a.push_back(1.0f + 0.1f * sym(rng));
    s.c.push_back(0.05f * sym(rng));
    s.bias.push_back(sym(rng));
  }
  return s;
}

// The documented float epilogue, written out once more.
float reference_y(const Reference& ref, std::int64_t m, std::int64_t n, std::int64_t channels,
                  const Codes& w, const Scales& s, float sx, int zx, bool has_tail) {
  const std::int64_t i = m * channels + n;
  const std::int32_t ac = ref.a_c[i] - zx * [&] {
    std::int32_t v = 0;
    for (std::int64_t k = 0; k < w.k; ++k) v += w.center[n * w.k + k];
    return v;
  }();
  std::int32_t sum_t = 0;
  for (std::int64_t k = 0; k < w.k; ++k) sum_t += w.tail[n * w.k + k];
  const double sxd = sx;
  const float alc = static_cast<float>(sxd * s.s1[n] * s.a[n]);
  const float alt = static_cast<float>(sxd * s.s2[n] * s.a[n]);
  const float gam = static_cast<float>(s.c[n] * sxd);
  float y = static_cast<float>(ac) * alc;
  if (has_tail) y = y + static_cast<float>(ref.a_t[i] - zx * sum_t) * alt;
  y = y + static_cast<float>(ref.r[m] - zx * static_cast<std::int32_t>(w.k)) * gam;
  return y + s.bias[n];
}

std::uint8_t reference_q(float y, const prism::Requantization& rq) {
  float t = std::nearbyint(y / rq.scale) + static_cast<float>(rq.zero_point);
  const float low = rq.relu ? static_cast<float>(rq.zero_point) : 0.0f;
  t = t > low ? t : low;
  t = t < 255.0f ? t : 255.0f;
  return static_cast<std::uint8_t>(t);
}

void hand_computed_case() {
  // X (2, 5); channel 0: center codes; channel 1 (Q = 7): two tail weights (codes 2 and 0 with
  // signs +1 and -1: the second sits exactly at the breakpoint, |t| = 0), folded into W0 as
  // ±7, and one center code.
  const std::vector<std::uint8_t> x = {1, 2, 3, 4, 5, 10, 0, 255, 1, 2};
  const std::vector<std::int8_t> center = {1, -1, 2, 0, 3, 7, -7, 4, 0, 0};
  const std::vector<std::int8_t> tail = {0, 0, 0, 0, 0, 2, 0, 0, 0, 0};
  for (auto form : {prism::TailForm::Sparse, prism::TailForm::Dense}) {
    const auto w = prism::pack_pwlq_weights(center.data(), tail.data(), 2, 5, form);
    for (QgemmPath path : available_paths()) {
      std::vector<std::int32_t> a_c(4), a_t(4), r(2);
      prism::qgemm_accumulators(x.data(), 2, w, a_c.data(), a_t.data(), r.data(), {path, 1});
      const std::string tag = std::string(" [") + prism::qgemm_path_name(path) + "]";
      // Row 0: A_c = (1 - 2 + 6 + 15, 7 - 14 + 12), A_t = (0, 2), R = 15.
      // Row 1: A_c = (10 + 510 + 6, 70 + 4·255), A_t = (0, 20), R = 268.
      check(a_c == std::vector<std::int32_t>({20, 5, 526, 1090}), "hand A_c" + tag);
      check(a_t == std::vector<std::int32_t>({0, 2, 0, 20}), "hand A_t" + tag);
      check(r == std::vector<std::int32_t>({15, 268}), "hand R" + tag);

      // y = sx·(s1·ac + s2·at)·a + c·sx·r + bias with sx = 0.5, zx = 3, channel 1:
      // s1 = 0.25, s2 = 1, a = 1, c = 0, bias = 0.5; ΣW0 = 4, ΣW1 = 2 (p = 7·s1 is folded; the
      // p given here must be ignored).
      // Row 0: ac = 5 - 12 = -7, at = 2 - 6 = -4: y = 0.5·(-1.75 - 4) + 0.5 = -2.375.
      const float s1[] = {1.0f, 0.25f}, s2[] = {0.0f, 1.0f};
      const float bias[] = {0.0f, 0.5f};
      prism::PwlqEpilogue e;
      e.sx = 0.5f;
      e.zx = 3;
      e.s1 = s1;
      e.s2 = s2;
      e.bias = bias;
      std::vector<float> y(4);
      prism::qgemm(x.data(), 2, w, e, y.data(), {path, 1});
      // Channel 0 row 0: ΣWc = 5, ac = 20 - 15 = 5, y = 0.5·5 = 2.5.
      check(y[0] == 2.5f && y[1] == -2.375f, "hand y" + tag);
      std::vector<std::uint8_t> q(4);
      prism::Requantization rq;
      rq.scale = 0.5f;
      rq.zero_point = 10;
      prism::qgemm_requantized(x.data(), 2, w, e, rq, q.data(), {path, 1});
      // 2.5 / 0.5 = 5 -> 15; -2.375 / 0.5 = -4.75 -> -5 -> 5.
      check(q[0] == 15 && q[1] == 5, "hand requantized" + tag);
      rq.relu = true;
      prism::qgemm_requantized(x.data(), 2, w, e, rq, q.data(), {path, 1});
      check(q[0] == 15 && q[1] == 10, "hand requantized relu" + tag);
    }
  }
}

void round_half_to_even() {
  // y = 0.5·(A_c) with one weight 1: x = 1, 3, 5 give y/so = 0.5, 1.5, 2.5 -> 0, 2, 2.
  const std::vector<std::uint8_t> x = {1, 3, 5};
  const std::vector<std::int8_t> center = {1};
  const auto w = prism::pack_pwlq_weights(center.data(), nullptr, 1, 1);
  const float s1[] = {0.5f};
  prism::PwlqEpilogue e;
  e.s1 = s1;
  prism::Requantization rq;
  for (QgemmPath path : available_paths()) {
    std::vector<std::uint8_t> q(3);
    prism::qgemm_requantized(x.data(), 3, w, e, rq, q.data(), {path, 1});
    check(q == std::vector<std::uint8_t>({0, 2, 2}),
          std::string("round half to even [") + prism::qgemm_path_name(path) + "]");
  }
}

void random_against_reference(std::mt19937& rng, const std::vector<QgemmPath>& paths,
                              std::int64_t m, std::int64_t k, std::int64_t n, int max_code,
                              double tail_fraction, int x_low, int x_high, int zx) {
  const Codes w = random_codes(rng, n, k, max_code, tail_fraction);
  std::vector<std::uint8_t> x(m * k);
  std::uniform_int_distribution<int> xd(x_low, x_high);
  for (auto& v : x) v = static_cast<std::uint8_t>(xd(rng));
  const Reference ref = naive_accumulators(x, m, w);
  const Scales scales = random_scales(rng, n);
  const float sx = 0.02f;
  const auto e = scales.epilogue(sx, zx);
  prism::Requantization rq;
  rq.scale = 0.05f;
  rq.zero_point = 128;
  const bool has_tail = tail_fraction > 0;
  std::vector<float> want_y(m * n);
  std::vector<std::uint8_t> want_q(m * n);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      want_y[i * n + j] = reference_y(ref, i, j, n, w, scales, sx, zx, has_tail);
      want_q[i * n + j] = reference_q(want_y[i * n + j], rq);
    }
  const std::string shape = " M=" + std::to_string(m) + " K=" + std::to_string(k) +
                            " N=" + std::to_string(n) + " max_code=" + std::to_string(max_code) +
                            " tail=" + std::to_string(tail_fraction);
  for (auto form : {prism::TailForm::Sparse, prism::TailForm::Dense}) {
    const auto packed = prism::pack_pwlq_weights(w.center.data(),
                                                 has_tail ? w.tail.data() : nullptr, n, k, form);
    for (QgemmPath path : paths) {
      for (int threads : {1, 2}) {
        const std::string tag = std::string(" [") + prism::qgemm_path_name(path) + ", " +
                                std::to_string(threads) + " threads, " +
                                (form == prism::TailForm::Sparse ? "sparse" : "dense") + "]" +
                                shape;
        Reference got{std::vector<std::int32_t>(m * n, -7), std::vector<std::int32_t>(m * n, -7),
                      std::vector<std::int32_t>(m, -7)};
        prism::qgemm_accumulators(x.data(), m, packed, got.a_c.data(), got.a_t.data(),
                                  got.r.data(), {path, threads});
        check(got.a_c == ref.a_c && got.a_t == ref.a_t && got.r == ref.r, "accumulators" + tag);
        std::vector<float> y(m * n, -1.0f);
        prism::qgemm(x.data(), m, packed, e, y.data(), {path, threads});
        bool same = true;
        for (std::int64_t i = 0; i < m * n; ++i) same = same && y[i] == want_y[i];
        check(same, "float output" + tag);
        std::vector<std::uint8_t> q(m * n, 1);
        prism::qgemm_requantized(x.data(), m, packed, e, rq, q.data(), {path, threads});
        check(q == want_q, "requantized output" + tag);
      }
    }
  }
}

void avx2_saturation_boundary(const std::vector<QgemmPath>& paths) {
  // x = 255 against two adjacent codes of ±64 is the largest vpmaddubsw pair that cannot
  // saturate (255·128 = 32640); ±65 and ±127 would saturate and take the split sequence.
  // Narrow codes sum runs of 32767 / (510·max|code|) k-blocks in int16: 9 for ±7, 7 for ±9,
  // 2 for ±32; k = 64 (16 k-blocks) reaches each run's bound.
  for (int code : {7, -7, 9, -9, 32, -33, 64, 65, 127, -64, -65, -127, -128}) {
    const std::int64_t k = 64;
    std::vector<std::uint8_t> x(2 * k, 255);
    std::vector<std::int8_t> center(k, static_cast<std::int8_t>(code));
    const auto w = prism::pack_pwlq_weights(center.data(), nullptr, 1, k);
    for (QgemmPath path : paths) {
      std::vector<std::int32_t> a_c(2), a_t(2), r(2);
      prism::qgemm_accumulators(x.data(), 2, w, a_c.data(), a_t.data(), r.data(), {path, 1});
      check(a_c[0] == 255 * code * k && a_c[1] == 255 * code * k,
            "saturation boundary code " + std::to_string(code) + " [" +
                prism::qgemm_path_name(path) + "]");
    }
  }
}

void packing_errors() {
  auto throws = [](auto fn, const char* what) {
    bool threw = false;
    try {
      fn();
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    check(threw, what);
  };
  const std::int8_t c1[] = {1}, t2[] = {2};
  throws([&] { prism::pack_pwlq_weights(nullptr, t2, 1, 1); }, "no center (W0)");
  throws([&] { prism::pack_pwlq_weights(c1, nullptr, 1, 0); }, "K = 0");
  throws([&] { prism::pack_pwlq_weights(c1, nullptr, 0, 1); }, "N = 0");
  throws([&] { prism::pack_pwlq_weights(c1, nullptr, 1, prism::kQgemmMaxDepth + 1); }, "K too large");
  throws([&] { prism::pack_pwlq_weights(c1, nullptr, 1, 1, prism::TailForm::Sparse, 2); },
         "N not a multiple of groups");
  throws([] { prism::parse_qgemm_path("sse"); }, "unknown path name");
}


void thread_pool_runs_every_task_once_and_rethrows() {
  prism::ThreadPool pool(3);
  check(pool.max_threads() == 4, "pool of 3 workers runs 4 threads");
  for (int threads : {1, 2, 4, 9}) {
    std::vector<std::atomic<int>> hits(1000);
    for (int round = 0; round < 50; ++round)
      pool.parallel_for(1000, threads, [&](std::int64_t t) { hits[t].fetch_add(1); });
    bool once = true;
    for (auto& h : hits) once = once && h.load() == 50;
    check(once, "every task runs once per job with " + std::to_string(threads) + " threads");
  }
  bool threw = false;
  try {
    pool.parallel_for(100, 4, [](std::int64_t t) {
      if (t == 37) throw std::runtime_error("task 37");
    });
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()) == "task 37";
  }
  check(threw, "an exception in a task reaches the caller");
  std::atomic<int> after{0};
  pool.parallel_for(10, 4, [&](std::int64_t) { after.fetch_add(1); });
  check(after.load() == 10, "the pool works after an exception");
}

}  // namespace

// QuantizeLinear on every path against the portable float32 formula (round half to even, true
// division, saturation, optional clip): halves, values far out of range, ±infinity, counts that
// are not a multiple of any vector width. (NaN is left out: the paths' max/min instructions
// map it to the low end, the portable std::max/std::min do not.)
void quantize_paths(const std::vector<QgemmPath>& paths, std::mt19937& rng) {
  std::uniform_real_distribution<float> wide(-600.0f, 600.0f);
  const float inf = std::numeric_limits<float>::infinity();
  for (std::int64_t count : {1, 7, 8, 15, 16, 17, 33, 100}) {
    std::vector<float> x(static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < x.size(); ++i) {
      switch (i % 5) {
        case 0: x[i] = 0.5f * static_cast<float>(static_cast<int>(wide(rng))); break;  // halves
        case 1: x[i] = i % 2 ? inf : -inf; break;
        default: x[i] = wide(rng);
      }
    }
    for (bool clip : {false, true}) {
      prism::qgemm_detail::QuantizeArgs a{};
      a.x = x.data();
      a.count = count;
      a.scale = 0.75f;
      a.zero_point = 17.0f;
      a.clip = clip;
      a.clip_low = -40.0f;
      a.clip_high = 90.0f;
      std::vector<std::uint8_t> want(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        float v = clip ? std::min(std::max(x[i], a.clip_low), a.clip_high) : x[i];
        float q = std::nearbyint(v / a.scale) + a.zero_point;
        q = std::min(std::max(q, 0.0f), 255.0f);
        want[i] = static_cast<std::uint8_t>(static_cast<int>(q));
      }
      for (QgemmPath path : paths) {
        std::vector<std::uint8_t> got(x.size() + 16, 0xAB);  // guard bytes past count
        a.q = got.data();
        prism::qgemm_detail::quantize_linear(prism::qgemm_detail::kernels_for(path), a);
        const bool same = std::equal(want.begin(), want.end(), got.begin());
        check(same && got[x.size()] == 0xAB,
              "QuantizeLinear count " + std::to_string(count) + (clip ? " clip" : "") + " [" +
                  prism::qgemm_path_name(path) + "]");
      }
    }
  }
}

int main() {
  const auto paths = available_paths();
  // The run-time choice, printed so that a CI log (or the qemu run) shows what was exercised.
  std::printf("qgemm default path: %s\n", prism::qgemm_path_name(prism::qgemm_best_path()));
  std::printf("qgemm paths tested:");
  for (QgemmPath p : paths) std::printf(" %s", prism::qgemm_path_name(p));
  std::printf("\n");

  aligned_buffer();
  hand_computed_case();
  round_half_to_even();
  avx2_saturation_boundary(paths);
  packing_errors();
  thread_pool_runs_every_task_once_and_rethrows();

  std::mt19937 rng(42);
  quantize_paths(paths, rng);
  // Odd sizes, K not a multiple of 4/16/64, M = 1 and many, N around the 8-channel panel.
  const std::int64_t shapes[][3] = {{1, 1, 1},    {1, 3, 9},     {2, 5, 7},    {17, 63, 8},
                                    {33, 65, 17}, {49, 576, 64}, {50, 144, 16}, {100, 27, 33},
                                    {130, 9, 3}};
  for (const auto& s : shapes) {
    random_against_reference(rng, paths, s[0], s[1], s[2], 7, 0.1, 0, 255, 128);
    random_against_reference(rng, paths, s[0], s[1], s[2], 127, 0.3, 0, 255, 0);
  }
  // Extremes: no tail, all tail, all-zero and all-255 activations, zero points 0 and 255.
  random_against_reference(rng, paths, 20, 37, 12, 127, 0.0, 0, 255, 255);
  random_against_reference(rng, paths, 20, 37, 12, 127, 1.0, 0, 255, 7);
  random_against_reference(rng, paths, 20, 37, 12, 127, 0.2, 0, 0, 0);
  random_against_reference(rng, paths, 20, 37, 12, 127, 0.2, 255, 255, 255);

  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_qgemm: all checks passed\n");
  return 0;
}
