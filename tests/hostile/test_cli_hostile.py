"""Hostile command lines for the platform's own commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.hostile.registry import case

pytestmark = pytest.mark.integration


@case("platform", "`python -m pipelines services run --help`",
      "exit 0 and the usage text; no PostgreSQL is started (it used to start one and crash)")
def test_services_run_help(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PIPELINES_HOME": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "pipelines", "services", "run", "--help"], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=120)
    assert out.returncode == 0 and "usage: python -m pipelines services" in out.stdout
    assert not (tmp_path / "pgdata").exists()


@case("platform", "`registry promote --run-id not-a-uuid`",
      "exit 2: `... is not a run id (a UUID, see `registry runs`)`")
def test_promote_with_a_bad_run_id(pg_dsn, cli):
    code, _, err = cli("registry", "promote", "--pipeline", "sociodemo", "--model-name", "catboost",
                       "--run-id", "not-a-uuid")
    assert code == 2 and "'not-a-uuid' is not a run id (a UUID, see `registry runs`)" in err


@case("platform", "`registry promote` of a run id that is not a successful run of that model",
      "exit 2, `error: run ... is not a successful sociodemo/catboost run`")
def test_promote_an_unknown_run(pg_dsn, cli):
    from pipelines.migrate import upgrade

    upgrade()
    code, _, err = cli("registry", "promote", "--pipeline", "sociodemo", "--model-name", "catboost",
                       "--run-id", "00000000-0000-0000-0000-000000000000")
    assert code == 2 and err == ("error: run 00000000-0000-0000-0000-000000000000 is not a successful "
                                 "sociodemo/catboost run\n")


@case("platform", "a misspelt model name: `sociodemo promote --model catbost`",
      "exit 2, argparse lists the valid choices")
def test_unknown_model_name(cli):
    code, _, err = cli("sociodemo", "promote", "--model", "catbost")
    assert code == 2 and "invalid choice: 'catbost'" in err and "'catboost'" in err


@case("platform", "a failure inside a step (a bug or an outage)",
      "exit 1, one line `error: <Type>: <message>` and a hint to rerun with `--verbose`, no traceback")
def test_unexpected_failure_is_one_line(cli, monkeypatch):
    from pipelines.retention import jobs

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(jobs, "report", broken)
    code, _, err = cli("retention", "report")
    assert code == 1
    assert err == "error: ZeroDivisionError: division by zero\n(run again with --verbose for the traceback)\n"
    with pytest.raises(ZeroDivisionError):
        cli("retention", "report", "--verbose")
