"""Direct upload requests and settings values: accepted correctly, or a typed error.

``begin_direct_upload`` either writes one ``uploading`` record and returns a
form pinned to the key, type and size, or raises ``ValidationError`` /
``TypeError`` / ``ImageAlreadyExists`` and writes nothing.
``StorageSettings.from_env`` returns settings or raises ``ConfigurationError``,
whatever the environment holds; so does ``lifecycle_policy()``, which
``build_service`` calls next.
"""

from __future__ import annotations

import asyncio
import unicodedata

import attrs
from hypothesis import event, given
from hypothesis import strategies as st

from demeter_storage.domain.errors import ConfigurationError, ImageAlreadyExists, ValidationError
from demeter_storage.domain.records import ImageState
from demeter_storage.service.image_service import MAX_UPLOAD_BYTES
from demeter_storage.settings.storage import StorageSettings
from tests.proof.strategies import (
    ACCEPTED,
    ALIASES,
    MIME,
    content_types,
    expected_original_key,
    fuzz_settings,
    leftovers,
    memory_service,
    names,
    outcome,
)


def _type_errors(content_type: object) -> tuple[type[Exception], ...]:
    if not isinstance(content_type, str):
        return (TypeError,)
    text = content_type.strip()
    base = ALIASES.get(text.split(";", 1)[0].strip().lower(), text.split(";", 1)[0].strip().lower())
    if len(text) > 255 or not MIME.fullmatch(text) or base not in ACCEPTED:
        return (ValidationError,)
    return ()


def _size_errors(size: object) -> tuple[type[Exception], ...]:
    if isinstance(size, bool) or not isinstance(size, int):
        return (TypeError,)
    return () if 1 <= size <= MAX_UPLOAD_BYTES else (ValidationError,)


async def _begin(session_id: object, filename: object, content_type: object, size: object) -> None:
    service, _ = memory_service()
    key = expected_original_key(session_id, filename)
    errors = (
        *((TypeError, ValidationError) if key is TypeError else ()),
        *((ValidationError,) if key is None else ()),
        *_type_errors(content_type),
        *_size_errors(size),
    )
    upload = await outcome(service.begin_direct_upload(session_id, filename, content_type, size))  # type: ignore[arg-type]
    if isinstance(upload, Exception):
        event(f"refused: {type(upload).__name__}")
        assert not isinstance(upload, ImageAlreadyExists)
        assert isinstance(upload, errors), f"{upload!r} is none of {errors}"
        assert await leftovers(service) == []
        return
    event("begun")
    assert not errors, f"{session_id!r} {filename!r} {content_type!r} {size!r} was accepted"
    assert (upload.key, upload.max_size) == (key, size)
    # The form posts to the upload's own landing place, never to the image's key.
    assert upload.fields["key"] == f"_staging/{upload.image_id}"
    signer = await service.originals.url_signer()  # type: ignore[attr-defined]
    policy = signer.verify_post(upload.fields)
    assert (policy.key, policy.min_size, policy.max_size) == (upload.fields["key"], 1, size)
    assert policy.content_type in ACCEPTED
    records = [record async for record in service.metadata.records()]
    assert [(r.key, r.state, r.size) for r in records] == [(key, ImageState.UPLOADING, size)]
    # The same names, however spelled, begin again: the unfinished upload is replaced.
    again = await service.begin_direct_upload(
        unicodedata.normalize("NFD", session_id),  # type: ignore[arg-type]
        unicodedata.normalize("NFD", filename),  # type: ignore[arg-type]
        content_type,  # type: ignore[arg-type]
        size,  # type: ignore[arg-type]
    )
    assert again.key == key
    records = [record async for record in service.metadata.records()]
    assert [r.image_id for r in records] == [again.image_id]
    assert len(await leftovers(service)) == 1


@fuzz_settings()
@given(
    session_id=names,
    filename=names,
    content_type=st.one_of(
        st.sampled_from(["image/jpeg", "image/PNG", "image/jpg; q=1", " image/heic "]),
        content_types,
    ),
    size=st.one_of(
        st.integers(1, 10_000_000),
        st.sampled_from([0, -1, 1, MAX_UPLOAD_BYTES, MAX_UPLOAD_BYTES + 1, 2**70]),
        st.sampled_from([True, 1.0, "5", None]),
        st.integers(),
    ),
)
def test_begin_direct_upload_writes_one_pinned_record_or_nothing(
    loop: asyncio.Runner, session_id: object, filename: object, content_type: object, size: object
) -> None:
    loop.run(_begin(session_id, filename, content_type, size))


# Settings.

FIELDS = {field.metadata["env"]: field for field in attrs.fields(StorageSettings)}

raw_values = st.one_of(
    st.text(max_size=30),
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from(
        ["nan", "-inf", "1e309", "1_000", "0x10", " 42 ", "\u0663", "1" * 5000, "-0", "+5", "5."]
    ),
    st.sampled_from(["true", "FALSE", "Yes", "on", "0", "1", "off", "maybe", " ", "\t\n"]),
    st.sampled_from(["local", "S3", "memory", "boto3", "path", "auto", "mark", "remove"]),
    st.sampled_from(["~", "~/x", "~no-such-user-demeter/x", "/tmp/x", ".", "a\x00b", "C:\\x"]),
    st.sampled_from(["postgresql+asyncpg://u@h/db", "redis://127.0.0.1:6379/0", "http://h:1"]),
    st.integers(-3, 700_000).map(str),
)


_CHOICE_WORDS = ["local", "s3", "MEMORY", "boto3", "obstore", "path", "virtual", "auto", "mark"]
_PLAUSIBLE = {
    "int": st.one_of(st.integers(0, 1000), st.integers(5 * 2**20, 6 * 2**30)).map(str),
    "float": st.floats(0, 100, allow_nan=False).map(str),
    "bool": st.sampled_from(["1", "0", "true", "False", "YES", "no", "on", "off"]),
    "Path": st.sampled_from(["/tmp/demeter-fuzz", "data", "~/x"]),
    "Secret": st.text(min_size=10, max_size=40),
    "str": st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=20),
}


def _plausible(name: str) -> st.SearchStrategy[str]:
    """Values of the variable's type (not always in range), to get past the parser."""
    kind = str(FIELDS[name].type).split(" ", 1)[0]
    return _PLAUSIBLE.get(kind, st.sampled_from(_CHOICE_WORDS))


environments = st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=6).flatmap(
    lambda chosen: st.fixed_dictionaries(
        {name: st.one_of(_plausible(name), _plausible(name), raw_values) for name in chosen}
    )
)


@fuzz_settings()
@given(env=environments)
def test_settings_from_any_environment_are_settings_or_a_configuration_error(
    env: dict[str, str],
) -> None:
    try:
        settings = StorageSettings.from_env(env)
    except ConfigurationError:
        event("from_env: ConfigurationError")
        return
    try:
        policy = settings.lifecycle_policy()
    except ConfigurationError:
        event("lifecycle_policy: ConfigurationError")
        return
    event("settings")
    assert isinstance(settings, StorageSettings)
    settings.check()
    assert policy is not None
    for name, raw in env.items():
        text, kind = raw.strip(), str(FIELDS[name].type)
        value = getattr(settings, FIELDS[name].name)
        if not text:
            assert value == FIELDS[name].default, name
        elif kind.startswith("int"):
            assert value == int(text.replace("_", "")), name
        elif kind.startswith("bool"):
            assert value is (text.lower() in ("1", "true", "yes", "on")), name
