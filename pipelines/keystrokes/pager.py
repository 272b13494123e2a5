"""Read the challenge's paged JSON from ``http(s)://``, ``file://`` or the data root, following ``next``.

* **HTTP** goes through ``requests`` with urllib3's :class:`~urllib3.util.Retry` (exponential backoff, retries
  on connection errors, read timeouts and 5xx/429 answers, ``Retry-After`` respected) and a (connect, read)
  timeout; no hand-written retry loop. A page bigger than ``max_page_bytes`` is refused while it streams in.
* **file://** URLs and **data-root paths** (no scheme, e.g. ``keystrokes/generated/<name>/pages/user_x.json``)
  are read directly.
* **Downloads are cached by URL in the data root** (``keystrokes/cache/pages/<hash>.json``), and a finished
  crawl leaves a manifest (``keystrokes/cache/crawls/<hash of the start URL>.json``) listing its pages, so the
  same data is not pulled twice: a second ingest of the URL reads the cache without any request
  (``refresh=True`` downloads again). Only pages that parse and carry the required keys are cached.

``next`` must be a file name relative to the page (as the challenge serves it): a URL elsewhere, a path or
``..`` is refused (a page cannot send the crawler to another host or outside its folder). The crawl stops
with an error naming the page on: a page seen twice (a loop), the page cap, an HTTP error after the retries,
a page that is not JSON, or a training page without ``user_data`` / ``user_label``. A page whose ``next`` key
is missing altogether ends the chain, and the result says so (``pages_without_next``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from pipelines.errors import InputSchemaError, MissingPartitionError, PipelineError
from pipelines.keystrokes import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

USER_AGENT = "ubm-keystrokes-pager/1.0"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class PageFetchError(PipelineError):
    """A page could not be fetched after the retries (an outage: retrying later may help)."""


@dataclass(frozen=True)
class FetchConfig:
    """How pages are fetched (the CLI's and the DAG Params' knobs)."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5  # seconds; urllib3 sleeps backoff * 2^(retry - 1) between attempts
    backoff_max: float = 30.0
    max_pages: int = schema.DEFAULT_MAX_PAGES
    max_page_bytes: int = schema.MAX_PAGE_BYTES
    refresh: bool = False  # download again even if the crawl is cached


@dataclass
class Page:
    """One fetched page: where it came from and its parsed document."""

    url: str
    name: str  # the file name (what ``next`` names)
    index: int  # position in the chain
    doc: dict
    size: int
    cached: bool


@dataclass
class CrawlStats:
    """What a crawl did: pages, bytes, how many came from the cache, time, and pages without ``next``."""

    start_url: str
    pages: int = 0
    bytes: int = 0
    fetched: int = 0
    from_cache: int = 0
    seconds: float = 0.0
    pages_without_next: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"start_url": self.start_url, "pages": self.pages, "bytes": self.bytes, "fetched": self.fetched,
                "from_cache": self.from_cache, "seconds": round(self.seconds, 3),
                "pages_without_next": self.pages_without_next}


def is_http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def describe_source(url: str) -> str:
    scheme = urlsplit(url).scheme
    return {"http": "HTTP", "https": "HTTPS", "file": "local file"}.get(scheme, "data root")


def check_url(url: str) -> str:
    """A URL the pager can read: ``http(s)://``, ``file://`` or a data-root path (refused: other schemes)."""
    from pipelines.keystrokes.errors import BadParams

    url = (url or "").strip() if isinstance(url, str) else ""
    if not url:
        raise BadParams("no data URL given (an http(s):// URL, a file:// URL or a path in the data root)")
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https", "file", ""):
        raise BadParams(f"{url}: unsupported scheme {scheme!r} (use http(s)://, file:// or a data-root path)")
    if not scheme and (url.startswith("/") or ".." in url.split("/")):
        raise BadParams(f"{url}: a data-root path is relative and stays inside the data root (for a local file "
                        "use file:///...)")
    return url


