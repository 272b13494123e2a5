"""The recommendations API under load, on loopback: requests/s and latency for known users, unknown users (the
cold-start fallback) and a mix, at several numbers of concurrent clients, then a soak that watches memory.

1. Starts moto's DynamoDB server on loopback, writes ``--users`` users' records (10 artists each, realistic
   names) and the cold-start lists of every country and age band into a fresh table, and publishes the version.
2. Starts the API (``uvicorn pipelines.recs.api:app``, one process, as ``make serve`` does) on loopback with the
   version-pointer cache on (``PIPELINES_RECS_POINTER_TTL`` = 5 s, the default).
3. Checks one answer of each kind, then for each scenario (``known``, ``unknown``, ``mix`` = 80% known) and
   each concurrency (``--clients``, default 1, 16, 64) runs ``wrk`` (Debian package ``wrk``) for
   ``--seconds``: requests/s, p50/p90/p99 latency, non-2xx answers and socket errors. The paths are drawn at
   random from lists of real ids (known) and fresh ids with countries and ages (unknown).
4. Soak: the mix at 16 clients for ``--soak`` seconds while the server's RSS is sampled every 5 s → first,
   last, max and the fitted slope (MiB per minute).
5. The mix at 16 clients once more with the pointer cache off (TTL 0): what the cache saves.

wrk and the server share the machine's cores (2 here), so these figures are a floor for a real deployment;
DynamoDB is moto's single Python process, which is the bottleneck measured as much as the API.

Run (from the repository root; ``apt-get install wrk`` first)::

    .venv/bin/python bench/recs_api_bench.py --out bench/out/recs_api.json      # ~8 min
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VERSION = "20261101-apibench"
TABLE = "bench_api_recommendations"
COUNTRIES = ("United States", "Germany", "United Kingdom", "Poland", "Russian Federation", "Brazil", "Sweden",
             "Spain", "Finland", "Netherlands", "Japan", "Mexico")
LUA = """
local paths = {}
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(tonumber(args[2]) + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 100000)
end
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""


def _records(users: int):
    from pipelines.recs.schema import AGE_BANDS, RecItem, RecRecord, fallback_key

    rng = random.Random(7)
    words = ("Silver", "Foxes", "Björn", "Łukasz", "Hearts", "Neon", "Ghosts", "Zoë", "Tigers", "Moons", "Crystal")

    def items(seed: int) -> list[RecItem]:
        r = random.Random(seed)
        return [RecItem(artist=f"{r.choice(words)} {r.choice(words)} {r.randint(1, 9999)}",
                        score=round(1 / (i + 1), 6), mbid=None if i % 3 else f"{seed:08x}-0000-0000-0000-{i:012x}")
                for i in range(10)]

    ids = [f"{rng.getrandbits(160):040x}" for _ in range(users)]
    known = [RecRecord(user_id=u, version=VERSION, generated_on="2026-11-01", source="user_user_cf", items=items(i))
             for i, u in enumerate(ids)]
    bands = [label for label, _, _ in AGE_BANDS]
    keys = [(None, None)] + [(c, None) for c in COUNTRIES] + [(c, b) for c in COUNTRIES for b in bands]
    fallback = [RecRecord(user_id=fallback_key(c, b), version=VERSION, generated_on="2026-11-01",
                          source="fallback:global" if c is None else "fallback:country" if b is None else
                          "fallback:country_age", items=items(10_000_000 + i) * 5)
                for i, (c, b) in enumerate(keys)]
    return ids, known + fallback


