"""``python -m sdk.tools.bench_lines`` on a few lines: the report holds every contender, the
C++ decoder equals its twin, and the memory floor (read_only_1t) is reported beside the goal."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from sdk import _kernels  # noqa: E402
from tools import bench_lines  # noqa: E402


@pytest.mark.parametrize("n", [0, 1, 7, 8, 63, 64, 65, 200, 4096 + 13])
def test_read_checksum_matches_its_numpy_twin(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    padded = np.zeros(-(-n // 8) * 8, np.uint8)
    padded[:n] = data
    want = int(np.bitwise_xor.reduce(padded.view("<u8"))) if n else 0
    assert _kernels.read_checksum(data) == want


def test_read_checksum_refuses_what_it_would_have_to_copy():
    with pytest.raises(TypeError):
        _kernels.read_checksum(np.zeros(16, np.float32))
    with pytest.raises(TypeError):
        _kernels.read_checksum(np.zeros(32, np.uint8)[::2])


def test_bench_lines_report(tmp_path):
    assert bench_lines.main(["--lines", "8", "--unique", "2", "--twin-lines", "2",
                             "--rounds", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "perf.json").read_text())
    assert report["bit_exact_vs_twin"] is True
    rates = report["lines_per_cpu_s_median"]
    assert {"cpp_lut_1t", "read_only_1t", "numpy_twin", "mlp_ort"} <= set(rates)
    floor = [r for r in report["rows"] if r["what"].startswith("memory floor")]
    assert floor and floor[0]["value"] == rates["read_only_1t"] > 0
    assert (tmp_path / "perf.png").stat().st_size > 0
    assert "read_only_1t" in (tmp_path / "perf.md").read_text()
