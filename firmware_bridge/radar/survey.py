"""What each recorded stream holds, as a Markdown table (the README quotes it):

    python -m firmware_bridge.radar.survey ../shared/data/radar/*.bin
"""
from __future__ import annotations

from pathlib import Path

from .frame import RadarFrame
from .stream import read_recording


def main(argv: list[str] | None = None) -> None:
    """Print one table row per recording."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("| file | platform | SDK | header | TLV types | packets | malformed | truncated | "
          "skipped bytes | frames | points |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in args.files:
        frames, c = read_recording(path)
        types = sorted({t for f in frames for t in _tlv_types(f)})
        h = frames[0].header if frames else None
        print(f"| {path.name} | {hex(h.platform) if h else '-'} | "
              f"{'.'.join(map(str, h.sdk_version)) if h else '-'} | {h.header_size if h else '-'} | "
              f"{', '.join(map(str, types))} | {c.packets} | {c.malformed} | {c.truncated} | "
              f"{c.skipped_bytes} | {frames[0].frame_number if frames else '-'}.."
              f"{frames[-1].frame_number if frames else '-'} | {sum(len(f.points) for f in frames)} |")


def _tlv_types(frame: RadarFrame) -> list[int]:
    fields = {1: len(frame.points) > 0, 2: frame.range_profile is not None,
              3: frame.noise_profile is not None, 4: frame.azimuth_heatmap is not None,
              5: frame.range_doppler_heatmap is not None, 6: frame.stats is not None,
              7: frame.snr_db is not None, 8: frame.azimuth_elevation_heatmap is not None,
              9: frame.temperature is not None}
    return [t for t, present in fields.items() if present] + list(frame.unknown_tlvs)


if __name__ == "__main__":
    main()
