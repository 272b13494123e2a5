"""A small local HTTP server for the challenge's pages, with switches for the failures a crawler must survive.

It serves a folder written by :func:`pipelines.keystrokes.generate.write_dataset` (``pages/*.json`` under
``/train/`` and ``test.json`` at ``/test.json``) on loopback, HTTP/1.1 with keep-alive. Switches
(:class:`Faults`), by page name or by position in the chain (``"#3"`` = the fourth page):

* ``fail`` ``{page: n}``: answer HTTP 500 ``n`` times before serving the page (``fail_every``: every page);
* ``loop``: the last page's ``next`` points back to the first page;
* ``malformed``: serve these pages cut in half (not JSON); ``no_label``: without ``user_label``;
* ``no_next``: without the ``next`` key; ``dangling_next``: ``next`` names a page that does not exist;
* ``delay`` ``{page: seconds}``: wait before answering (a read timeout on the client's side).

Used by the tests (``with serving(folder, Faults(...)) as url``), the demo and ``python -m pipelines keystrokes
serve``; :attr:`LocalServer.hits` counts requests per path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Failures to inject (see the module docstring). Pages are named by file name or ``"#<index>"``."""

    fail: dict[str, int] = field(default_factory=dict)
    fail_every: int = 0
    loop: bool = False
    malformed: set[str] = field(default_factory=set)
    no_label: set[str] = field(default_factory=set)
    no_next: set[str] = field(default_factory=set)
    dangling_next: set[str] = field(default_factory=set)
    delay: dict[str, float] = field(default_factory=dict)


class Site:
    """The documents a server answers with, after the faults are applied."""

    def __init__(self, folder: Path, faults: Faults | None = None) -> None:
        self.folder = Path(folder)
        self.faults = faults or Faults()
        self.pages: dict[str, bytes] = {}
        self.chain = self._chain()
        self._index = {name: i for i, name in enumerate(self.chain)}
        self._failures_left: Counter = Counter()
        self._lock = threading.Lock()
        for name in self.chain:
            self.pages[name] = self._render(name)
        test = self.folder / "test.json"
        self.test = test.read_bytes() if test.exists() else None

    def _chain(self) -> list[str]:
        """The pages in ``next`` order, starting from the one no page links to."""
        docs = {p.name: json.loads(p.read_text()) for p in sorted((self.folder / "pages").glob("*.json"))}
        linked = {d.get("next") for d in docs.values()}
        starts = [n for n in docs if n not in linked]
        if len(starts) != 1:
            raise ValueError(f"{self.folder}: cannot find the first page (candidates {starts[:5]})")
        chain, name = [], starts[0]
        while name is not None and name in docs and name not in chain:
            chain.append(name)
            name = docs[name].get("next")
        self._docs = docs
        return chain

    def _matches(self, name: str, which: set[str] | dict) -> bool:
        return name in which or f"#{self._index[name]}" in which

    def _value(self, name: str, which: dict, default):
        return which.get(name, which.get(f"#{self._index[name]}", default))

    def _render(self, name: str) -> bytes:
        doc = dict(self._docs[name])
        f = self.faults
        if f.loop and name == self.chain[-1]:
            doc["next"] = self.chain[0]
        if self._matches(name, f.no_label):
            doc.pop("user_label", None)
        if self._matches(name, f.no_next):
            doc.pop("next", None)
        if self._matches(name, f.dangling_next):
            doc["next"] = "user_does_not_exist.json"
        body = json.dumps(doc).encode()
        if self._matches(name, f.malformed):
            body = body[: len(body) // 2]
        return body

    @property
    def first_page(self) -> str:
        return self.chain[0]

    def respond(self, path: str) -> tuple[int, bytes, float]:
        """(status, body, delay seconds) for a request path."""
        parts = unquote(urlsplit(path).path).strip("/").split("/")
        if parts == ["test.json"] and self.test is not None:
            return 200, self.test, 0.0
        if len(parts) != 2 or parts[0] != "train" or parts[1] not in self.pages:
            return 404, b'{"error": "not found"}', 0.0
        name = parts[1]
        delay = float(self._value(name, self.faults.delay, 0.0))
        with self._lock:
            if name not in self._failures_left:
                self._failures_left[name] = int(self._value(name, self.faults.fail, self.faults.fail_every))
            if self._failures_left[name] > 0:
                self._failures_left[name] -= 1
                return 500, b'{"error": "internal server error (injected)"}', delay
        return 200, self.pages[name], delay


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms delayed-ACK stall per page
    wbufsize = 1 << 16
    server: LocalServer

    def do_GET(self) -> None:
        self.server.count(self.path)
        status, body, delay = self.server.site.respond(self.path)
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True

    def log_message(self, fmt: str, *args) -> None:
        log.debug("serve: " + fmt, *args)


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.site = site
        self.hits: Counter = Counter()
        self._hits_lock = threading.Lock()

    def count(self, path: str) -> None:
        with self._hits_lock:
            self.hits[unquote(urlsplit(path).path)] += 1

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def train_url(self) -> str:
        return f"{self.base_url}/train/{self.site.first_page}"

    @property
    def test_url(self) -> str:
        return f"{self.base_url}/test.json"


@contextlib.contextmanager
def serving(folder: Path, faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0
            ) -> Iterator[LocalServer]:
    """Serve ``folder`` in a background thread on loopback (a free port unless given) until the block ends."""
    server = LocalServer(Site(folder, faults), host, port)
    thread = threading.Thread(target=server.serve_forever, name="keystrokes-serve", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
