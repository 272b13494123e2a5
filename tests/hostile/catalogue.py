"""Print the hostile-input corpus as docs/reliability.md's table: ``python -m tests.hostile.catalogue``."""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from pathlib import Path

from tests.hostile.registry import CASES


def main() -> None:
    folder = Path(__file__).parent
    for module in sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("test_")):
        importlib.import_module(f"tests.hostile.{module}")
    counts = Counter(c.pipeline for c in CASES)
    print("| pipeline | case | input | outcome (asserted) |")
    print("|---|---|---|---|")
    for c in sorted(CASES, key=lambda c: (c.pipeline, c.name)):
        print(f"| {c.pipeline} | `{c.name.removeprefix('test_')}` | {c.given} | {c.outcome} |")
    print()
    print(", ".join(f"{p}: {n}" for p, n in sorted(counts.items())) + f"; {len(CASES)} cases in all")


if __name__ == "__main__":
    main()
