"""Run-time feature detection: ``PRISM_MAX_ISA`` caps what every kernel family dispatches on
(as oneDNN's ``ONEDNN_MAX_CPU_ISA``), so an AVX-512 host can run as an AVX2-only one (a Zen 3)
and a benchmark can measure the path such a host takes. Each case runs in a fresh interpreter:
the features are detected once per process."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sdk import _kernels

FEATURES = _kernels.cpu_features()
PROBE = ("from sdk import _kernels, kernels_int as k, fold_conv as fc; "
         "f = _kernels.cpu_features(); "
         "print(k.simd_path(), fc.simd_path(), fc.simd_path(integer=True), "
         "int(f['avx2']), int(f['avx512f']), int(f['avx512_vnni']))")


def _probe(cap: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PRISM_DISABLE_SIMD"}
    env["PRISM_MAX_ISA"] = cap
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)


@pytest.mark.skipif(FEATURES["arch"] != "x86_64" or not FEATURES["avx2"],
                    reason="needs an x86-64 CPU with AVX2")
def test_max_isa_avx2_runs_an_avx512_host_as_an_avx2_one():
    out = _probe("avx2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["avx2", "avx2_winograd", "avx2", "1", "0", "0"]


@pytest.mark.skipif(FEATURES["arch"] != "x86_64", reason="x86-64 levels")
def test_max_isa_scalar_and_uncapped_levels():
    assert _probe("scalar").stdout.split() == ["scalar", "scalar", "scalar", "0", "0", "0"]
    uncapped = _probe("avx512_vnni")
    want = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("PRISM_MAX_ISA", "PRISM_DISABLE_SIMD")})
    assert uncapped.stdout == want.stdout  # the top level caps nothing
    if FEATURES["avx512f"]:  # avx512: AVX-512F kernels stay, VNNI goes
        kernels, fp32, integer, avx2, avx512f, vnni = _probe("avx512").stdout.split()
        assert (avx512f, vnni, integer) == ("1", "0", "avx2")


def test_an_unknown_max_isa_is_a_clear_error():
    out = _probe("sse9")
    assert out.returncode != 0
    assert "PRISM_MAX_ISA=sse9: expected one of scalar, " in out.stderr


@pytest.mark.skipif(FEATURES["arch"] != "x86_64" or not FEATURES["avx2"],
                    reason="needs an x86-64 CPU with AVX2")
def test_instruction_probes_follow_the_caps():
    """The benchmarks' host probes: vpdpbusd only with VNNI, vpmaddubsw with AVX2."""
    code = ("from sdk import _kernels as k; "
            "print(int(k.vpdpbusd_per_second(0.01) > 0), int(k.vpmaddubsw_per_second(0.01) > 1e8))")
    env = {k: v for k, v in os.environ.items() if k != "PRISM_DISABLE_SIMD"}
    for cap, want in (("avx2", "0 1"), ("scalar", "0 0"),
                      ("", f"{int(FEATURES['avx512_vnni'])} 1")):
        out = subprocess.run([sys.executable, "-c", code], env={**env, "PRISM_MAX_ISA": cap},
                             capture_output=True, text=True, check=True)
        assert out.stdout.split() == want.split(), cap
