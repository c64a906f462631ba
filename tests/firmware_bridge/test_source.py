"""The Source interface: URIs, the scheme registry, life cycle and iteration, typed errors."""
from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest

import firmware_bridge as fb
from firmware_bridge import errors
from firmware_bridge.source import DeliveryRate, SourceURI


class CountingSource(fb.Source):
    """Emits a frame every ``period`` s until stopped; ``pause`` makes it go quiet."""

    def __init__(self, uri: SourceURI):
        super().__init__(uri.text)
        self.options = uri.options
        self.period = float(uri.options.get("period", 0.001))
        self.pause = threading.Event()
        self.events: list[str] = []
        self._n = 0

    def _start(self):
        self.events.append("start")

    def _stop(self):
        self.events.append("stop")

    def _close(self):
        self.events.append("close")

    def _read(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while self.pause.is_set():
            if not self.streaming:
                raise fb.SourceStopped(self.uri)
            if time.monotonic() > deadline:
                raise fb.AcquisitionTimeout(timeout_s, self.uri)
            time.sleep(0.005)
        time.sleep(self.period)
        self._n += 1
        return fb.Frame(np.full((2, 3), self._n, np.uint8), self._n, time.monotonic_ns(), None,
                        "Mono8", self.uri)

    @property
    def info(self):
        return {"device": "counter"}

    @property
    def stats(self):
        return fb.SourceStats(delivered=self._n)


@pytest.fixture(autouse=True)
def counting_scheme():
    fb.register_source("count", CountingSource)
    yield


def test_uri_parts_and_keyword_overrides():
    uri = SourceURI.parse("genicam://1?cti=/a/b.cti&width=320&drop=newest", width=640, fps=30)
    assert (uri.scheme, uri.target) == ("genicam", "1")
    assert uri.options == {"cti": "/a/b.cti", "width": 640, "drop": "newest", "fps": 30}
    assert SourceURI.parse("genicam://").target == ""
    assert SourceURI.parse("file:///data/run%201.bin").target == "/data/run 1.bin"
    with pytest.raises(ValueError, match="scheme"):
        SourceURI.parse("just-a-name")


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(fb.UnknownScheme) as caught:
        fb.open_source("csi://0")
    assert "count" in caught.value.known and "genicam" in caught.value.known
    assert "genicam" in str(caught.value)


def test_open_source_passes_options_and_read_starts_the_source():
    source = fb.open_source("count://x?period=0.002", extra="y")
    assert source.options == {"period": "0.002", "extra": "y"}
    assert not source.streaming
    frame = source.read()
    assert source.streaming and source.events == ["start"]
    assert frame.data.shape == (2, 3) and frame.source == "count://x?period=0.002"
    source.close()
    assert source.events == ["start", "stop", "close"] and source.closed
    with pytest.raises(fb.SourceStopped):
        source.read()
    source.close()  # idempotent


def test_context_manager_starts_and_closes_even_when_the_body_raises():
    with pytest.raises(RuntimeError):
        with fb.open_source("count://") as source:
            assert source.streaming
            raise RuntimeError("consumer failed")
    assert source.events == ["start", "stop", "close"]


def test_stop_from_another_thread_ends_iteration_and_timeouts_do_not():
    with fb.open_source("count://") as source:
        source.pause.set()  # iteration keeps waiting through read timeouts...
        source.default_timeout_s = 0.02
        threading.Timer(0.05, source.pause.clear).start()
        threading.Timer(0.3, source.stop).start()
        frames = list(source)  # ...and ends at stop()
    assert len(frames) > 5
    assert [f.frame_id for f in frames] == list(range(1, len(frames) + 1))
    assert source.events.count("stop") == 1


def test_read_times_out_with_a_typed_error():
    with fb.open_source("count://") as source:
        source.pause.set()
        with pytest.raises(fb.AcquisitionTimeout) as caught:
            source.read(timeout=0.05)
    assert isinstance(caught.value, TimeoutError) and caught.value.timeout_s == 0.05


def test_default_read_view_lends_a_frame():
    with fb.open_source("count://") as source:
        with source.read_view() as frame:
            assert frame.frame_id == 1


def test_delivery_rate_over_a_sliding_window():
    rate = DeliveryRate(window_s=1.0)
    for i in range(31):
        rate.tick(i * 10_000_000)  # 100 frames/s
    assert rate.fps() == pytest.approx(100.0)
    rate.tick(5_000_000_000)  # everything older than a second falls out
    assert rate.fps() == 0.0


@pytest.mark.parametrize("error", [
    errors.UnknownScheme("csi", ["genicam"]),
    errors.ProducerNotFound("/x.cti"),
    errors.DeviceNotFound("9", [{"serial": "0", "id": "a", "model": "m"}]),
    errors.FeatureNotAvailable("ExposureTime", "Viky (serial 1)"),
    errors.FeatureNotWritable("PayloadSize", "Viky (serial 1)"),
    errors.InvalidFeatureValue("Width", 5000, "100..800 in steps of 1", "Viky (serial 1)"),
    errors.AcquisitionTimeout(0.5, "genicam://1"),
    errors.DeviceLost("Viky (serial 1)", "unplugged"),
])
def test_errors_survive_pickling_across_processes(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and copy.args == error.args
    assert isinstance(copy, fb.SourceError)


def test_device_not_found_says_what_exists():
    error = errors.DeviceNotFound("9", [{"serial": "0", "id": "red", "model": "Viky"},
                                        {"serial": "1", "id": "green", "model": "Viky"}])
    assert "'9'" in str(error) and "serial '0'" in str(error) and "serial '1'" in str(error)
