"""``python -m pipelines``: every pipeline step without Airflow (the same functions the DAG tasks call).

Platform commands live here (``migrate``, ``services``, ``registry``, ``demo``); each pipeline adds its own
group from ``pipelines/<name>/cli.py``. Errors end in one line on stderr and a documented exit code
(:mod:`pipelines.cli_common`); ``--verbose`` shows the traceback and INFO logs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import subprocess
import sys

from pipelines.cli_common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_MISSING,
    EXIT_REJECTED,
    EXIT_USAGE,
    emit,
    positive_int,
)

#: Pipeline packages with a ``cli.py``, in the order ``--help`` lists them.
PIPELINES = ("retention", "recs", "sociodemo", "keystrokes", "tagging", "engagement", "ops")


def _cmd_migrate(args: argparse.Namespace) -> int:
    from pipelines.migrate import upgrade

    print(f"schema at revision {upgrade(revision=args.revision)}")
    return 0


def _cmd_services(args: argparse.Namespace) -> int:
    from pipelines import services

    if args.action == "stop":
        print("embedded PostgreSQL stopped" if services.stop_embedded_postgres() else "nothing was running")
        return 0
    if args.action == "pg-dsn":
        print(services.ensure_embedded_postgres())
        return 0
    # run: start the local services, run the command with them in its environment, stop them after.
    command = list(args.command)
    if "--airflow-metadata" in command[: command.index("--") if "--" in command else len(command)]:
        command.remove("--airflow-metadata")  # after `run`, argparse's remainder holds the option too
        args.airflow_metadata = True
    command = command[1:] if command[:1] == ["--"] else command
    if not command or command[0] in ("-h", "--help"):
        args.parser.print_help()
        return 0 if command else EXIT_USAGE

    def _terminate(signum, frame):  # a SIGTERM (e.g. from a supervisor) stops the services like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    with services.local_services(stop_postgres=True) as exported:
        if args.airflow_metadata and "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in os.environ:
            from pipelines.airflow_setup import embedded_metadata_url
            from pipelines.settings import pg_dsn

            os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = exported["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = \
                embedded_metadata_url(pg_dsn())
        for key, value in exported.items():
            print(f"{key}={value}", file=sys.stderr)
        try:
            if args.airflow_metadata:  # the metadata schema and the pools, before Airflow starts
                for step in (["airflow", "db", "migrate"], [sys.executable, "-m", "pipelines", "airflow-setup"]):
                    code = subprocess.call(step, env=os.environ.copy(), stdout=subprocess.DEVNULL)
                    if code:
                        print(f"error: {' '.join(step)} failed with exit code {code}", file=sys.stderr)
                        return code
            return _run_group(command)
        except KeyboardInterrupt:
            return 130


def _cmd_airflow_setup(args: argparse.Namespace) -> int:
    from pipelines.airflow_setup import create_pools

    emit({"pools": create_pools()})
    return 0


def _run_group(command: list[str]) -> int:
    """Run ``command`` in its own process group; Ctrl-C or SIGTERM stops the whole group (e.g. every process
    ``airflow standalone`` started), first gently, then for good, so nothing is left orphaned."""
    proc = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        raise


def _cmd_registry(args: argparse.Namespace) -> int:
    from pipelines import registry

    if args.action == "runs":
        emit(registry.list_runs(args.pipeline, args.limit))
    elif args.action == "compare":
        emit(registry.compare_models(args.pipeline, args.metric, args.segment))
    elif args.action == "promote":
        registry.promote(args.pipeline, args.model_name, args.run_id)
        print(f"{args.pipeline}/{args.model_name} production -> {args.run_id}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(days=args.days, installs_per_day=args.installs_per_day, recs_users=args.recs_users,
                    sociodemo_users=args.sociodemo_users, only=args.only)


def _run_id(text: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a run id (a UUID, see `registry runs`)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="INFO logs, and tracebacks on errors")
    sub = parser.add_subparsers(dest="group", required=True)

    p = sub.add_parser("migrate", help="apply schema migrations")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("services", help="local stand-ins: embedded PostgreSQL, moto DynamoDB",
                       description="run: start the local services, run COMMAND with them, stop them after. "
                                   "stop: stop the embedded PostgreSQL. pg-dsn: print its DSN (starting it).")
    p.add_argument("action", choices=["run", "stop", "pg-dsn"])
    p.add_argument("--airflow-metadata", action="store_true",
                   help="for run: keep Airflow's metadata in the embedded PostgreSQL (database 'airflow'), "
                        "migrate it and create the pools before COMMAND")
    p.add_argument("command", nargs=argparse.REMAINDER, help="for run: -- COMMAND ARGS...")
    p.set_defaults(func=_cmd_services, parser=p)

    for name in PIPELINES:
        try:
            module = importlib.import_module(f"pipelines.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name in (f"pipelines.{name}", f"pipelines.{name}.cli"):
                continue  # not built yet
            raise
        module.register(sub)

    p = sub.add_parser("airflow-setup", help="create the Airflow pools the DAGs use (after `airflow db migrate`)")
    p.set_defaults(func=_cmd_airflow_setup)

    p = sub.add_parser("registry", help="the run registry")
    gsub = p.add_subparsers(dest="action", required=True)
    rr = gsub.add_parser("runs")
    rr.add_argument("--pipeline")
    rr.add_argument("--limit", type=positive_int, default=20)
    rc = gsub.add_parser("compare")
    rc.add_argument("--pipeline", required=True)
    rc.add_argument("--metric", required=True)
    rc.add_argument("--segment", default="", help="e.g. model=popularity (default: each run's own model)")
    rm = gsub.add_parser("promote")
    rm.add_argument("--pipeline", required=True)
    rm.add_argument("--model-name", required=True)
    rm.add_argument("--run-id", required=True, type=_run_id)
    p.set_defaults(func=_cmd_registry)

    p = sub.add_parser("demo", help="everything end to end on embedded services, through Airflow")
    p.add_argument("--days", type=positive_int, default=15, help="retention days (ending 2017-04-09)")
    p.add_argument("--installs-per-day", type=positive_int, default=150)
    p.add_argument("--recs-users", type=positive_int, default=8_000)
    p.add_argument("--sociodemo-users", type=positive_int, default=3_000)
    p.add_argument("--only", nargs="+", choices=PIPELINES, help="run only these pipelines' part of the demo")
    p.set_defaults(func=_cmd_demo)
    return parser


def _development_mode_by_hand() -> None:
    """Run by hand on a machine where nothing is configured, the command line uses the local stand-ins (and
    says so on stderr); inside an Airflow task, or with any service configured, it never does."""
    from pipelines.settings import configured_pg_dsn, get_settings, local_services_enabled

    if local_services_enabled() or "airflow.sdk.execution_time.task_runner" in sys.modules:
        return
    if configured_pg_dsn() is None and os.environ.get("PIPELINES_LOCAL_SERVICES") is None:
        os.environ["PIPELINES_LOCAL_SERVICES"] = "1"
        get_settings.cache_clear()
        print(f"note: no PostgreSQL configured (PIPELINES_PG_DSN); using the embedded development server in "
              f"{get_settings().embedded_pgdata}", file=sys.stderr)


def _exit_code(exc: BaseException) -> int:
    from pipelines.errors import MissingPartitionError, RunRejected, UsageError
    from pipelines.settings import ConfigError

    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, RunRejected):
        return EXIT_REJECTED
    if isinstance(exc, MissingPartitionError):
        return EXIT_MISSING
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv  # accepted anywhere on the line, not only before the command
    argv = [a for a in argv if a != "--verbose"]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = args.verbose or verbose
    _development_mode_by_hand()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line; the traceback only when asked for
        if args.verbose:
            raise
        from pipelines.ingest import short_error

        code = _exit_code(exc)
        text = str(exc) if code != EXIT_FAILED else short_error(exc, limit=500)
        print(f"error: {' '.join(text.split())}", file=sys.stderr)
        if code == EXIT_FAILED:
            print("(run again with --verbose for the traceback)", file=sys.stderr)
        return code
