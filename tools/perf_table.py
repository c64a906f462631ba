"""Write the README's performance table from the benchmark results in ``reports/``.

Each benchmark script writes ``reports/<name>/perf.json``::

    {"host": {...}, "command": "how to reproduce",
     "rows": [{"what": "...", "value": 1.02, "unit": "x", "peer": "onnxruntime", "goal": "<= 1.05",
               "met": true}]}

This script gathers every ``perf.json`` and replaces the text between the markers
``<!-- perf-table:start -->`` and ``<!-- perf-table:end -->`` in README.md. Re-run it after any
benchmark: ``python -m sdk.tools.perf_table``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

START, END = "<!-- perf-table:start -->", "<!-- perf-table:end -->"


def collect(reports: Path) -> list[tuple[str, dict]]:
    """Every ``reports/*/perf.json`` with a ``rows`` list (reports of other shapes, e.g. a soak's
    full result, are documented in their own perf.md and left out of the table, said on stderr)."""
    out = []
    for p in sorted(reports.glob("*/perf.json")):
        res = json.loads(p.read_text())
        if isinstance(res.get("rows"), list):
            out.append((p.parent.name, res))
        else:
            print(f"perf_table: {p} has no 'rows' list; not in the table", file=sys.stderr)
    return out


def render(results: list[tuple[str, dict]]) -> str:
    lines = ["| benchmark | measured | peer | goal | met | host | reproduce |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, res in results:
        host = res.get("host", {})
        simd = host.get("simd") or {}
        flags = "+".join(k for k, v in simd.items() if v) or "scalar"
        host_s = f"{host.get('cpu', '?')}, {host.get('cores', '?')} cores, {flags}"
        if host.get("isa_caps"):
            host_s += " (capped: " + ", ".join(f"{k}={v}" for k, v in host["isa_caps"].items()) + ")"
        for row in res["rows"]:
            value = row["value"]
            shown = f"{value:.3g} {row.get('unit', '')}".strip() if isinstance(value, (int, float)) else str(value)
            met = {True: "yes", False: "**no**", None: "-"}[row.get("met")]
            lines.append(f"| {name}: {row['what']} | {shown} | {row.get('peer', '-')} | "
                         f"{row.get('goal', '-')} | {met} | {host_s} | `{res.get('command', '')}` |")
    return "\n".join(lines)


def update_readme(readme: Path, table: str) -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table}\n{END}{tail}"
    changed = new != text
    readme.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reports", type=Path, default=Path("reports"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    args = p.parse_args(argv)
    table = render(collect(args.reports))
    changed = update_readme(args.readme, table)
    print(table)
    print(f"{args.readme}: {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
