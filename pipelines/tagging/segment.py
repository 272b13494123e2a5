"""Word segmentation with pycantonese, cached per article content hash, in parallel chunks where it pays.

* :func:`segment_text`: one article's words: its clauses (:func:`pipelines.tagging.text.clauses`) segmented by
  ``pycantonese.segment``, punctuation dropped.
* :func:`segment_many`: many texts, in order; above :data:`MIN_PARALLEL` texts and with more than one worker,
  chunks go to a process pool (forked from a parent that has loaded the segmenter, see :func:`_pool_context`).
  ``bench/tagging_bench.py`` measures where the pool pays.
* :class:`SegmentCache`: the words of every article ever segmented, keyed by content hash, as Parquet parts
  under ``tagging/segments/segmenter=<pycantonese version>/`` in the data root. A new pycantonese version gets
  a new folder: segmentations of different versions are never mixed. Writers only add parts (a uniquely named
  file each), so concurrent runs cannot clobber each other; :meth:`SegmentCache.compact` folds them together.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path

from pipelines.storage import DataRoot
from pipelines.tagging import schema
from pipelines.tagging.text import TEXT_VERSION, clauses, keep_token

log = logging.getLogger(__name__)

#: Fewer texts than this are segmented in-process: starting workers costs about a second each.
MIN_PARALLEL = 2_000
CHUNK_SIZE = 500
#: The pool splits the texts into this many chunks per worker (or chunks of CHUNK_SIZE, if larger).
POOL_CHUNKS_PER_WORKER = 4
#: Parts beyond this many are folded into one by the next :meth:`SegmentCache.add`.
MAX_PARTS = 64


@cache
def segmenter_version() -> str:
    """``pycantonese-5.0.0``: the segmenter whose output the cache and the models depend on."""
    return f"pycantonese-{version('pycantonese')}"


@cache
def feature_version() -> str:
    """A hash of everything that turns an article into features: segmenter version and text rules. A model is
    only served on text prepared the same way as its training text."""
    return hashlib.sha1(f"{segmenter_version()}|{TEXT_VERSION}".encode()).hexdigest()[:12]


def default_workers() -> int:
    """``PIPELINES_TAGGING_SEGMENT_WORKERS``, else the machine's cores."""
    return max(1, int(os.environ.get("PIPELINES_TAGGING_SEGMENT_WORKERS") or os.cpu_count() or 1))


def segment_text(text: str) -> list[str]:
    """The words of one article (clauses segmented by pycantonese; punctuation and whitespace dropped)."""
    import pycantonese

    words: list[str] = []
    for clause in clauses(text):
        words.extend(w for w in pycantonese.segment(clause) if keep_token(w))
    return words


def _segment_chunk(texts: Sequence[str]) -> list[list[str]]:
    return [segment_text(t) for t in texts]


def _segment_chunk_joined(texts: Sequence[str]) -> list[str]:
    """A worker's answer: each text's words joined by spaces (words never hold whitespace: clauses are split on
    it). One string per article crosses the process boundary instead of one per word, which made the parent's
    unpickling a fifth of the pool's CPU time."""
    return [" ".join(segment_text(t)) for t in texts]


