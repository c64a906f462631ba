"""TI mmWave radars: the out-of-box demo's packet stream, raw ADC capture, FMCW processing.

    with open_source("radar+udp://127.0.0.1:5005") as radar:     # or radar+serial:///dev/ttyACM1
        for frame in radar:              # frame.data: (N, 4) float32 x, y, z, v
            full = frame.meta["radar"]   # RadarFrame: header, snr_db, range_profile, heatmaps, ...

    framing.py         the magic word and its compiled search (_framing.pyx)
    packet.py          packet boundaries and TLV offsets, compiled (_tlv.pyx); packet_reference.py
                       is its pure-Python twin
    tlv.py             TLV decoders, a registry keyed by TLV type; frame.py: RadarFrame
    stream.py          incremental parsing of a byte stream, with counts of what was lost
    packet_writer.py   encoding SDK 3.x packets
    dca1000.py         raw ADC capture over a DCA1000 (UDP packets, I0 I1 Q0 Q1 sample order)
    fmcw.py            range / Doppler / angle FFTs, range-angle heatmaps, CA-CFAR
    simulator.py       a simulated radar sending real-format packets over UDP or a pty
    source.py          RadarSource; udp_source.py and serial_source.py are the two schemes
"""
from firmware_bridge.source import register_source

from .frame import PacketHeader, RadarFrame
from .serial_source import SerialRadarSource
from .stream import PacketStream, StreamCounts, read_recording
from .udp_source import UDPRadarSource

register_source("radar+udp", UDPRadarSource)
register_source("radar+serial", SerialRadarSource)

__all__ = ["PacketHeader", "RadarFrame", "PacketStream", "StreamCounts", "read_recording",
           "UDPRadarSource", "SerialRadarSource"]
