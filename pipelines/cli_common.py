"""What every pipeline's command line shares: argument types that refuse nonsense, and the exit codes.

Each pipeline package has a ``cli.py`` with ``register(subparsers)`` (light imports only: argparse and this
module); :mod:`pipelines.cli` discovers them. A command answers bad input with one line on stderr and one of
these exit codes; ``--verbose`` adds the traceback.

====  ==========================================================================================
code  meaning
====  ==========================================================================================
0     done
1     failed: a bug or an outage (the message says which step); rerun after fixing the cause
2     bad usage: an argument is out of range, contradicts another, or names something unknown
3     input rejected: too many bad rows, a file that cannot be read, a missing column (fix the input)
4     input missing: the partition, snapshot or upstream step is not there (yet)
5     not configured: a service the command needs has no connection / environment variable
====  ==========================================================================================
"""

from __future__ import annotations

import argparse
import json
from datetime import date

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED, EXIT_MISSING, EXIT_CONFIG = 0, 1, 2, 3, 4, 5


def emit(obj) -> None:
    """Print a command's result as JSON (machine-readable, one document)."""
    print(json.dumps(obj, indent=2, default=str))


def day(text: str) -> date:
    """An ISO day (``2017-04-01``)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def share(text: str) -> float:
    """A share in [0, 1] (``--max-bad-share 0.05``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a share between 0 and 1")
    return value


def fraction(text: str) -> float:
    """A share strictly between 0 and 1 (a holdout share)."""
    value = share(text)
    if value in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"{value} must be strictly between 0 and 1")
    return value


def day_range(first: date, last: date | None) -> list[date]:
    """Days ``first`` .. ``last`` (both included); ``--end`` before ``--day`` is a usage error."""
    from datetime import timedelta

    from pipelines.errors import UsageError

    last = last or first
    if last < first:
        raise UsageError(f"--end {last} is before --day {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
