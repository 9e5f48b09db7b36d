"""Hostile settings: checked whole before anything is built, and no password ever shows.

Each example is an environment of hostile values (huge, negative, NaN and
infinite numbers; URLs with passwords in odd places; paths with ``..``,
absolute paths, NUL bytes, files where directories should be; bucket names of
every shape). ``StorageSettings.from_env`` must either refuse it with one
``ConfigurationError``, or return settings ``build_service`` builds without an
error (on the ``s3`` backend without explicit keys, credentials come from the
environment when the service is built: the one ``ConfigurationError`` allowed
there). Nothing else may be raised, and no error, ``repr`` or DEBUG log line
may hold a password of the URLs.

Nothing leaves the machine: the S3 backend is only built (no bucket created,
no request sent), the instance metadata service is off, and every path lives
under the test's temporary directory (the working directory is two levels
below it, so ``../..`` stays inside).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.bootstrap import build_service
from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.settings.storage import StorageSettings
from tests.proof.strategies import fuzz_settings

FIELDS = {field.metadata["env"]: field for field in attrs.fields(StorageSettings)}
MARK = "Zq7Pw"
"""Every generated password starts with it, so a leak of any part of its start shows."""

passwords = st.builds(
    lambda middle: f"{MARK}{middle}Kx9",
    st.one_of(
        st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=8),
        st.lists(
            st.sampled_from(["@", ":", "/", "?", "#", "%40", "%", "[", "]", " ", "\n", "a", "é"]),
            max_size=5,
        ).map("".join),
    ),
)
users = st.sampled_from(["", "u", "photos", "default"])
hosts = st.sampled_from(
    [
        *("127.0.0.1", "localhost", "db.internal", "[::1]", "", "under_score", "-bad", "h:1"),
        *("h:port", "h:99999", "h:0", "ex ample", "[zz]"),
    ]
)
tails = st.sampled_from(["", "/", "/0", "/db", "/photos", "/0?socket_timeout=soon", "#f", "?x=1"])
schemes = st.sampled_from(
    [
        *("postgresql+asyncpg", "sqlite+aiosqlite", "redis", "rediss", "unix", "http", "https"),
        *("ftp", "nosuch+driver", "postgresql", "sqlite", ""),
    ]
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    """A URL, often with a password: in the userinfo, or as a ``password`` parameter."""
    scheme, user, host, tail = draw(schemes), draw(users), draw(hosts), draw(tails)
    password = draw(passwords)
    style = draw(st.sampled_from(["userinfo", "userinfo", "parameter", "plain"]))
    if style == "userinfo":
        return f"{scheme}://{user}:{password}@{host}{tail}"
    if style == "parameter":
        return f"{scheme}://{host}{tail}{'&' if '?' in tail else '?'}password={password}"
    return f"{scheme}://{host}{tail}"


GOOD_URLS = {
    "DEMETER_DATABASE_URL": [
        "sqlite+aiosqlite:///relative.sqlite3",
        "sqlite+aiosqlite:///:memory:",
        f"postgresql+asyncpg://photos:{MARK}pg1Kx9@127.0.0.1:1/photos",
    ],
    "DEMETER_REDIS_URL": [
        "redis://127.0.0.1:1/0",
        f"redis://:{MARK}rd1Kx9@127.0.0.1:1/0",
        f"rediss://u:{MARK}rd2Kx9@cache.internal:6380/2",
    ],
    "S3_ENDPOINT_URL": ["http://127.0.0.1:1", "https://s3.example.com", "http://[::1]:9000"],
    "AWS_ENDPOINT_URL": ["http://127.0.0.1:2"],
    "AWS_ENDPOINT_URL_S3": ["http://127.0.0.1:3"],
    "DEMETER_PUBLIC_BASE_URL": ["http://127.0.0.1:8765", "https://photos.example.com/files/"],
}
URL_VARIABLES = tuple(GOOD_URLS)

PATHS = [
    "data",
    "a/../b",
    "../up",
    "../../up2",
    "{tmp}/abs",
    "{tmp}/a-file",
    "{tmp}/a-file/below",
    "{tmp}/a-dir",
    "~/home-data",
    "~",
    "da?ta#x%41",
    "with\x00nul",
    "/dev/null",
    "/dev/null/x",
    "y" * 300,
    "/".join(["z" * 100] * 6),
    "\udcff",
]
LIFECYCLE_FILES = [
    "{tmp}/policy.json",
    "{tmp}/bad.json",
    "{tmp}/a-dir",
    "{tmp}/fifo",
    "{tmp}/missing.json",
    "/dev/zero",
    "with\x00nul",
]
BUCKETS = st.one_of(
    st.sampled_from(
        [
            *("demeter-photos-original", "demeter-photos-viz", "abc", "a.b.c", "x" * 63, "0-9"),
            *("../../x", "/abs/x", "..", ".", "a/b", "ab", "x" * 64, "Upper", "under_score"),
            *("two..dots", "192.168.5.4", "xn--x", "nul\x00byte", "demeter.sqlite3", ".demeter"),
        ]
    ),
    st.text(max_size=12),
)
NUMBERS = st.one_of(
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e309", "1e300", "1_000_000", "1000000"]),
    st.sampled_from(["0", "-1", "1", "3", "60", "0.5", "0.0001", "5_242_880", str(5 * 2**30)]),
    st.integers(-10, 10**7).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
)
CHOICES = ["local", "s3", "memory", "MEMORY", "ftp", "boto3", "obstore", "path", "mark", "remove"]


def _values(name: str) -> st.SearchStrategy[str]:
    """Hostile values of the variable, and (as often) good ones, so that builds happen too."""
    if name in URL_VARIABLES:
        return st.one_of(st.sampled_from(GOOD_URLS[name]), urls())
    if name == "DEMETER_STORAGE_ROOT":
        return st.sampled_from(PATHS)
    if name == "DEMETER_LIFECYCLE_FILE":
        return st.sampled_from(LIFECYCLE_FILES)
    if name.startswith("S3_BUCKET_"):
        return BUCKETS
    kind = str(FIELDS[name].type).split(" ", 1)[0]
    bounds = FIELDS[name].metadata.get("bounds")
    if kind in ("int", "float") and bounds:
        low, high = bounds
        good = (
            st.integers(int(low), int(high)).map(str)
            if kind == "int"
            else st.floats(low, high, allow_nan=False).map(repr)
        )
        return st.one_of(good, good, NUMBERS)
    if kind in ("int", "float"):
        return NUMBERS
    if kind == "bool":
        return st.sampled_from(["1", "0", "yes", "off", "maybe"])
    if kind == "Secret":
        return st.one_of(st.text(min_size=16, max_size=40), st.text(max_size=15))
    if kind == "str":  # the region, the access key id, the profile
        return st.sampled_from(["us-east-1", "eu-west-3", "AKIDEXAMPLE", "default", "x/../y"])
    return st.sampled_from(CHOICES)


VARIABLES = sorted({*FIELDS, *URL_VARIABLES} - {"S3_CREATE_BUCKETS"})
environments = st.tuples(
    st.sampled_from(["local", "memory", "s3"]),
    st.lists(st.sampled_from(VARIABLES), unique=True, max_size=6),
).flatmap(
    lambda chosen: st.fixed_dictionaries(
        {"DEMETER_STORAGE_BACKEND": st.just(chosen[0]), **{n: _values(n) for n in chosen[1]}}
    )
)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory two levels down, a home, and an AWS without metadata service."""
    work = tmp_path / "cwd" / "deep"
    work.mkdir(parents=True)
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in list(os.environ):
        if name.startswith(("AWS_CONTAINER_", "AWS_WEB_IDENTITY", "AWS_ROLE_", "AWS_PROFILE")):
            monkeypatch.delenv(name)
    return tmp_path


