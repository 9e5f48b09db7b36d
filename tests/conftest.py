"""Shared fixtures and hypothesis profiles for the test suite."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from demeter_storage.testing import postgres_engine, postgres_url, redis_url
from tests.browser import chromium

# The package's pytest plugin, loaded here rather than through its entry point
# (pyproject's addopts disable that) so that coverage sees the package's imports.
pytest_plugins = ["demeter_storage.testing.plugin", "pytester"]

__all__ = ["chromium", "postgres_engine", "postgres_url", "redis_url"]

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
    print_blob=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
