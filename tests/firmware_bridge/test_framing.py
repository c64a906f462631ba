"""firmware_bridge.radar.framing: the compiled magic-word search against bytes.find."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.radar import _framing
from firmware_bridge.radar.framing import MAGIC_WORD, find_magic, find_magic_reference
from sdk.errors import InputError


def test_magic_word_is_the_ti_mmwave_sync_pattern():
    assert MAGIC_WORD == b"\x02\x01\x04\x03\x06\x05\x08\x07"


def test_find_magic_is_compiled():
    assert _framing.__file__.endswith((".so", ".pyd")), _framing.__file__


# Buffers built from pieces that make near misses likely: the magic word, its prefixes and
# suffixes, its first byte repeated, and random bytes.
pieces = st.one_of(
    st.just(MAGIC_WORD),
    st.integers(1, 7).map(lambda n: MAGIC_WORD[:n]),
    st.integers(1, 7).map(lambda n: MAGIC_WORD[n:]),
    st.integers(1, 4).map(lambda n: b"\x02" * n),
    st.binary(max_size=12),
)
buffers = st.lists(pieces, max_size=12).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(buf=buffers, start=st.integers(0, 120))
def test_matches_reference_on_planted_and_partial_magic_words(buf, start):
    want = find_magic_reference(buf, start)
    assert find_magic(buf, start) == want
    assert find_magic(bytearray(buf), start) == want
    assert find_magic(memoryview(buf), start) == want
    assert find_magic(np.frombuffer(buf, dtype=np.uint8), start) == want


@settings(max_examples=200, deadline=None)
@given(buf=st.binary(max_size=64), at=st.integers(0, 64), start=st.integers(0, 80))
def test_finds_a_planted_word_on_random_bytes(buf, at, start):
    at = min(at, len(buf))
    planted = buf[:at] + MAGIC_WORD + buf[at:]
    found = find_magic(planted, start)
    assert found == find_magic_reference(planted, start)
    if start <= at:
        assert 0 <= found <= at
        assert planted[found:found + 8] == MAGIC_WORD


def test_cases_by_hand():
    assert find_magic(MAGIC_WORD) == 0
    assert find_magic(b"\x00" * 5 + MAGIC_WORD) == 5
    assert find_magic(b"\x02\x01\x04" + MAGIC_WORD) == 3          # a false start, then the word
    assert find_magic(MAGIC_WORD + MAGIC_WORD, 1) == 8            # the second of two
    assert find_magic(MAGIC_WORD[:7]) == -1                       # truncated at the end
    assert find_magic(b"x" + MAGIC_WORD[:7]) == -1
    assert find_magic(MAGIC_WORD, 1) == -1


@pytest.mark.parametrize("buf", [b"", bytearray(), memoryview(b""), np.zeros(0, np.uint8)])
def test_empty_buffers(buf):
    assert find_magic(buf) == -1
    assert find_magic(buf, 10) == -1
    assert find_magic_reference(buf) == -1


def test_start_past_the_end():
    buf = b"\x00" + MAGIC_WORD
    assert find_magic(buf, len(buf)) == -1
    assert find_magic(buf, len(buf) + 100) == -1
    assert find_magic(buf, 2) == -1
    assert find_magic(buf, 1) == 1


def test_never_reads_past_the_buffer():
    # A view ending one byte before the end of a complete magic word must not see it.
    backing = bytearray(b"\xff" * 3 + MAGIC_WORD)
    view = memoryview(backing)[: len(backing) - 1]
    assert find_magic(view) == -1
    arr = np.frombuffer(bytes(backing), dtype=np.uint8)[:-1]
    assert find_magic(arr) == -1
    assert find_magic(memoryview(backing)) == 3


def test_non_contiguous_inputs_are_searched_correctly():
    data = np.zeros(40, dtype=np.uint8)
    data[10:26:2] = np.frombuffer(MAGIC_WORD, dtype=np.uint8)
    strided = data[::2]
    assert not strided.flags.c_contiguous
    assert find_magic(strided) == 5 == find_magic_reference(strided)
    assert find_magic(memoryview(data)[::2]) == 5


def test_bad_inputs_are_rejected():
    with pytest.raises(InputError, match="uint8"):
        find_magic(np.zeros(16, dtype=np.int16))
    with pytest.raises(InputError, match="1-D"):
        find_magic(np.zeros((2, 8), dtype=np.uint8))
    with pytest.raises(InputError, match="str"):
        find_magic("0201")
    with pytest.raises(InputError, match="start"):
        find_magic(MAGIC_WORD, -1)
    with pytest.raises(ValueError, match="start"):
        _framing.find_magic(MAGIC_WORD, -1)
