"""Airflow's published constraints for the image's Airflow version, minus the packages the project pins itself.

    python docker/constraints.py airflow-constraints.txt pyproject.toml > constraints.txt

Every package the project does not pin (Airflow's own dependencies and their transitive ones, the providers)
is then installed at the version Airflow's release was tested with; the project's own pins (numpy, pandas,
duckdb, torch, ...) are the ones its test suite runs against, so they win where the two lists differ.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[=<>!~; ]", requirement.strip(), maxsplit=1)[0]).lower()


def main(constraints: str, pyproject: str) -> None:
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    pinned = {_name(d) for d in project["dependencies"]}
    for line in Path(constraints).read_text().splitlines():
        if line.strip() and not line.startswith("#") and _name(line) not in pinned:
            print(line)


if __name__ == "__main__":
    main(*sys.argv[1:3])
