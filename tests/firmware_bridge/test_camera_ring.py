"""The shared-memory frame ring alone (no camera), and the pixel-format views over its slots."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

from firmware_bridge.camera import pixels
from firmware_bridge.camera.ring import Counter, FrameRing, RingSync

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def make_ring():
    rings = []

    def make(slots, slot_bytes=16):
        ring = FrameRing.create(slots, slot_bytes, RingSync(SPAWN))
        rings.append(ring)
        return ring

    yield make
    for ring in rings:
        ring.close()


def write(ring, frame_id, block=False, device_ts=None):
    slot = ring.claim(block)
    if slot is not None:
        ring.slot(slot)[:] = frame_id
        ring.publish(slot, frame_id, 1000 + frame_id, device_ts)
    return slot


def read(ring, timeout=0.01):
    meta = ring.take(timeout)
    if meta is None:
        return None
    value = int(ring.slot(meta.index)[0])
    ring.release(meta.index)
    assert value == meta.frame_id
    return meta


def test_frames_come_out_in_order_with_their_metadata(make_ring):
    ring = make_ring(4)
    write(ring, 7, device_ts=123)
    write(ring, 8)
    first, second = read(ring), read(ring)
    assert (first.frame_id, first.host_timestamp_ns, first.device_timestamp_ns) == (7, 1007, 123)
    assert (second.frame_id, second.device_timestamp_ns) == (8, None)
    assert second.seq == first.seq + 1
    assert read(ring) is None


def test_newest_wins_overwrites_the_oldest_unread_frame(make_ring):
    ring = make_ring(2)
    for frame_id in (1, 2, 3, 4):
        write(ring, frame_id)
    assert ring.counter(Counter.DROPPED) == 2
    assert [read(ring).frame_id, read(ring).frame_id] == [3, 4]


def test_newest_wins_refuses_only_when_the_reader_holds_every_slot(make_ring):
    ring = make_ring(1)
    write(ring, 1)
    held = ring.take(0.01)  # a read_view() in progress
    assert write(ring, 2) is None and ring.counter(Counter.DROPPED) == 1
    ring.release(held.index)
    assert write(ring, 3) is not None and read(ring).frame_id == 3


def test_block_waits_for_a_free_slot_and_counts_nothing(make_ring):
    ring = make_ring(1)
    write(ring, 1, block=True)
    started = time.monotonic()
    assert ring.claim(block=True, wait_s=0.05) is None
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.05, lambda: read(ring)).start()
    assert ring.claim(block=True, wait_s=2.0) is not None  # woken by the release
    assert ring.counter(Counter.DROPPED) == 0


def test_take_waits_until_a_frame_is_published(make_ring):
    ring = make_ring(2)
    threading.Timer(0.05, write, (ring, 5)).start()
    meta = ring.take(2.0)
    assert meta is not None and meta.frame_id == 5


def test_discard_unread_counts_what_is_thrown_away(make_ring):
    ring = make_ring(3)
    write(ring, 1), write(ring, 2)
    assert ring.unread() == 2 and ring.discard_unread() == 2 and ring.unread() == 0


def test_close_unlinks_the_segment():
    ring = FrameRing.create(2, 64, RingSync(SPAWN))
    path = f"/dev/shm/{ring.spec.name}"
    assert os.path.exists(path) or not os.path.isdir("/dev/shm")
    ring.close()
    assert not os.path.exists(path)


def _produce(spec, sync, count):
    ring = FrameRing.attach(spec, sync)
    for frame_id in range(1, count + 1):
        slot = None
        while slot is None:
            slot = ring.claim(block=True, wait_s=0.1)
        ring.slot(slot)[:] = frame_id % 256
        ring.publish(slot, frame_id, time.monotonic_ns(), None)
    ring.close()


def test_another_process_fills_the_ring_without_losing_a_frame():
    sync = RingSync(SPAWN)
    ring = FrameRing.create(3, 1024, sync)
    producer = SPAWN.Process(target=_produce, args=(ring.spec, sync, 200))
    producer.start()
    try:
        ids = []
        while len(ids) < 200:
            meta = ring.take(10.0)
            assert meta is not None, "producer stalled"
            assert np.all(ring.slot(meta.index) == meta.frame_id % 256)  # no torn frame
            ids.append(meta.frame_id)
            ring.release(meta.index)
        assert ids == list(range(1, 201))
    finally:
        producer.join(10)
        ring.close()
    assert producer.exitcode == 0


@pytest.mark.parametrize("pixel_format, shape", [
    ("Mono8", (3, 4)), ("BayerRG8", (3, 4)), ("RGB8", (3, 4, 3)), ("BGR8", (3, 4, 3)),
    ("RGBa8", (3, 4, 4)),
])
def test_pixel_formats_are_views_of_the_slot(pixel_format, shape):
    raw = np.arange(100, dtype=np.uint8)
    image = pixels.as_image(raw, pixel_format, width=4, height=3)
    assert image.shape == shape and image.dtype == np.uint8
    assert np.shares_memory(image, raw)
    assert pixels.image_nbytes(pixel_format, 4, 3) == image.size
    assert not pixels.supported("Mono12Packed")
