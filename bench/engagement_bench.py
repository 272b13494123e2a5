"""Engagement benchmark: CSV → Parquet conversion and one training pass on files of 2, 10 and 20 GB.

For each size (``--sizes-gb``, default 2 10 20) it

1. generates one Eluvio-format CSV of about that size (``spec_for_size``: the same 8 years, more posts per day;
   no bad rows, no truth) in a scratch folder, with two processes; generation time is reported, not measured;
2. measures the **floor** in a fresh process: a bare pyarrow streaming scan of the same file
   (``pyarrow.csv.open_csv``, every column as text, quoted newlines allowed, 16 MB blocks), and for reference a
   DuckDB scan (``read_csv`` of every column as text, ``count(*)`` and ``sum(length(title))`` so the titles are
   really parsed);
3. **converts** the file in a fresh process exactly as the weekly DAG's mapped task does, through the ingest
   contract's validator and decision (``ingest.inspect`` + ``convert.local_file_validator``: record splitting,
   parsing, checking, post ids, month Parquet, duplicate pass, quarantine; only the PostgreSQL commit is left
   out, which for a clean file is one row);
4. runs **one training pass** in a fresh process: the author statistics (DuckDB) and one epoch of the streamed
   linear model over every month of the converted Parquet (hashed n-grams, ordered author encoding, SGD),
   validated on a 20,000-post sample;
5. deletes the CSV and the Parquet before the next size.

Each measured step runs in its own interpreter (``bench/_steps.py``), so its peak RSS (``ru_maxrss``) is its
own; DuckDB and pyarrow threads count, nothing else does. Throughput is rows/s and MB/s of CSV; the ratio is
conversion MB/s over the pyarrow floor's MB/s, measured in the same run on the same file. Every step also
records its CPU seconds (all its threads) and the load average while it ran: on a shared machine the wall-clock
ratio moves with the neighbours, the CPU ratio much less.

Run (from the repository root; about 50 minutes on 2 cores, needs ~30 GB of free disk at 20 GB)::

    .venv/bin/python bench/engagement_bench.py                          # 2, 10 and 20 GB
    .venv/bin/python bench/engagement_bench.py --sizes-gb 0.5           # quick, ~2 minutes
    .venv/bin/python bench/engagement_bench.py --out bench/out/engagement.json --workdir /big/disk
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._steps import run_child, run_step  # noqa: E402

DAYS = 2_922  # eight years, like the real export (2008-2016)
AUTHORS = 100_000
COLUMNS = ("time_created", "date_created", "up_votes", "down_votes", "title", "over_18", "author", "category")


# ------------------------------------------------------------------------------------------------ steps
def step_floor(root: Path, job: dict) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(job["csv"], read_options=pcsv.ReadOptions(block_size=16 << 20, use_threads=True),
                           parse_options=pcsv.ParseOptions(newlines_in_values=True),
                           convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}))
    rows = sum(batch.num_rows for batch in reader)
    return {"rows": rows}


def step_floor_duckdb(root: Path, job: dict) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '1GB'")
    rows, chars = con.sql("SELECT count(*), sum(length(title)) FROM read_csv(?, all_varchar = true, header = true)",
                          params=[job["csv"]]).fetchall()[0]
    return {"rows": rows, "title_chars": chars}


def step_convert(root: Path, job: dict) -> dict:
    from pipelines import ingest
    from pipelines.engagement import convert, schema

    path = Path(job["csv"])
    workspace = ingest.Workspace(Path(job["staged"]))
    result = ingest.inspect(schema.PIPELINE, schema.file_partition(path.name), convert.local_file_validator(path),
                            max_bad_share=0.05, benign_reasons=schema.BENIGN_REASONS, workspace=workspace)
    parquet = sum(p.stat().st_size for p in workspace.local.glob("posts-*.parquet"))
    return {"status": result.status, "rows_read": result.rows_read, "rows_valid": result.rows_valid,
            "reasons": result.reasons, "months": len(result.extra["months"]), "parquet_bytes": parquet}


def step_train(root: Path, job: dict) -> dict:
    from datetime import date

    import pyarrow.parquet as pq

    from pipelines.engagement import dataset, schema
    from pipelines.engagement.models.base import TrainContext
    from pipelines.engagement.models.linear import StreamingLinear

    staged = Path(job["staged"]) / "staged"
    files = [dataset.MonthFile(schema.month_of_file(p.name), p, "file=bench.csv", pq.ParquetFile(p).metadata.num_rows)
             for p in sorted(staged.glob("posts-*.parquet"))]
    months = sorted({f.month for f in files})
    split = dataset.TimeSplit(tuple(months), (months[-1],), (months[-1],), date(2100, 1, 1))
    prepared = dataset.prepare(files, split, Path(job["work"]))
    started = time.perf_counter()
    stats, target = dataset.author_stats(prepared.of(split.train), split.end)
    stats_seconds = time.perf_counter() - started
    valid = dataset.sample(prepared.of(split.valid), split.end, 20_000, 42, "valid")
    ctx = TrainContext(prepared=prepared, stats=stats, target=target, valid=valid, workdir=Path(job["work"]))
    started = time.perf_counter()
    info = StreamingLinear(epochs=1, curve_points=8).fit(ctx)
    fit_seconds = time.perf_counter() - started
    return {"rows": info["rows_seen"], "batches": info["batches"], "authors": len(stats.authors),
            "stats_seconds": stats_seconds, "fit_seconds": fit_seconds, "curve": info["curve"]}


def _measured(step):
    """Add the step's CPU seconds (every thread of its process) and the machine's load average while it ran:
    on a shared machine, wall time alone says as much about the neighbours as about the code."""
    import functools
    import resource

    @functools.wraps(step)
    def run(root: Path, job: dict) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        load = os.getloadavg()[0]
        out = step(root, job)
        after = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu_seconds"] = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        out["load_1min"] = round((load + os.getloadavg()[0]) / 2, 1)
        return out

    return run


STEPS = {name: _measured(step) for name, step in
         {"floor": step_floor, "floor_duckdb": step_floor_duckdb, "convert": step_convert, "train": step_train}.items()}


# ------------------------------------------------------------------------------------------------ driver
def _generate(target_bytes: int, folder: Path, seed: int) -> dict:
    from pipelines.engagement.generate import spec_for_size, write_history

    spec = spec_for_size(target_bytes, days=DAYS, seed=seed, n_authors=AUTHORS)
    started = time.perf_counter()
    written = write_history(spec, folder, "bench.csv", spec.start, spec.end, truth=False, progress=True, workers=2)
    written["seconds"] = time.perf_counter() - started
    written["posts_per_day"] = spec.posts_per_day
    return written


def run_size(gb: float, work: Path, env: dict) -> dict:
    need = gb * 1e9 * 1.6
    free = shutil.disk_usage(work).free
    if free < need:
        raise SystemExit(f"{gb} GB needs about {need / 1e9:.0f} GB free under {work}; {free / 1e9:.0f} GB are")
    folder = work / f"size-{gb:g}gb"
    try:
        print(f"\n== {gb:g} GB ==", flush=True)
        made = _generate(int(gb * 1e9), folder, seed=42)
        csv = made["file"]
        size = Path(csv).stat().st_size
        print(f"  generated {made['rows']:,} posts, {size / 1e9:.2f} GB in {made['seconds']:.0f} s "
              f"({size / 1e6 / made['seconds']:.0f} MB/s, 2 processes; not measured)", flush=True)
        job = {"csv": csv, "staged": str(folder / "ws"), "work": str(folder / "work")}
        out = {"gb": gb, "bytes": size, "rows": made["rows"], "generate_seconds": made["seconds"]}
        for step in ("floor", "floor_duckdb", "convert", "train"):
            out[step] = run_child(__file__, step, folder, job, folder, env, label=f"{step}-{gb:g}gb")
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def summarize(results: list[dict]) -> None:
    header = ("size", "rows", "floor MB/s", "duckdb MB/s", "convert MB/s", "convert rows/s", "ratio", "CPU ratio",
              "convert RSS", "train rows/s", "train RSS", "floor RSS", "parquet", "load")
    lines = [header]
    for r in results:
        mb = r["bytes"] / 1e6
        floor, duck, conv, train = r["floor"], r["floor_duckdb"], r["convert"], r["train"]
        lines.append((f"{r['bytes'] / 1e9:.1f} GB", f"{r['rows']:,}", f"{mb / floor['seconds']:.0f}",
                      f"{mb / duck['seconds']:.0f}", f"{mb / conv['seconds']:.0f}",
                      f"{conv['rows_read'] / conv['seconds']:,.0f}", f"{floor['seconds'] / conv['seconds']:.2f}",
                      f"{floor['cpu_seconds'] / conv['cpu_seconds']:.2f}",
                      f"{conv['peak_rss_mib']:,.0f} MiB", f"{train['rows'] / train['seconds']:,.0f}",
                      f"{train['peak_rss_mib']:,.0f} MiB", f"{floor['peak_rss_mib']:,.0f} MiB",
                      f"{conv['parquet_bytes'] / 1e9:.2f} GB",
                      "/".join(f"{r[s]['load_1min']:.0f}" for s in ("floor", "convert", "train"))))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    print()
    for line in lines:
        print("  ".join(str(v).rjust(w) for v, w in zip(line, widths, strict=True)))
    print("\nratio = conversion MB/s / pyarrow floor MB/s (same file, same run); CPU ratio = the floor's CPU seconds / "
          "the conversion's (every thread; what an idle machine's wall-clock ratio tends to); train = author "
          "statistics + one epoch of the streamed linear model over every row; load = 1-minute load average "
          "during floor/convert/train (2 cores)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-gb", nargs="+", type=float, default=[2.0, 10.0, 20.0])
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one under the repo)")
    parser.add_argument("--out", type=Path, help="also write every figure as JSON")
    parser.add_argument("--_step")
    parser.add_argument("--_root", type=Path)
    parser.add_argument("--_job", type=Path)
    parser.add_argument("--_result", type=Path)
    args = parser.parse_args(argv)
    if args._step:
        return run_step(STEPS, args)
    work = Path(tempfile.mkdtemp(prefix="engagement-bench-", dir=args.workdir or REPO / "var"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = []
    try:
        for gb in args.sizes_gb:
            results.append(run_size(gb, work, env))
            summarize(results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
