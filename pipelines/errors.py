"""Errors with a meaning for operations: what failed, and whether a retry can help."""

from __future__ import annotations


class PipelineError(RuntimeError):
    """Base of the platform's own errors."""


class MissingPartitionError(PipelineError):
    """The day's input has not arrived (yet). Retryable: Airflow retries the task later."""


class RunRejected(PipelineError):
    """Input refused on purpose (too many bad rows, schema broken). A retry will not help; fix the input."""


class InputSchemaError(RunRejected):
    """An input file lacks required columns or cannot be read at all."""


class ModelFitError(PipelineError):
    """Training produced an unusable model (NaNs, degenerate output)."""


class UsageError(PipelineError, ValueError):
    """A caller's argument is out of range, contradicts another, or names something that does not exist."""