def session(config: FetchConfig):
    """A ``requests`` session whose adapter retries with backoff (urllib3 ``Retry``)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    retry = Retry(total=config.retries, connect=config.retries, read=config.retries, status=config.retries,
                  other=0, backoff_factor=config.backoff, backoff_max=config.backoff_max,
                  status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET"}),
                  respect_retry_after_header=True, raise_on_status=True)
    s = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=2, pool_maxsize=2)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    return s


def next_url(page_url: str, next_name: Any) -> str:
    """The URL of the page ``next`` names, relative to ``page_url``; refuses anything but a file name."""
    if not isinstance(next_name, str) or not next_name.strip():
        raise InputSchemaError(f"page {page_url}: 'next' must be a file name or null, got {next_name!r:.80}")
    name = next_name.strip()
    if urlsplit(name).scheme or "/" in name or "\\" in name or name in (".", "..") or unquote(name) != name \
            or any(ord(c) < 32 for c in name):
        raise InputSchemaError(f"page {page_url}: 'next' {name!r:.80} is not a file name relative to the page "
                               "(a URL elsewhere, a path or '..' is refused)")
    if urlsplit(page_url).scheme:
        return urljoin(page_url, name)
    return posixpath.join(posixpath.dirname(page_url), name)


def page_name(url: str) -> str:
    return posixpath.basename(urlsplit(url).path) if urlsplit(url).scheme else posixpath.basename(url)


def _cache_rel(url: str) -> str:
    return f"{schema.CACHE_PAGES}/{hashlib.sha256(url.encode()).hexdigest()[:32]}.json"


def _crawl_rel(start_url: str) -> str:
    return f"{schema.CACHE_CRAWLS}/{hashlib.sha256(start_url.encode()).hexdigest()[:32]}.json"


class Pager:
    """Fetch pages (HTTP with retries and a cache, files, the data root) as parsed JSON documents."""

    def __init__(self, config: FetchConfig | None = None, root: DataRoot | None = None) -> None:
        self.config = config or FetchConfig()
        self.root = root or DataRoot()
        self._session = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> Pager:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ raw bytes
    def _http(self, url: str) -> bytes:
        import requests

        if self._session is None:
            self._session = session(self.config)
        timeout = (self.config.connect_timeout, self.config.read_timeout)
        tries = self.config.retries + 1
        try:
            with self._session.get(url, timeout=timeout, stream=True) as resp:
                if resp.status_code == 404:
                    raise MissingPartitionError(f"page {url}: HTTP 404 Not Found")
                if resp.status_code >= 400:
                    raise PageFetchError(f"page {url}: HTTP {resp.status_code} {resp.reason}")
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.config.max_page_bytes:
                    raise InputSchemaError(f"page {url}: {int(declared):,} bytes, more than the limit "
                                           f"{self.config.max_page_bytes:,}")
                chunks, size = [], 0
                for chunk in resp.iter_content(chunk_size=1 << 16):
                    size += len(chunk)
                    if size > self.config.max_page_bytes:
                        raise InputSchemaError(f"page {url}: more than the limit of {self.config.max_page_bytes:,} "
                                               "bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except requests.exceptions.RetryError as exc:
            raise PageFetchError(f"page {url}: still failing after {tries} attempts ({_reason(exc)})") from exc
        except requests.exceptions.Timeout as exc:
            raise PageFetchError(f"page {url}: timed out (read timeout {self.config.read_timeout:g} s, "
                                 f"{tries} attempts)") from exc
        except requests.exceptions.ConnectionError as exc:
            if "timed out" in str(exc).lower():
                raise PageFetchError(f"page {url}: timed out (read timeout {self.config.read_timeout:g} s, "
                                     f"{tries} attempts)") from exc
            raise PageFetchError(f"page {url}: connection failed after {tries} attempts ({_reason(exc)})") from exc
        except requests.exceptions.RequestException as exc:
            raise PageFetchError(f"page {url}: {type(exc).__name__}: {_reason(exc)}") from exc

    def _local(self, url: str) -> bytes:
        parts = urlsplit(url)
        try:
            if parts.scheme == "file":
                path = Path(unquote(parts.path))
                if path.stat().st_size > self.config.max_page_bytes:
                    raise InputSchemaError(f"page {url}: more than the limit of {self.config.max_page_bytes:,} bytes")
                return path.read_bytes()
            if not self.root.exists(url):
                raise FileNotFoundError(url)
            return self.root.read_bytes(url)
        except FileNotFoundError as exc:
            where = url if parts.scheme else self.root.join(url)
            raise MissingPartitionError(f"page {where}: no such file") from exc
        except IsADirectoryError as exc:
            raise MissingPartitionError(f"page {url}: is a folder, not a page") from exc

    def read(self, url: str, use_cache: bool = True) -> tuple[bytes, bool]:
        """A page's bytes and whether they came from the cache (HTTP pages only are cached)."""
        if not is_http(url):
            return self._local(url), False
        rel = _cache_rel(url)
        if use_cache and not self.config.refresh and self.root.exists(rel):
            return self.root.read_bytes(rel), True
        return self._http(url), False

    def cache(self, url: str, data: bytes) -> None:
        if is_http(url):
            self.root.put_bytes(data, _cache_rel(url))

    # ------------------------------------------------------------------ documents
    def document(self, url: str, required: tuple[str, ...]) -> tuple[dict, int, bool]:
        """One page parsed and checked for ``required`` keys (cached once it passes)."""
        data, cached = self.read(url)
        doc = parse_page(url, data, required)
        if not cached:
            self.cache(url, data)
        return doc, len(data), cached

    def crawl(self, start_url: str, stats: CrawlStats | None = None) -> Iterator[Page]:
        """Training pages from ``start_url`` following ``next`` until null; see the module docstring."""
        started = time.perf_counter()
        stats = stats if stats is not None else CrawlStats(start_url)
        seen: dict[str, int] = {}
        url: str | None = start_url
        previous = None
        cached_crawl = is_http(start_url) and not self.config.refresh and self.root.exists(_crawl_rel(start_url))
        while url is not None:
            if url in seen:
                raise InputSchemaError(f"page {url} was seen twice (a loop: page {stats.pages - 1}, {previous}, "
                                       f"links back to page {seen[url]})")
            if stats.pages >= self.config.max_pages:
                raise InputSchemaError(f"page cap reached: {self.config.max_pages:,} pages read and page {url} "
                                       "still follows (raise max_pages if the data is really that big)")
            seen[url] = stats.pages
            doc, size, cached = self.document(url, ("user_data", "user_label"))
            stats.pages += 1
            stats.bytes += size
            stats.from_cache += cached
            stats.fetched += not cached
            stats.urls.append(url)
            page = Page(url=url, name=page_name(url), index=stats.pages - 1, doc=doc, size=size, cached=cached)
            previous = url
            if "next" not in doc:
                stats.pages_without_next.append(url)
                log.warning("page %s has no 'next' key: taken as the last page", url)
                url = None
            else:
                url = None if doc["next"] is None else next_url(url, doc["next"])
            stats.seconds = time.perf_counter() - started
            yield page
        stats.seconds = time.perf_counter() - started
        if is_http(start_url) and not cached_crawl:
            manifest = {"start_url": start_url, "pages": stats.urls, "complete": True,
                        "fetched_at": datetime.now(UTC).isoformat()}
            self.root.put_bytes(json.dumps(manifest).encode(), _crawl_rel(start_url))
        log.info("crawled %d pages from %s (%d fetched, %d from the cache) in %.1f s", stats.pages, start_url,
                 stats.fetched, stats.from_cache, stats.seconds)


