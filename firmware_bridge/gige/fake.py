"""Aravis's GigE Vision fake camera on an interface (default loopback), until killed or --seconds.

    python -m firmware_bridge.gige.fake [--interface lo] [--seconds 60]

Then ``open_source("gige+aravis://127.0.0.1")`` talks GVCP/GVSP to it over UDP. Prints "ready"
once it listens. Only one can listen per address (GVCP port 3956).
"""
from __future__ import annotations

import argparse
import time

from firmware_bridge.gige.aravis import aravis


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interface", default="lo")
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args(argv)
    camera = aravis().GvFakeCamera.new(args.interface, None)  # serves from its own threads
    print("ready", flush=True)
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    del camera
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
