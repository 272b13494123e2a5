"""The hostile-input corpus: every case is one bad (or awkward but legal) input, run through the pipeline's
real entry point (its jobs or its command line, in-process) against the real PostgreSQL, asserting the exact
outcome: rows loaded, rows quarantined by reason, or the exact error line and exit code, and that nothing is
left half-written. Cases register themselves with :func:`case` so ``python -m tests.hostile.catalogue`` prints
the table of ``docs/reliability.md`` from the same definitions the tests run."""

from __future__ import annotations

import pytest

from tests.hostile.registry import CASES  # noqa: F401  (re-exported for the catalogue)


@pytest.fixture
def cli(capsys):
    """Run ``python -m pipelines ARGS`` in-process: ``(exit code, stdout, stderr)``."""
    from pipelines.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse refusing an argument
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
