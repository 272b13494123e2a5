"""Post ids: the compiled MD5 kernel, DuckDB and the reference in ``schema.post_id`` agree on every length
around MD5's 55/56/64-byte padding boundaries, on non-ASCII text and on odd times."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.engagement import post_ids, schema

TITLES = ["", "a", "x" * 44, "y" * 45, "z" * 52, "w" * 53, "v" * 110, "Москва 北京 São Paulo, \"quoted\"",
          "t" * 1000, "line\nbreak"]
AUTHORS = ["polar", "", "bob", "é" * 40, "a", "b", "c", "d", "e", "f"]
TIMES = [1201232046, 0, -5, 1451606518, 2**40, 7, 8, 9, 10, 11]
EXPECTED = [schema.post_id(t, a, ti) for t, a, ti in zip(TIMES, AUTHORS, TITLES, strict=True)]


@pytest.mark.parametrize("path", ["kernel", "duckdb"])
def test_every_path_gives_the_reference_ids(path, monkeypatch):
    if path == "kernel":
        pytest.importorskip("numba")
        monkeypatch.setattr(post_ids, "KERNEL_MIN_ROWS", 1)
    else:
        monkeypatch.setattr(post_ids, "KERNEL_MIN_ROWS", 10**9)
    ids = post_ids.post_ids(pa.array(TIMES, pa.int64()), pa.array(AUTHORS), pa.array(TITLES))
    assert ids.tolist() == EXPECTED
    assert all(0 <= i < 2**63 for i in ids.tolist()) and len(set(EXPECTED)) == len(EXPECTED)


def test_a_sliced_chunked_column_is_hashed_in_place(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr(post_ids, "KERNEL_MIN_ROWS", 1)
    titles = pa.chunked_array([pa.array(TITLES[:4]), pa.array(TITLES[4:])])
    ids = post_ids.post_ids(pa.array(TIMES, pa.int64()).slice(2), pa.array(AUTHORS).slice(2), titles.slice(2))
    assert ids.tolist() == EXPECTED[2:]
