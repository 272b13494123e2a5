"""Local stand-ins for the platform's services, for machines where none is configured.

* PostgreSQL: a real server from the ``pgserver`` wheel, data under ``$PIPELINES_HOME/pgdata``, reached over a
  Unix socket. It is started on demand (by whichever process first needs it) and keeps running until
  :func:`stop_embedded_postgres`, so the Airflow scheduler's task processes share one server.
* DynamoDB: moto's server mode on a loopback port, a child process of whoever starts it
  (:func:`local_services`), stopped when that context exits.

Production never uses these: there, ``PIPELINES_PG_DSN`` / the ``pipelines_postgres`` connection and the
``pipelines_aws`` connection point at real services.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipelines.settings import configured_pg_dsn, get_settings

log = logging.getLogger(__name__)
logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every pg_ctl call at INFO


_announced: set[str] = set()


def ensure_embedded_postgres() -> str:
    """Start (or reuse) the embedded PostgreSQL and return its DSN (development mode only)."""
    try:
        import pgserver
    except ImportError as exc:  # production images do not ship the development stand-ins
        from pipelines.settings import ConfigError

        raise ConfigError("the embedded PostgreSQL (pgserver) is a development tool and is not installed here: "
                          "configure PIPELINES_PG_DSN or the pipelines_postgres connection") from exc

    pgdata = get_settings().embedded_pgdata
    pgdata.mkdir(parents=True, exist_ok=True)
    _check_reachable_by_server_user(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    if str(pgdata) not in _announced:
        _announced.add(str(pgdata))
        log.info("using the embedded development PostgreSQL in %s (PIPELINES_PG_DSN configures a real one)", pgdata)
    return server.get_uri()


def _check_reachable_by_server_user(pgdata: Path) -> None:
    """Under root, pgserver runs PostgreSQL as the user ``pgserver``, which must be able to walk down to the data
    folder: a parent closed to other users (``/root``, pytest's temporary folders: mode 0700) made the server
    die with a bare "Permission denied" and no log. Say so, and how to fix it."""
    if os.geteuid() != 0:
        return
    from pipelines.settings import ConfigError

    for folder in [pgdata.resolve(), *pgdata.resolve().parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            raise ConfigError(f"the embedded PostgreSQL runs as user 'pgserver' under root and cannot reach "
                              f"{pgdata}: {folder} is closed to other users; set PIPELINES_HOME to a folder "
                              f"outside it, or `chmod o+x {folder}`")


def stop_embedded_postgres() -> bool:
    """Stop the embedded PostgreSQL if it runs (fast shutdown). Returns whether one was running."""
    import psutil

    pgdata = get_settings().embedded_pgdata
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return False
    pid = int(pidfile.read_text().split()[0])
    if not psutil.pid_exists(pid):
        return False
    from pgserver import _commands

    user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs the server as this user under root
    _commands.pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user)
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.1)


@contextlib.contextmanager
def moto_server(port: int | None = None) -> Iterator[str]:
    """Run moto's DynamoDB-compatible server on loopback; yields its endpoint URL."""
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"{endpoint}/moto-api/", timeout=30)
        log.info("moto server (DynamoDB API) on %s", endpoint)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def local_services(stop_postgres: bool = True) -> Iterator[dict[str, str]]:
    """Provide every service the pipelines need, starting local stand-ins for the unconfigured ones.

    Exports the chosen endpoints into ``os.environ`` (so child processes such as Airflow's task runners see
    them) and yields that mapping. Only what this context started is stopped on exit.
    """
    exported: dict[str, str] = {"PIPELINES_LOCAL_SERVICES": "1"}
    started_pg = False
    with contextlib.ExitStack() as stack:
        if configured_pg_dsn() is None:
            started_pg = not (get_settings().embedded_pgdata / "postmaster.pid").exists()
            exported["PIPELINES_PG_DSN"] = ensure_embedded_postgres()
        if get_settings().dynamodb_endpoint is None and "AIRFLOW_CONN_PIPELINES_AWS" not in os.environ:
            exported["PIPELINES_DYNAMODB_ENDPOINT"] = stack.enter_context(moto_server())
        previous = {k: os.environ.get(k) for k in exported}
        os.environ.update(exported)
        get_settings.cache_clear()
        try:
            yield exported
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()
            if started_pg and stop_postgres:
                stop_embedded_postgres()
