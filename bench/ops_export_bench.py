"""The operations page's CSV export: streamed from PostgreSQL against building the CSV in memory.

A scratch database gets ``--rows`` rows of ``sociodemo_predictions`` (written by PostgreSQL itself,
``generate_series``). Each measure runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own:

1. ``idle``: the same imports and a connection, no export: the floor every other figure is compared with;
2. ``in_memory`` (the baseline): ``SELECT *`` fetched whole, written with ``csv.writer`` into one string, the
   way a page that "prepares the file" would do it;
3. ``stream``: :func:`pipelines.ops.queries.export_csv` (``COPY ... TO STDOUT`` into a bounded queue of 64 KB
   chunks) consumed and hashed, nothing kept;
4. ``http``: the page's route ``/pipelines/sociodemo/predictions/sociodemo_predictions.csv`` served by uvicorn
   in a child process (Airflow's authentication replaced by a fixed viewer for the benchmark only), downloaded
   over loopback by this process in 64 KB reads; the server's peak RSS comes from ``/proc/<pid>/status``
   (``VmHWM``), before and after the download.

It prints seconds, MB/s, peak RSS and each figure's ratio to the baseline measured in the same run, and exits 1
if the streamed bytes differ from the HTTP bytes or the row count is wrong.

Run (from the repository root; PostgreSQL at 127.0.0.1:5432 with trust auth, or ``--pg``)::

    .venv/bin/python bench/ops_export_bench.py                    # 1,000,000 rows (about 95 MB of CSV)
    .venv/bin/python bench/ops_export_bench.py --rows 200000 --out bench/out/ops_export.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _steps import run_child, run_step  # noqa: E402


def _table():
    from pipelines.ops import catalog

    return catalog.CATALOG["sociodemo"].tables[0]


def step_idle(root: Path, job: dict) -> dict:
    import psycopg2  # noqa: F401 - the same imports as the measures

    from pipelines.ops import queries

    conn = queries.connect_readonly(job["dsn"])
    conn.close()
    return {}


def step_in_memory(root: Path, job: dict) -> dict:
    import csv
    import io

    from pipelines.ops import queries

    conn = queries.connect_readonly(job["dsn"], timeout_ms=0)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM sociodemo_predictions ORDER BY user_id")
            rows = cur.fetchall()
            columns = [d.name for d in cur.description]
    finally:
        conn.close()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    return {"bytes": len(data), "lines": data.count(b"\n")}


def step_stream(root: Path, job: dict) -> dict:
    from pipelines.ops import queries

    digest, size, lines = hashlib.sha256(), 0, 0
    for chunk in queries.export_csv(job["dsn"], _table()):
        digest.update(chunk)
        size += len(chunk)
        lines += chunk.count(b"\n")
    return {"bytes": size, "lines": lines, "sha256": digest.hexdigest()}


def step_serve(root: Path, job: dict) -> dict:
    """The child server of the ``http`` measure (runs until killed)."""
    import uvicorn
    from fastapi import FastAPI

    from pipelines.ops.web import app as web
    from pipelines.ops.web.auth import Viewer, current_viewer

    class Everyone:
        def is_authorized_dag(self, **kw) -> bool:
            return True

    app = web.create_app()
    app.dependency_overrides[current_viewer] = lambda: Viewer(user=None, manager=Everyone())
    root_app = FastAPI()
    root_app.mount("/pipelines-ops", app)
    uvicorn.run(root_app, host="127.0.0.1", port=job["port"], log_level="warning")
    return {}


def _vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_http(dsn: str, work: Path, env: dict) -> dict:
    port = _free_port()
    job = work / "serve.job.json"
    job.write_text(json.dumps({"dsn": dsn, "port": port}))
    server = subprocess.Popen([sys.executable, __file__, "--_step", "serve", "--_root", str(work), "--_job", str(job),
                               "--_result", str(work / "serve.result.json")], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/pipelines-ops/pipelines/sociodemo/predictions/sociodemo_predictions.csv"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the benchmark server did not start") from None
                time.sleep(0.5)
        with urllib.request.urlopen(url.replace(".csv", "?rows=1").replace("/sociodemo_predictions", ""),
                                    timeout=60) as warm:
            warm.read()
        before = _vm(server.pid, "VmHWM")
        digest, size, lines = hashlib.sha256(), 0, 0
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=600) as resp:
            while chunk := resp.read(64 * 1024):
                digest.update(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
        seconds = time.perf_counter() - t
        return {"bytes": size, "lines": lines, "sha256": digest.hexdigest(), "seconds": seconds,
                "server_peak_rss_before_mib": before, "peak_rss_mib": _vm(server.pid, "VmHWM")}
    finally:
        server.terminate()
        server.wait(30)


def _database(admin: str, name: str, rows: int) -> str:
    import psycopg2
    from psycopg2.extensions import make_dsn, parse_dsn

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    p = parse_dsn(make_dsn(**{**parse_dsn(admin), "dbname": name}))
    dsn = f"postgresql://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{name}"
    os.environ["PIPELINES_PG_DSN"] = dsn
    from pipelines import db
    from pipelines.migrate import upgrade

    upgrade(dsn)
    with db.transaction(dsn) as cur:
        cur.execute("""INSERT INTO sociodemo_predictions
                       SELECT lpad(i::text, 9, '0'), (i %% 1000) / 1000.0, i %% 4, ARRAY[0.1, 0.2, 0.3, 0.4],
                              'catboost', '20260305-aaaa1111', DATE '2026-03-01' + i %% 30,
                              TIMESTAMPTZ '2026-03-02 00:00:00+00'
                       FROM generate_series(1, %s) AS i""", (rows,))
        cur.execute("ANALYZE sociodemo_predictions")
    return dsn


def _drop(admin: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin DSN")
    parser.add_argument("--out", type=Path, help="also write every figure as JSON")
    parser.add_argument("--_step")
    parser.add_argument("--_root", type=Path)
    parser.add_argument("--_job", type=Path)
    parser.add_argument("--_result", type=Path)
    args = parser.parse_args()
    steps = {"idle": step_idle, "in_memory": step_in_memory, "stream": step_stream, "serve": step_serve}
    if args._step:
        return run_step(steps, args)

    name = f"ubm_bench_ops_{uuid.uuid4().hex[:8]}"
    print(f"ops export benchmark: {args.rows:,} rows of sociodemo_predictions in {name}", flush=True)
    t = time.perf_counter()
    dsn = _database(args.pg, name, args.rows)
    print(f"  table written in {time.perf_counter() - t:.1f} s", flush=True)
    env = {**os.environ, "PIPELINES_PG_DSN": dsn, "PYTHONPATH": str(REPO)}
    try:
        with tempfile.TemporaryDirectory(prefix="ops-bench-") as tmp:
            work = Path(tmp)
            job = {"dsn": dsn}
            results = {s: run_child(__file__, s, work, job, work, env) for s in ("idle", "in_memory", "stream")}
            results["http"] = measure_http(dsn, work, env)
            h = results["http"]
            print(f"  http: {h['seconds']:.1f} s, server peak RSS {h['server_peak_rss_before_mib']:,.0f} → "
                  f"{h['peak_rss_mib']:,.0f} MiB", flush=True)
    finally:
        _drop(args.pg, name)

    floor = results["idle"]["peak_rss_mib"]
    base = results["in_memory"]
    print(f"\n{'measure':<11}{'seconds':>9}{'MB/s':>9}{'peak RSS MiB':>14}{'over idle':>11}{'× baseline time':>17}"
          f"{'× baseline memory':>19}")
    for label in ("in_memory", "stream", "http"):
        r = results[label]
        extra = r["peak_rss_mib"] - (r.get("server_peak_rss_before_mib") or floor)
        base_extra = base["peak_rss_mib"] - floor
        print(f"{label:<11}{r['seconds']:>9.2f}{r['bytes'] / 1e6 / r['seconds']:>9.1f}{r['peak_rss_mib']:>14,.0f}"
              f"{extra:>11,.0f}{r['seconds'] / base['seconds']:>17.2f}{extra / base_extra:>19.3f}")
    print(f"(idle process: {floor:,.0f} MiB; CSV {results['stream']['bytes'] / 1e6:,.1f} MB, "
          f"{results['stream']['lines'] - 1:,} rows)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": args.rows, **results}, indent=2))
    ok = results["stream"]["sha256"] == results["http"]["sha256"] and results["stream"]["lines"] == args.rows + 1
    if not ok:
        print("MISMATCH: the streamed and downloaded CSV differ, or rows are missing", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
