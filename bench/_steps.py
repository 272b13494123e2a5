"""Shared by the benchmarks that run each step in its own subprocess, so that a step's peak RSS is its own.

The parent calls :func:`run_child` with a job (JSON); the child, started as ``SCRIPT --_step NAME --_root ROOT
--_job FILE --_result FILE``, calls :func:`run_step` with its table of step functions, which times the step and
records ``seconds`` and ``peak_rss_mib`` beside what the step returns.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(script: str, step: str, root: Path, job: dict, work: Path, env: dict, label: str | None = None) -> dict:
    """Run one step of ``script`` in a fresh interpreter; returns its result (exits if it fails)."""
    label = label or step
    job_file, result = work / f"{label}.job.json", work / f"{label}.result.json"
    job_file.write_text(json.dumps(job))
    cmd = [sys.executable, str(Path(script).resolve()), "--_step", step, "--_root", str(root),
           "--_job", str(job_file), "--_result", str(result)]
    proc = subprocess.run(cmd, env=env, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"step {label} failed with exit status {proc.returncode}")
    out = json.loads(result.read_text())
    print(f"  {label}: {out['seconds']:.1f} s, peak RSS {out['peak_rss_mib']:,.0f} MiB", flush=True)
    return out


def run_step(steps: dict[str, Callable[[Path, dict], dict]], args: argparse.Namespace) -> int:
    """The child's side: run ``args._step`` on its job and write the result with its time and peak RSS."""
    job = json.loads(args._job.read_text())
    t = time.perf_counter()
    out = steps[args._step](args._root, job)
    out["seconds"] = time.perf_counter() - t
    out["peak_rss_mib"] = rss_mib()
    args._result.write_text(json.dumps(out, default=str))
    return 0
