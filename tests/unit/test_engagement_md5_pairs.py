"""The MD5 kernel hashes rows two at a time: every count of rows (odd, even, one) and every pairing of short and
long keys gives hashlib's MD5."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("numba")

from pipelines.engagement import post_ids


def reference(t: int, author: str, title: str) -> int:
    digest = hashlib.md5(f"{t}\x1f{author}\x1f{title}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 501])
def test_every_row_count_and_key_length(n, monkeypatch):
    monkeypatch.setattr(post_ids, "KERNEL_MIN_ROWS", 1)
    rng = random.Random(n)
    times = [rng.choice([0, -1, 7, 1201232046, -(2**63), 2**63 - 1]) for _ in range(n)]
    authors = ["é" * rng.randint(0, 40) for _ in range(n)]
    titles = ["x" * rng.choice([0, 1, 30, 33, 34, 35, 97, 98, 200]) for _ in range(n)]
    ids = post_ids.post_ids(pa.array(times, pa.int64()), pa.array(authors), pa.array(titles))
    assert ids.dtype == np.int64
    assert ids.tolist() == [reference(*row) for row in zip(times, authors, titles, strict=True)]
