"""What the numbers were measured on: Jetson model, power mode, clocks, tegrastats, peak memory.

Everything is read from /proc, /sys and the JetPack tools when present and left out when not
(an x86 host simply has no ``jetson`` entry); nothing here needs root, and nothing changes the
device's settings.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 3.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() or None


def jetson_info(root: str = "/") -> dict[str, Any] | None:
    """Model, L4T release, nvpmodel power mode, jetson_clocks state and GPU/EMC clocks; None off
    a Jetson. ``root`` lets tests point at a fake /proc and /sys tree."""
    r = Path(root)
    model = _read(r / "proc/device-tree/model")
    release = _read(r / "etc/nv_tegra_release")
    if not model or ("jetson" not in model.lower() and not release):
        return None
    info: dict[str, Any] = {"model": model, "l4t": release.splitlines()[0] if release else None}
    mode = _run(["nvpmodel", "-q"]) if root == "/" else _read(r / "nvpmodel.txt")
    if mode:
        info["power_mode"] = " / ".join(line.strip() for line in mode.splitlines() if line.strip())
    clocks = _run(["jetson_clocks", "--show"]) if root == "/" else None
    if clocks:
        info["jetson_clocks"] = clocks.splitlines()[:12]
    freqs = {}
    for dev in sorted((r / "sys/class/devfreq").glob("*")) if (r / "sys/class/devfreq").is_dir() else []:
        cur = _read(dev / "cur_freq")
        if cur and cur.isdigit():
            freqs[dev.name] = {"cur_mhz": int(cur) / 1e6, "max_mhz": int(_read(dev / "max_freq") or 0) / 1e6,
                               "governor": _read(dev / "governor")}
    if freqs:
        info["devfreq"] = freqs
    emc = _read(r / "sys/kernel/debug/bpmp/debug/clk/emc/rate")
    if emc and emc.isdigit():
        info["emc_mhz"] = int(emc) / 1e6
    return info


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB); Linux reports ru_maxrss in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TegraStats:
    """``with TegraStats() as ts: ...`` samples ``tegrastats --interval ms`` during the run
    (GPU load, RAM, temperatures, power rails) when the tool exists; ``ts.lines`` afterwards."""

    def __init__(self, interval_ms: int = 200, limit: int = 2000):
        self.interval_ms, self.limit = interval_ms, limit
        self.lines: list[str] = []
        self._proc = None
        self._thread = None

    def __enter__(self) -> "TegraStats":
        if shutil.which("tegrastats"):
            try:
                self._proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)],
                                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError:
                self._proc = None
            if self._proc is not None:
                self._thread = threading.Thread(target=self._drain, daemon=True)
                self._thread.start()
        return self

    def _drain(self) -> None:
        for line in self._proc.stdout:
            if len(self.lines) < self.limit:
                self.lines.append(line.strip())

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()  # the process this object started, by its handle
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            if self._thread:
                self._thread.join(timeout=1)

    def summary(self) -> dict[str, Any] | None:
        if not self.lines:
            return None
        return {"samples": len(self.lines), "first": self.lines[0], "last": self.lines[-1]}


def cpu_governor() -> str | None:
    return _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def environment() -> dict[str, Any]:
    """Host facts that change latency: Jetson state, CPU governor, load average."""
    out: dict[str, Any] = {"cpu_governor": cpu_governor(), "loadavg": os.getloadavg()}
    jet = jetson_info()
    if jet:
        out["jetson"] = jet
    return out
