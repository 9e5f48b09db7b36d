"""Development sessions: `nox` runs lint, typecheck, tests and docs."""

from __future__ import annotations

import glob
import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True

TEST_EXTRAS = ".[test,postgres,redis,thumbnails,fast,fastapi]"


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and formatting) and import-linter (the layers in pyproject.toml)."""
    session.install("ruff>=0.6", "import-linter>=2.1")
    session.install("--no-deps", "-e", ".")  # import-linter reads the package's own imports
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev,test,postgres,redis,thumbnails,fast]")
    session.run("mypy", "src")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite with branch coverage (fails under 90%); the long proofs run in `slow`."""
    session.install("-e", TEST_EXTRAS)
    session.run(
        "pytest",
        "-m",
        "not slow",
        "--cov=demeter_storage",
        "--cov-branch",
        "--cov-report=term-missing:skip-covered",
        "--cov-report=xml",
        f"--junitxml={os.environ.get('DEMETER_JUNIT_XML', 'junit.xml')}",
        *session.posargs,
    )


@nox.session
def slow(session: nox.Session) -> None:
    """The long proofs: kills at every step, outages, a cluster, load, decode memory."""
    session.install("-e", TEST_EXTRAS)
    session.run(
        "pytest",
        "-m",
        "slow",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"DEMETER_REQUIRE_SERVICES": os.environ.get("DEMETER_REQUIRE_SERVICES", "1")},
    )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; warnings are errors."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks: start SeaweedFS, save benchmarks/results/*.json, render docs/benchmarks.md.

    run_all.py's options go after ``--``: ``--quick``, ``--only SECTION ...``, ``--rounds N``.
    """
    session.install("-e", ".[test,postgres,redis,fast]")
    session.run("python", "benchmarks/run_all.py", *session.posargs)


@nox.session
def load(session: nox.Session) -> None:
    """Load proof: 10,000 uploads through the service on SeaweedFS + PostgreSQL; prints figures.

    ``DEMETER_LOAD_UPLOADS`` overrides the count (the tests session runs 1,000).
    """
    session.install("-e", TEST_EXTRAS)
    report = os.path.join(session.create_tmp(), "load-report.txt")
    session.run(
        "pytest",
        "tests/proof/test_load.py",
        "-s",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={
            "DEMETER_LOAD_UPLOADS": os.environ.get("DEMETER_LOAD_UPLOADS", "10000"),
            "DEMETER_LOAD_REPORT": report,
            "DEMETER_REQUIRE_SERVICES": "1",
        },
    )
    with open(report, encoding="utf-8") as figures:
        session.log("load report:\n" + figures.read())


@nox.session
def schemathesis(session: nox.Session) -> None:
    """Schemathesis against the FastAPI router's OpenAPI: 250 cases per operation and service.

    In-memory and local + SQLite services, through uvicorn: no 5xx, every answer
    documented and conforming. ``DEMETER_SCHEMATHESIS_EXAMPLES`` overrides the
    count (the tests session runs 25).
    """
    session.install("-e", TEST_EXTRAS, "schemathesis>=4.0")
    session.run(
        "pytest",
        "tests/fastapi/test_schemathesis.py",
        "-s",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={
            "DEMETER_SCHEMATHESIS_EXAMPLES": os.environ.get("DEMETER_SCHEMATHESIS_EXAMPLES", "250")
        },
    )


@nox.session
def fuzz(session: nox.Session) -> None:
    """Hostile-input proof: every fuzz property with 20,000 examples (tests runs a slice).

    ``DEMETER_FUZZ_EXAMPLES`` overrides the count; Hypothesis prints its statistics.
    """
    session.install("-e", TEST_EXTRAS)
    session.run(
        "pytest",
        *sorted(glob.glob("tests/proof/test_fuzz*.py")),
        "-p",
        "no:cacheprovider",
        "--hypothesis-show-statistics",
        *session.posargs,
        env={"DEMETER_FUZZ_EXAMPLES": os.environ.get("DEMETER_FUZZ_EXAMPLES", "20000")},
    )