def _example_dir(sandbox: Path) -> Path:
    """A fresh directory holding the files the paths name."""
    tmp = Path(tempfile.mkdtemp(dir=sandbox))
    (tmp / "a-file").write_text("not a directory")
    (tmp / "a-dir").mkdir()
    (tmp / "policy.json").write_text('{"rules": [{"id": "viz", "expire_after_days": 30}]}')
    (tmp / "bad.json").write_text("{not json")
    os.mkfifo(tmp / "fifo")
    return tmp


def _passwords(env: dict[str, str]) -> list[str]:
    """The password text of every URL the environment holds (marked, see MARK)."""
    found = []
    for name in URL_VARIABLES:
        value = env.get(name, "")
        start = value.find(MARK)
        while start != -1:
            end = value.find("Kx9", start)
            found.append(value[start : end + 3] if end != -1 else value[start:])
            start = value.find(MARK, start + 1)
    return found


def _leaks(texts: list[str], env: dict[str, str]) -> list[str]:
    secrets = [MARK, *_passwords(env)]
    return [text[:200] for text in texts for secret in secrets if secret in text]


async def _build(settings: StorageSettings, root: str, texts: list[str]) -> None:
    """Build the service; check where local stores live (``root``: the absolute storage root)."""
    try:
        service = await build_service(settings)
    except ConfigurationError as exc:
        # The one problem the settings cannot see: credentials found (or not)
        # in the environment when the S3 stores are built.
        texts += [str(exc), repr(exc)]
        no_keys = settings.backend == "s3" and settings.aws_access_key_id is None
        event("build: ConfigurationError (no credentials)" if no_keys else "build: refused")
        if not no_keys:
            raise
        return
    try:
        texts += [repr(service), repr(service.originals), repr(service.metadata)]
        event(f"built: {settings.backend}")
        for store, bucket in (
            (service.originals, settings.bucket_original),
            (service.visualizations, settings.bucket_visualization),
        ):
            if isinstance(store, LocalImageStore):
                # Right under the storage root: never beside it or anywhere else.
                assert os.path.dirname(store.root) == root, (store.root, root)
                assert os.path.basename(store.root) == bucket
    finally:
        await service.aclose()