def _reason(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error: the cause of ``MaxRetryError`` rather than its preamble."""
    inner = exc.args[0] if exc.args else exc
    cause = getattr(inner, "reason", None)
    text = " ".join(str(cause if cause is not None else exc).split())
    return text[:200]


def parse_page(url: str, data: bytes, required: tuple[str, ...]) -> dict:
    """A page's JSON object, with the required keys of the right type; errors name the page."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        snippet = data[:60].decode("utf-8", "replace").replace("\n", " ")
        raise InputSchemaError(f"page {url} is not JSON ({type(exc).__name__}: {str(exc)[:80]}; starts with "
                               f"{snippet!r})") from exc
    if not isinstance(doc, dict):
        raise InputSchemaError(f"page {url} is not a JSON object (a {type(doc).__name__})")
    missing = [k for k in required if k not in doc]
    if missing:
        raise InputSchemaError(f"page {url} lacks {', '.join(repr(k) for k in missing)} (has "
                               f"{sorted(map(str, doc))[:6]})")
    for key in ("user_data", "attempts"):
        if key in required and not isinstance(doc[key], list):
            raise InputSchemaError(f"page {url}: {key!r} must be a list of attempts, got {type(doc[key]).__name__}")
    if "user_label" in required:
        label = doc["user_label"]
        if not isinstance(label, str) or not schema.USER_LABEL_RE.match(label):
            raise InputSchemaError(f"page {url}: 'user_label' {label!r:.60} is not a user id (letters, digits, "
                                   "'_', '.', ':', '-'; at most 128)")
    return doc
