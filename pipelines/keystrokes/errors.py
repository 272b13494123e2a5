"""The keystroke pipeline's own error: a Param or argument that cannot work, however often it is retried."""

from __future__ import annotations

from pipelines.errors import RunRejected, UsageError


class BadParams(RunRejected, UsageError):
    """A bad Trigger-form Param or CLI argument (an unsupported URL scheme, an unknown model type or version,
    nothing promoted to predict with). It is a usage error for the command line (exit code 2) and a rejection
    for a DAG task (failed at once, without retries: the run has to be triggered again with other Params)."""