def _paths(ids: list[str], n: int = 20_000) -> dict[str, list[str]]:
    rng = random.Random(11)
    known = [f"/users/{rng.choice(ids)}/recommendations" for _ in range(n)]
    unknown = []
    for _ in range(n):
        query = rng.choice(["", f"?country={rng.choice(COUNTRIES).replace(' ', '%20')}",
                            f"?country={rng.choice(COUNTRIES).replace(' ', '%20')}&age={rng.randint(14, 70)}",
                            f"?country=Atlantis&age={rng.randint(14, 70)}"])
        unknown.append(f"/users/{rng.getrandbits(160):040x}/recommendations{query}")
    mix = [rng.choice(known) if rng.random() < 0.8 else rng.choice(unknown) for _ in range(n)]
    return {"known": known, "unknown": unknown, "mix": mix}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _start_api(port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "pipelines.recs.api:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            cwd=REPO, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _get_json(f"http://127.0.0.1:{port}/health")[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    _stop(proc)
    raise RuntimeError("the API did not answer /health within 60 s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _wrk(port: int, script: Path, paths_file: Path, clients: int, seconds: int) -> dict:
    threads = 1 if clients == 1 else 2
    cmd = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds}s", "--timeout", "10s", "--latency",
           "-s", str(script), f"http://127.0.0.1:{port}", "--", str(paths_file), str(clients)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return _parse_wrk(out)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def _parse_wrk(out: str) -> dict:
    result: dict = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                    "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "90", "99"):
        result[f"p{pct}_ms"] = _ms(re.search(rf"\s{pct}%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(g) for g in socket.groups()) if socket else 0
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000, help="known users written to the table")
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--seconds", type=int, default=20, help="per scenario and concurrency")
    parser.add_argument("--soak", type=int, default=180, help="seconds of the memory soak")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    from pipelines.recs.dynamo import RecsStore
    from pipelines.services import free_port, moto_server
    from pipelines.settings import get_settings

    report: dict = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                    "users": args.users, "scenarios": {}}
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="recs-api-bench-") as tmp:
        env = {**os.environ, "PIPELINES_DYNAMODB_ENDPOINT": endpoint, "PIPELINES_RECS_TABLE": TABLE,
               "PIPELINES_RECS_POINTER_TTL": "5"}
        os.environ.update({k: env[k] for k in ("PIPELINES_DYNAMODB_ENDPOINT", "PIPELINES_RECS_TABLE")})
        get_settings.cache_clear()
        store = RecsStore()
        store.ensure_table()
        ids, records = _records(args.users)
        t = time.perf_counter()
        stats = store.write_records(records)
        store.publish(VERSION, generated_on="2026-11-01", item_count=stats.items)
        print(f"wrote {stats.items:,} items in {time.perf_counter() - t:.1f} s; published {VERSION}", flush=True)
        script = Path(tmp) / "paths.lua"
        script.write_text(LUA)
        files = {}
        for name, paths in _paths(ids).items():
            files[name] = Path(tmp) / f"{name}.txt"
            files[name].write_text("\n".join(paths) + "\n")
        port = free_port()
        api = _start_api(port, env)
        try:
            status, known = _get_json(f"http://127.0.0.1:{port}/users/{ids[0]}/recommendations")
            assert status == 200 and known["known_user"] and len(known["recommendations"]) == 10, known
            status, cold = _get_json(f"http://127.0.0.1:{port}/users/{'ab' * 20}/recommendations?country=Germany"
                                     "&age=27")
            assert status == 200 and not cold["known_user"] and cold["source"] == "fallback:country_age", cold
            for name in ("known", "unknown", "mix"):
                for clients in (int(c) for c in args.clients.split(",")):
                    res = _wrk(port, script, files[name], clients, args.seconds)
                    report["scenarios"][f"{name}@{clients}"] = res
                    print(f"  {name:<8} {clients:>3} clients: {res['requests_per_s']:8.1f} req/s  p50 "
                          f"{res['p50_ms']:7.1f} ms  p90 {res['p90_ms']:7.1f} ms  p99 {res['p99_ms']:7.1f} ms  "
                          f"non-2xx {res['non_2xx']}  socket errors {res['socket_errors']}", flush=True)
            samples: list[tuple[float, float]] = []
            stop = threading.Event()

            def sample() -> None:
                start = time.monotonic()
                while not stop.is_set():
                    samples.append((time.monotonic() - start, _rss_mib(api.pid)))
                    stop.wait(5)

            sampler = threading.Thread(target=sample)
            sampler.start()
            soak = _wrk(port, script, files["mix"], 16, args.soak)
            stop.set()
            sampler.join()
            ts, rss = zip(*samples, strict=True)
            n = len(ts)
            mean_t, mean_r = sum(ts) / n, sum(rss) / n
            slope = sum((a - mean_t) * (b - mean_r) for a, b in zip(ts, rss, strict=True)) / \
                max(1e-9, sum((a - mean_t) ** 2 for a in ts)) * 60
            report["soak"] = {**soak, "seconds": args.soak, "rss_first_mib": rss[0], "rss_last_mib": rss[-1],
                              "rss_max_mib": max(rss), "rss_slope_mib_per_min": slope, "samples": samples}
            print(f"  soak, mix at 16 clients for {args.soak} s: {soak['requests']:,} requests, "
                  f"{soak['requests_per_s']:.1f} req/s, p99 {soak['p99_ms']:.1f} ms, non-2xx {soak['non_2xx']}; "
                  f"RSS {rss[0]:.0f} → {rss[-1]:.0f} MiB (max {max(rss):.0f}, slope {slope:+.2f} MiB/min)",
                  flush=True)
        finally:
            _stop(api)
        api = _start_api(port, {**env, "PIPELINES_RECS_POINTER_TTL": "0"})
        try:
            res = _wrk(port, script, files["mix"], 16, args.seconds)
            report["scenarios"]["mix@16 (pointer cache off)"] = res
            print(f"  mix, 16 clients, pointer cache OFF: {res['requests_per_s']:.1f} req/s  p50 {res['p50_ms']:.1f} "
                  f"ms  p99 {res['p99_ms']:.1f} ms", flush=True)
        finally:
            _stop(api)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