@fuzz_settings(weight=0.2)
@given(env=environments)
def test_hostile_settings_are_refused_whole_or_build_and_never_show_a_password(
    loop: asyncio.Runner,
    sandbox: Path,
    caplog: pytest.LogCaptureFixture,
    env: dict[str, str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="demeter_storage")
    caplog.clear()
    tmp = _example_dir(sandbox)
    env = {name: value.replace("{tmp}", str(tmp)) for name, value in env.items()}
    if "DEMETER_DATABASE_URL" in env:
        env.pop("DEMETER_CREATE_SCHEMA", None)  # never connect to the databases named
    texts: list[str] = []
    try:
        settings = StorageSettings.from_env(env)
    except ConfigurationError as exc:
        texts += [str(exc), repr(exc)]
        event("from_env: ConfigurationError")
    else:
        texts += [repr(settings), str(settings)]
        settings.check()
        loop.run(_build(settings, os.path.abspath(settings.storage_root), texts))
    assert texts[0].startswith(("invalid settings (", "StorageSettings("))
    texts += [caplog.text]
    assert _leaks(texts, env) == []


# Settings made in code: check() refuses any value with one ConfigurationError.

python_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.sampled_from([Path("x"), ["a"], {"a": 1}, object()]),
)


@fuzz_settings(weight=0.5)
@given(
    values=st.dictionaries(
        st.sampled_from(
            sorted(f.name for f in attrs.fields(StorageSettings) if f.name != "storage_root")
        ),
        python_values,
        max_size=6,
    )
)
def test_settings_made_in_code_are_checked_with_one_configuration_error(
    sandbox: Path, values: dict[str, Any]
) -> None:
    try:
        settings = StorageSettings(**{"backend": "memory", "thumbnails": False, **values})
    except TypeError:  # the lifecycle file's Path converter: Python's own refusal
        assert "lifecycle_file" in values
        event("constructor: TypeError")
        return
    problems = settings.problems()
    if problems:
        with pytest.raises(ConfigurationError, match=rf"^invalid settings \({len(problems)}\):"):
            settings.check()
        event("check: ConfigurationError")
    else:
        settings.check()
        event("checked")
