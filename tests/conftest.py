"""Shared fixtures and hypothesis profiles for the test suite."""

from __future__ import annotations

import os

import botocore.loaders
import botocore.session
from hypothesis import HealthCheck, settings

from demeter_storage.testing import postgres_engine, postgres_url, redis_url
from tests.support.browser import chromium

# The package's pytest plugin, loaded here rather than through its entry point
# (pyproject's addopts disable that) so that coverage sees the package's imports.
pytest_plugins = ["demeter_storage.testing.plugin", "pytester"]

__all__ = ["chromium", "postgres_engine", "postgres_url", "redis_url"]


def _share_botocores_model_loader() -> None:
    """One botocore data loader for every session the tests make.

    Each store built without a client starts a botocore session, which parses
    the S3 service model again (about 0.2 s); the models are static files, and
    boto3's default session shares its loader the same way. With hundreds of
    stores built on moto, this took minutes of the suite.
    """
    shared = botocore.loaders.create_loader()

    def register(session: botocore.session.Session) -> None:
        session._components.lazy_register_component("data_loader", lambda: shared)  # type: ignore[attr-defined]

    botocore.session.Session._register_data_loader = register  # type: ignore[method-assign]


_share_botocores_model_loader()

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
    print_blob=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
