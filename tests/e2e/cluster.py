"""A real Airflow for the tests: scheduler, DAG processor and API server as separate processes, metadata in
PostgreSQL, the LocalExecutor or the CeleryExecutor with real Celery workers on Redis.

Used by ``tests/e2e/test_scheduler.py`` and ``bench/scheduler_bench.py``. Scheduled runs are switched off
(``use_job_schedule = False``), so only what a test creates (backfills, triggers) runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_HOSTNAME_MODULE = '''import os, socket


def hostname():
    """The worker's name when set (several workers on one machine), else the machine's."""
    return os.environ.get("WORKER_NAME") or socket.getfqdn()
'''


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AirflowCluster:
    """Start with :meth:`start`, stop with :meth:`stop` (processes are killed with their children)."""

    home: Path
    metadata_url: str  # postgresql+psycopg2://...
    pipelines_env: dict[str, str]
    executor: str = "LocalExecutor"
    workers: int = 0  # Celery workers
    broker_url: str | None = None
    parallelism: int = 8
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    # ------------------------------------------------------------------ environment
    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "PIPELINES_"))}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "ubm_test_hostname.hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API_AUTH__JWT_SECRET": "tests-only-secret-" + self.home.name,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "PYTHONPATH": os.pathsep.join([str(self.home / "py"), str(REPO)]),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.pipelines_env,
        })
        if self.executor == "CeleryExecutor":
            env.update({
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url or "redis://127.0.0.1:6379/11",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url.replace("+psycopg2", ""),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            })
        return env

    def airflow(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command against this cluster."""
        out = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if check and out.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
        return out

    # ------------------------------------------------------------------ lifecycle
    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = open(self.home / f"{name}.log", "w")  # noqa: SIM115 - closed with the process in stop()
        self.processes[name] = subprocess.Popen(args, env={**self.env, **(extra_env or {})}, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, dag_ids: list[str], timeout: float = 300) -> AirflowCluster:
        (self.home / "py").mkdir(parents=True, exist_ok=True)
        (self.home / "py" / "ubm_test_hostname.py").write_text(_HOSTNAME_MODULE)
        self.airflow("db", "migrate", timeout=600)
        subprocess.run([sys.executable, "-m", "pipelines", "airflow-setup"], env=self.env, check=True,
                       capture_output=True, timeout=300)
        airflow = [sys.executable, "-m", "airflow"]
        self._spawn("api-server", [*airflow, "api-server", "--port", str(self.port)])
        self._spawn("dag-processor", [*airflow, "dag-processor"])
        self._spawn("scheduler", [*airflow, "scheduler"])
        for i in range(self.workers):
            name = f"worker{i + 1}"
            self._spawn(name, [*airflow, "celery", "worker", "--concurrency", "2", "--celery-hostname",
                               f"{name}@%h"], {"WORKER_NAME": name})
        self._wait_http(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout)
        deadline = time.monotonic() + timeout
        while not set(dag_ids) <= self.parsed_dags():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs {dag_ids} not parsed within {timeout}s; see {self.home}/dag-processor.log")
            time.sleep(2)
        for dag_id in dag_ids:
            self.airflow("dags", "unpause", dag_id)
        return self

    def stop(self) -> None:
        for proc in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.home / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"airflow {name} exited ({proc.returncode}):\n{tail}")

    def _wait_http(self, url: str, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not answer within {timeout}s") from None
                time.sleep(1)

    # ------------------------------------------------------------------ metadata
    def query(self, sql: str, params: tuple = ()) -> list[dict]:
        import psycopg2
        import psycopg2.extras

        conn = psycopg2.connect(self.metadata_url.replace("postgresql+psycopg2", "postgresql"))
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, params)
                return [dict(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def parsed_dags(self) -> set[str]:
        try:
            return {r["dag_id"] for r in self.query("SELECT dag_id FROM dag WHERE is_stale IS NOT TRUE")}
        except Exception:  # before the first parse the table may be empty or still migrating
            return set()

    def backfill(self, dag_id: str, from_date: str, to_date: str, conf: dict | None = None,
                 *extra: str) -> None:
        args = ["backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date, *extra]
        if conf:
            args += ["--dag-run-conf", json.dumps(conf)]
        self.airflow(*args)

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> str:
        run_id = f"test__{uuid.uuid4().hex[:8]}"
        args = ["dags", "trigger", dag_id, "--run-id", run_id]
        if conf:
            args += ["--conf", json.dumps(conf)]
        if logical_date:
            args += ["--logical-date", logical_date]
        self.airflow(*args)
        return run_id

    def wait_runs(self, dag_id: str, count: int, timeout: float = 900, run_type: str | None = None) -> list[dict]:
        """Wait until ``count`` runs of the DAG (of ``run_type``) are finished; returns them, oldest first."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            runs = self.query("SELECT run_id, run_type, state, logical_date, data_interval_start, conf, start_date, "
                              "end_date FROM dag_run WHERE dag_id = %s AND (%s::text IS NULL OR run_type = %s) "
                              "ORDER BY logical_date NULLS LAST, run_id", (dag_id, run_type, run_type))
            done = [r for r in runs if r["state"] in ("success", "failed")]
            if len(done) >= count:
                return done
            if time.monotonic() > deadline:
                states = {r["run_id"]: r["state"] for r in runs}
                raise TimeoutError(f"{dag_id}: {len(done)} of {count} runs finished in {timeout}s: {states}; "
                                   f"logs in {self.home}")
            time.sleep(3)

    def task_instances(self, dag_id: str) -> list[dict]:
        return self.query("SELECT run_id, task_id, map_index, state, hostname, try_number, start_date, end_date, "
                          "rendered_map_index FROM task_instance WHERE dag_id = %s ORDER BY run_id, task_id, "
                          "map_index", (dag_id,))
