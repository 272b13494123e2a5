"""Where hostile-input cases register what they feed in and what must come out (for docs/reliability.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    pipeline: str
    name: str
    given: str
    outcome: str


CASES: list[Case] = []


def case(pipeline: str, given: str, outcome: str) -> Callable:
    """Register a test as a corpus case: the input it feeds and the exact outcome it asserts."""

    def register(test: Callable) -> Callable:
        CASES.append(Case(pipeline, test.__name__, given, outcome))
        return test

    return register
