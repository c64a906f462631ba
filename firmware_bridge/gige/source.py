"""AravisSource: a GigE Vision camera through Aravis as a Source.

    gige+aravis://<ip address | Aravis device id>?width=640&height=480&pixel_format=Mono8&fps=30
        &buffers=8&timeout=2

An empty target opens the first camera Aravis finds. Aravis receives GVSP packets on its own
thread into ``buffers`` preallocated buffers; read() copies one out and gives it back. A frame the
host had no free buffer for is an Aravis "underrun" (counted in ``dropped``); gaps in the 16-bit
GigE Vision block ids are counted in ``missing``; incomplete buffers in ``errors``.
"""
from __future__ import annotations

import time

import numpy as np

from firmware_bridge.camera import pixels
from firmware_bridge.errors import (AcquisitionTimeout, DeviceNotFound, InvalidFeatureValue,
                                    SourceError, SourceStopped)
from firmware_bridge.gige.aravis import aravis
from firmware_bridge.source import DeliveryRate, Frame, Source, SourceStats, SourceURI

__all__ = ["AravisSource"]

_OPTIONS = {"width", "height", "pixel_format", "fps", "buffers", "timeout"}
_WAIT_SLICE_US = 100_000  # a waiting read() looks at stop() this often
_BLOCK_ID_WRAP = 0xFFFF   # GigE Vision 1.x block ids run 1..65535 (0 is never used)


def _gap(previous: int | None, block_id: int) -> int:
    if previous is None:
        return 0
    if block_id > previous:
        return block_id - previous - 1
    return (_BLOCK_ID_WRAP - previous) + (block_id - 1)


class AravisSource(Source):
    def __init__(self, uri: SourceURI):
        super().__init__(uri.text)
        options = dict(uri.options)
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ValueError(f"unknown gige+aravis option(s) {', '.join(sorted(unknown))}; "
                             f"options: {', '.join(sorted(_OPTIONS))}")
        self._arv = arv = aravis()
        self.default_timeout_s = float(options.get("timeout", 2.0))
        self._buffers = int(options.get("buffers", 8))
        try:
            self.camera = arv.Camera.new(uri.target or None)
        except Exception as e:  # GLib.Error: no such device
            arv.update_device_list()
            found = [{"id": arv.get_device_id(i), "serial": arv.get_device_serial_nbr(i),
                      "model": arv.get_device_model(i), "address": arv.get_device_address(i)}
                     for i in range(arv.get_n_devices())]
            raise DeviceNotFound(uri.target or "first GigE Vision camera", found) from e
        self._configure(options)
        x, y, width, height = self.camera.get_region()
        fmt = self.camera.get_pixel_format_as_string()
        if not pixels.supported(fmt):
            raise InvalidFeatureValue("PixelFormat", fmt, ", ".join(pixels.CHANNELS), uri.target)
        self._info = {"device": self.camera.get_device_id(), "model": self.camera.get_model_name(),
                      "vendor": self.camera.get_vendor_name(),
                      "serial": self.camera.get_device_serial_number(), "uri": uri.text,
                      "width": width, "height": height, "offset_x": x, "offset_y": y,
                      "pixel_format": fmt, "fps": self.camera.get_frame_rate(), "buffers": self._buffers,
                      "transport": "GigE Vision (Aravis)"}
        self._stream = None
        self._delivered = self._missing = self._errors = self._timeouts = 0
        self._retired_underruns = 0
        self._last_block: int | None = None
        self._rate = DeliveryRate()

    def _configure(self, options: dict) -> None:
        cam, device = self.camera, self.camera.get_device_id()
        try:
            if "pixel_format" in options:
                cam.set_pixel_format_from_string(str(options["pixel_format"]))
            if "width" in options or "height" in options:
                _, _, w, h = cam.get_region()
                cam.set_region(0, 0, int(options.get("width", w)), int(options.get("height", h)))
            if "fps" in options:
                cam.set_frame_rate(float(options["fps"]))
        except Exception as e:  # GLib.Error from a refused register write
            raise SourceError(f"configuring {device} with {options}: {e}") from None
        for key, feature, got in (("width", "Width", cam.get_region()[2]), ("height", "Height", cam.get_region()[3]),
                                  ("pixel_format", "PixelFormat", cam.get_pixel_format_as_string())):
            if key in options and str(got) != str(options[key]):
                raise InvalidFeatureValue(feature, options[key], f"the device kept {got}", device)

    def _start(self) -> None:
        stream = self.camera.create_stream(None, None)
        payload = self.camera.get_payload()
        for _ in range(self._buffers):
            stream.push_buffer(self._arv.Buffer.new_allocate(payload))
        self._stream = stream
        self._last_block = None
        self.camera.start_acquisition()

    def _stop(self) -> None:
        try:
            self.camera.stop_acquisition()
        finally:
            if self._stream is not None:
                self._retired_underruns += self._arv.Stream.get_statistics(self._stream)[2]
                self._stream = None

    def _close(self) -> None:
        self.camera = None

    def _read(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        success = self._arv.BufferStatus.SUCCESS
        while True:
            stream = self._stream
            if not self.streaming or stream is None:
                raise SourceStopped(f"{self.uri} is stopped")
            left_us = int((deadline - time.monotonic()) * 1e6)
            buffer = stream.timeout_pop_buffer(max(0, min(_WAIT_SLICE_US, left_us)))
            if buffer is None:
                if time.monotonic() >= deadline:
                    self._timeouts += 1
                    raise AcquisitionTimeout(timeout_s, self.uri)
                continue
            try:
                block = buffer.get_frame_id()
                self._missing += _gap(self._last_block, block)
                self._last_block = block
                if buffer.get_status() != success:
                    self._errors += 1
                    continue
                info = self._info
                raw = np.frombuffer(buffer.get_data(), np.uint8)
                data = pixels.as_image(raw, info["pixel_format"], buffer.get_image_width(),
                                       buffer.get_image_height()).copy()
                frame = Frame(data=data, frame_id=block, host_timestamp_ns=time.monotonic_ns(),
                              device_timestamp_ns=buffer.get_timestamp() or None,
                              pixel_format=info["pixel_format"], source=self.uri,
                              meta={"system_timestamp_ns": buffer.get_system_timestamp()})
            finally:
                stream.push_buffer(buffer)
            self._delivered += 1
            self._rate.tick(frame.host_timestamp_ns)
            return frame

    @property
    def info(self) -> dict:
        return dict(self._info)

    @property
    def stats(self) -> SourceStats:
        underruns = self._retired_underruns
        if self._stream is not None:
            underruns += self._arv.Stream.get_statistics(self._stream)[2]
        return SourceStats(delivered=self._delivered, dropped=underruns, missing=self._missing,
                           timeouts=self._timeouts, errors=self._errors, fps=self._rate.fps(),
                           acquired=self._delivered + self._errors)
