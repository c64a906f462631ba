"""The README performance table is rebuilt from reports/*/perf.json between its markers."""
import json

from sdk.tools.perf_table import END, START, collect, render, update_readme


def test_table_is_rendered_between_the_markers(tmp_path):
    (tmp_path / "reports" / "x").mkdir(parents=True)
    (tmp_path / "reports" / "x" / "perf.json").write_text(json.dumps({
        "host": {"cpu": "CPU", "cores": 2, "simd": {"avx2": True, "neon": False}},
        "command": "python -m x",
        "rows": [{"what": "speed", "value": 1.234, "unit": "x", "peer": "ort", "goal": ">= 1", "met": True},
                 {"what": "acc", "value": "0.98 / 0.97", "unit": "", "peer": "p", "goal": None, "met": None}]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    table = render(collect(tmp_path / "reports"))
    assert update_readme(readme, table)
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro") and text.endswith("outro\n")
    assert "| x: speed | 1.23 x | ort | >= 1 | yes | CPU, 2 cores, avx2 | `python -m x` |" in text
    assert "| x: acc | 0.98 / 0.97 |" in text
    assert not update_readme(readme, table)  # idempotent


def test_capped_host_says_so(tmp_path):
    """A run under PRISM_MAX_ISA / ONEDNN_MAX_CPU_ISA names its caps beside the flags it saw."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "perf.json").write_text(json.dumps({
        "host": {"cpu": "Xeon", "cores": 2, "simd": {"avx2": True, "avx512f": False},
                 "isa_caps": {"PRISM_MAX_ISA": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}},
        "command": "c", "rows": [{"what": "w", "value": 2.0, "unit": "x", "peer": "p",
                                  "goal": ">= 1", "met": True}]}))
    table = render(collect(tmp_path))
    assert "| Xeon, 2 cores, avx2 (capped: PRISM_MAX_ISA=avx2, ONEDNN_MAX_CPU_ISA=AVX2) |" in table


def test_host_info_records_isa_caps(monkeypatch):
    from sdk.tools.bench import host_info

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("PRISM_MAX_ISA", raising=False)
    assert host_info()["isa_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert "isa_caps" not in host_info()


def test_capped_command_leads_with_the_caps():
    from sdk.tools.bench import capped_command

    assert capped_command("python -m x", {"cpu": "c"}) == "python -m x"
    host = {"isa_caps": {"PRISM_MAX_ISA": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
    assert capped_command("python -m x --out r", host) == \
        "PRISM_MAX_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m x --out r"
