"""Fixtures of the integration tests."""

from tests.s3_fixtures import s3_root  # noqa: F401  (a fixture, registered by being imported here)