def _die_with_parent() -> None:
    """Pool initializer: on Linux, a worker gets SIGTERM when the process that forked it dies (an Airflow task
    killed on its timeout must not leave segmenting orphans behind)."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pool_context():
    """``fork`` where the platform has it: workers start in milliseconds with the segmenter the parent already
    loaded (a spawned worker re-imports pycantonese and reloads its model, 1-3 s each, which ate the pool's
    gain in ``bench/tagging_bench.py``). Workers only run pycantonese, so locks other threads of the parent may
    hold (DuckDB, Arrow) are never touched in them. ``spawn`` elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def segment_many(texts: Sequence[str], workers: int = 1, chunk_size: int = CHUNK_SIZE,
                 progress: bool = False) -> list[list[str]]:
    """Every text's words, in order: in-process, or in chunks over ``workers`` processes when it pays."""
    from tqdm import tqdm

    texts = list(texts)
    bar = tqdm(total=len(texts), desc="segmenting", unit="article", disable=not progress or None)
    try:
        if workers <= 1 or len(texts) < MIN_PARALLEL:
            out = []
            for start in range(0, len(texts), chunk_size):
                out.extend(_segment_chunk(texts[start:start + chunk_size]))
                bar.update(min(chunk_size, len(texts) - start))
            return out
        # Few, large chunks: the parent is out of the loop (on a busy machine it is scheduled late, and workers
        # waiting for their next chunk idled); still several per worker, so they finish close together.
        size = max(chunk_size, -(-len(texts) // (workers * POOL_CHUNKS_PER_WORKER)))
        chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
        out = []
        segment_text("預熱")  # load the segmenter once, here: forked workers inherit it
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                 initializer=_die_with_parent) as pool:
            for chunk, joined in zip(chunks, pool.map(_segment_chunk_joined, chunks), strict=True):
                out.extend(j.split(" ") if j else [] for j in joined)
                bar.update(len(chunk))
        return out
    finally:
        bar.close()


# ----------------------------------------------------------------------------------------------- the cache
@dataclass
class SegmentStats:
    """What one :func:`words_for` call did (for the run registry and the benchmark)."""

    articles: int = 0
    unique: int = 0
    cached: int = 0
    segmented: int = 0
    workers: int = 1
    seconds_lookup: float = 0.0
    seconds_segment: float = 0.0
    seconds_write: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _remove_file(root: DataRoot, rel: str) -> None:
    """Delete one file of the data root (``DataRoot`` has no single-file delete)."""
    if root.is_s3:
        root._s3().delete_object(Bucket=root.bucket, Key=root._key(rel))
    else:
        (root.base / rel).unlink(missing_ok=True)


class SegmentCache:
    """Words per article content hash, as Parquet parts in the data root (see the module docstring)."""

    def __init__(self, root: DataRoot | None = None, segmenter: str | None = None) -> None:
        self.root = root or DataRoot()
        self.segmenter = segmenter or segmenter_version()
        self.rel = f"{schema.SEGMENTS_REL}/segmenter={self.segmenter}"

    def parts(self) -> list[str]:
        return [r for r in self.root.list(self.rel) if r.endswith(".parquet")]

    def _read(self, parts: list[str], wanted: set[str] | None):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        folder = self.root.local_dir(self.rel)
        tables = []
        for rel in parts:
            table = pq.read_table(folder / Path(rel).name, columns=["content_hash", "words"])
            if wanted is not None:
                table = table.filter(pc.is_in(table["content_hash"], value_set=pa.array(sorted(wanted))))
            tables.append(table)
        return tables

    def lookup(self, hashes: Iterable[str]) -> dict[str, list[str]]:
        """The cached words of those of ``hashes`` that were segmented before."""
        wanted = set(hashes)
        if not wanted:
            return {}
        for attempt in range(3):  # a concurrent compaction may remove a part between listing and reading
            try:
                tables = self._read(self.parts(), wanted)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        found: dict[str, list[str]] = {}
        for table in tables:
            for key, words in zip(table["content_hash"].to_pylist(), table["words"].to_pylist(), strict=True):
                found.setdefault(key, words or [])
        return found

    def add(self, words: dict[str, list[str]]) -> str | None:
        """Store new segmentations as one new part (atomic); returns its URI, or None when there was nothing."""
        if not words:
            return None
        uri = self._write_part(words)
        if len(self.parts()) > MAX_PARTS:
            self.compact()
        return uri

    def _write_part(self, words: dict[str, list[str]]) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = sorted(words)
        table = pa.table({"content_hash": pa.array(keys, pa.string()),
                          "words": pa.array([words[k] for k in keys], pa.list_(pa.string()))})
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
        local = self.root.local_path(f"{self.rel}/.{name}.build")
        pq.write_table(table, local, compression="zstd")
        try:
            return self.root.put_file(local, f"{self.rel}/{name}")
        finally:
            local.unlink(missing_ok=True)

    def compact(self) -> dict:
        """Fold every part into one (duplicates dropped). Parts written meanwhile stay as they are."""
        parts = self.parts()
        if len(parts) <= 1:
            return {"parts_before": len(parts), "parts_after": len(parts)}
        words: dict[str, list[str]] = {}
        for table in self._read(parts, None):
            for key, value in zip(table["content_hash"].to_pylist(), table["words"].to_pylist(), strict=True):
                words.setdefault(key, value or [])
        if words:
            self._write_part(words)
        for rel in parts:
            _remove_file(self.root, rel)
        return {"parts_before": len(parts), "parts_after": len(self.parts()), "articles": len(words)}

    def size(self) -> int:
        """Articles in the cache (counting each hash once)."""
        return len({k for t in self._read(self.parts(), None) for k in t["content_hash"].to_pylist()})


def words_for(hashes: Sequence[str], texts: Sequence[str], cache: SegmentCache | None = None,
              workers: int | None = None, progress: bool = False) -> tuple[dict[str, list[str]], SegmentStats]:
    """The words of every article (by content hash): cached ones read, the others segmented and cached."""
    cache = cache or SegmentCache()
    workers = default_workers() if workers is None else workers
    unique = dict(zip(hashes, texts, strict=True))
    stats = SegmentStats(articles=len(hashes), unique=len(unique), workers=workers)
    t = time.perf_counter()
    found = cache.lookup(unique)
    stats.seconds_lookup = time.perf_counter() - t
    missing = [h for h in unique if h not in found]
    stats.cached, stats.segmented = len(found), len(missing)
    if missing:
        t = time.perf_counter()
        words = segment_many([unique[h] for h in missing], workers=workers, progress=progress)
        stats.seconds_segment = time.perf_counter() - t
        t = time.perf_counter()
        new = dict(zip(missing, words, strict=True))
        cache.add(new)
        stats.seconds_write = time.perf_counter() - t
        found.update(new)
    log.info("segmentation: %d articles, %d cached, %d segmented (%d workers) in %.1fs", stats.unique,
             stats.cached, stats.segmented, workers, stats.seconds_segment)
    return found, stats
