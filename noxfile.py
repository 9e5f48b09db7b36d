"""Development sessions: `nox` runs lint, typecheck, tests and docs."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True

TEST_EXTRAS = ".[test,postgres,redis,thumbnails,fast]"


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev,test,postgres,redis,thumbnails,fast]")
    session.run("mypy", "src")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite with branch coverage (fails under 90%)."""
    session.install("-e", TEST_EXTRAS)
    session.run(
        "pytest",
        "--cov=demeter_storage",
        "--cov-branch",
        "--cov-report=term-missing:skip-covered",
        "--cov-report=xml",
        f"--junitxml={os.environ.get('DEMETER_JUNIT_XML', 'junit.xml')}",
        *session.posargs,
    )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; warnings are errors."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite: starts SeaweedFS itself; pass run_all.py's options after --."""
    session.install("-e", ".[test,postgres,redis]", "obstore")
    session.run("python", "benchmarks/run_all.py", *session.posargs)
