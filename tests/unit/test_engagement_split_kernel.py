"""The compiled record scan against the numpy splitter it replaced (tests/engagement_reference_splitter.py):
on random and hostile bytes, cut into chunks anywhere, both give the same good records, the same refused ones
(offset, reason, detail, text), the same carry and the same control flag at every chunk."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.engagement import split_kernel
from pipelines.engagement.records import RecordSplitter
from tests.engagement_reference_splitter import NumpyRecordSplitter


def chunked(splitter, data: bytes, chunk: int, view: bool = False) -> list[tuple]:
    """Every chunk's split as plain values, fed as the converter feeds them (``view``: as a memoryview of a
    writable buffer, as the converter's reused buffers are)."""
    out, carry, offset, pos = [], b"", 0, 0
    while True:
        piece = data[pos: pos + chunk]
        pos += len(piece)
        final = pos >= len(data)
        buf = carry + piece
        result = splitter.split(memoryview(bytearray(buf)) if view else buf, offset, final)
        out.append((bytes(result.body), [(b.offset, b.reason, b.detail, b.text) for b in result.bad],
                    result.carry, bool(result.control)))
        carry = result.carry
        offset += len(buf) - len(carry)
        if final:
            return out


def assert_same(data: bytes, chunk: int, n_fields: int = 3, **limits) -> None:
    limits = {"max_record_bytes": 64, "max_record_lines": 4, **limits}
    expected = chunked(NumpyRecordSplitter(n_fields, **limits), data, chunk)
    assert chunked(RecordSplitter(n_fields, **limits), data, chunk) == expected
    assert chunked(RecordSplitter(n_fields, **limits), data, chunk, view=True) == expected


_PIECES = ['a', 'b', 'é', ' ', ',', '"', '""', '\n', '\r\n', '\r', '\x00', '\x07', '\x7f', '\t', 'x' * 70,
           '"\n', '\n"', ',"', '",', '1,2,3\n', '"a\nb",c,d\n', 'He said "hi" now']


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.sampled_from(_PIECES), max_size=60), chunk=st.integers(1, 80),
       n_fields=st.integers(1, 4), max_lines=st.integers(1, 5), max_bytes=st.integers(16, 90))
def test_same_as_numpy_on_hostile_fragments(parts, chunk, n_fields, max_lines, max_bytes):
    data = "".join(parts).encode()
    assert_same(data, chunk, n_fields, max_record_bytes=max_bytes, max_record_lines=max_lines)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), chunk=st.integers(1, 120))
def test_same_as_numpy_on_random_bytes(data, chunk):
    assert_same(data, chunk)


@pytest.mark.parametrize("seed", range(8))
def test_same_as_numpy_on_a_large_dirty_file(seed):
    """Mostly good rows, with every kind of damage sprinkled in, in big and odd chunks."""
    rng = random.Random(seed)
    rows = []
    for i in range(4000):
        title = rng.choice(["plain title", '"quoted, with comma"', '"multi\nline title"', '"doubled ""q"" ok"',
                            'He said "hi" now', '"open never closed', "x" * rng.randint(0, 300), '"a\r\nb"',
                            "tab\there", "nul\x00here", '"stray "q" inside"', ""])
        row = f"{i},{title},{rng.choice(['a', 'b,extra', ''])}"
        rows.append(row + rng.choice(["\n", "\r\n", "\n", "\n"]))
    data = "".join(rows).encode()
    for chunk in (rng.randint(50, 500), 4096, 65_536, len(data) + 1):
        assert_same(data, chunk, 3, max_record_bytes=256, max_record_lines=5)


def test_many_suspects_fill_the_piece_buffer():
    """More good records with stray quotes than the scan's buffer holds: it resumes, nothing is lost."""
    data = b"".join(b'%d,a"b"c,d\n%d,ok,ok\n' % (i, i) for i in range(5000))
    assert_same(data, len(data) + 1)
    assert_same(data, 777)


def test_plainly_valid_agrees_with_csv():
    """Where the scan vouches for a multi-line record, Python's strict csv agrees (it is asked otherwise)."""
    rng = random.Random(1)
    alphabet = ['a', ',', '"', '""', '\n', '\r\n', '\r', '\x00', 'é']
    splitter = RecordSplitter(3)
    for _ in range(20_000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))).encode() + b"\n"
        a = np.frombuffer(raw, np.uint8)
        if split_kernel.plainly_valid(a, 0, len(raw), 3, ord(",")):
            assert splitter._valid_record(raw), raw
