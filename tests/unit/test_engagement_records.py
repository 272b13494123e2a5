"""The record splitter: hand-made CSV with quotes, embedded newlines, CRLF, broken quoting and overlong lines,
and the property that cutting the stream into chunks anywhere changes nothing."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.engagement.records import RecordSplitter


def split_all(data: bytes, chunk: int, n_fields: int = 3, **limits) -> tuple[bytes, list[tuple[int, str]]]:
    """Feed ``data`` to a splitter ``chunk`` bytes at a time, as the converter does."""
    splitter = RecordSplitter(n_fields, **{"max_record_bytes": 200, "max_record_lines": 5, **limits})
    body, bad, carry, offset, pos = b"", [], b"", 0, 0
    while True:
        piece = data[pos: pos + chunk]
        pos += len(piece)
        final = pos >= len(data)
        buf = carry + piece
        result = splitter.split(buf, offset, final)
        body += bytes(result.body)
        bad += [(b.offset, b.reason) for b in result.bad]
        carry = result.carry
        offset += len(buf) - len(carry)
        if final:
            return body, bad


GOOD = (b'1,plain,x\n2,"with, comma",y\n3,"multi\nline",z\n4,"ok ""fine""",z\r\n5,He said "hi" now,q\n'
        b'6,"caf\xc3\xa9, \xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0",w\n')


def test_good_records_pass_unchanged():
    body, bad = split_all(GOOD, len(GOOD) + 1)
    assert body == GOOD and bad == []


def test_an_unclosed_quote_costs_its_line_only():
    data = b"1,a,b\n" + b'2,"never closed,c\n' + b"".join(b"%d,f,g\n" % i for i in range(3, 20))
    body, bad = split_all(data, 7)
    assert bad == [(6, "broken_quoting")]
    assert body == b"1,a,b\n" + b"".join(b"%d,f,g\n" % i for i in range(3, 20))


def test_two_broken_lines_close_together_keep_the_good_line_between():
    data = b'1,"a,b\n2,x,y\n3,"c,d\n4,e,f\n'
    body, bad = split_all(data, 1000)
    assert body == b"2,x,y\n4,e,f\n"
    assert bad == [(0, "broken_quoting"), (13, "broken_quoting")]


def test_a_real_multiline_title_between_broken_lines_is_kept():
    data = b'1,"a,b\n2,"multi\nline",y\n3,"c,d\n4,e,f\n'
    body, bad = split_all(data, 1000, max_record_lines=8)
    assert body == b'2,"multi\nline",y\n4,e,f\n'
    assert [r for _, r in bad] == ["broken_quoting", "broken_quoting"]


def test_undoubled_quote_inside_a_quoted_field_is_refused():
    body, bad = split_all(b'1,"He said "hi" now",x\n2,a,b\n', 1000)
    assert body == b"2,a,b\n" and bad == [(0, "broken_quoting")]


def test_file_ending_inside_a_quote():
    body, bad = split_all(b'1,a,b\n2,"open\n3,c,d\n', 1000)
    assert body == b"1,a,b\n3,c,d\n" and bad == [(6, "broken_quoting")]


def test_last_record_without_newline_is_kept():
    body, bad = split_all(b'1,a,b\n2,"tail",c', 4)
    assert body == b'1,a,b\n2,"tail",c' and bad == []


@pytest.mark.parametrize("chunk", [16, 64, 1000])
def test_an_overlong_line_is_one_record_skipped_whole(chunk):
    data = b"1,a,b\n" + b"x" * 900 + b"\n2,c,d\n"
    body, bad = split_all(data, chunk, max_record_bytes=100)
    assert body == b"1,a,b\n2,c,d\n" and bad == [(6, "overlong_record")]


def test_a_multiline_record_must_be_one_valid_record():
    body, bad = split_all(b'1,"a\nb",c,extra\n2,x,y\n', 1000)  # 4 fields, not 3: each line judged alone
    assert body == b"2,x,y\n"
    assert [r for _, r in bad] == ["broken_quoting", "broken_quoting"]


def test_control_characters_are_flagged_on_the_chunk():
    splitter = RecordSplitter(3)
    assert not splitter.split(b"1,a\tb,c\r\n", 0, True).control
    assert splitter.split(b"1,a\x00b,c\n", 0, True).control
    assert splitter.split(b"1,a\x7fb,c\n", 0, True).control


_field = st.text(alphabet=st.sampled_from([*'ab ,"\n\r', "é"]), max_size=12)


@settings(max_examples=120, deadline=None)
@given(rows=st.lists(st.tuples(_field, _field, _field), min_size=1, max_size=25),
       junk=st.lists(st.tuples(st.integers(0, 30), st.sampled_from(['"', '\n', '""', ","])), max_size=4),
       chunk=st.integers(1, 97))
def test_chunking_anywhere_gives_the_same_records(rows, junk, chunk):
    """Valid CSV (CRLF, so that a field holding CR is quoted too) comes back whole; with junk injected, any
    chunking gives the same split as no chunking."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    clean = out.getvalue().encode()
    assert split_all(clean, chunk, max_record_bytes=10_000, max_record_lines=50) == (clean, [])
    dirty = bytearray(clean)
    for pos, text in junk:
        dirty[min(pos, len(dirty)):min(pos, len(dirty))] = text.encode()
    dirty = bytes(dirty)
    assert split_all(dirty, chunk) == split_all(dirty, len(dirty) + 1)
