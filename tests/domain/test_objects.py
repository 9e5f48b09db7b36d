"""Value objects and field rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from demeter_storage.domain.errors import (
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from demeter_storage.domain.objects import (
    ObjectInfo,
    PresignedUrl,
    validate_content_type,
    validate_expires_in,
    validate_metadata,
    validate_method,
    validate_sha256,
)
from demeter_storage.domain.secrets import Secret


def test_object_info_is_frozen_with_read_only_metadata() -> None:
    source = {"k": "v"}
    info = ObjectInfo(key="s/a", size=1, content_type="image/jpeg", metadata=source)
    source["k"] = "changed"
    assert info.metadata["k"] == "v"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.size = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.metadata["k"] = "x"  # type: ignore[index]


def test_object_info_needs_aware_datetimes() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        ObjectInfo(key="k", size=0, content_type=None, last_modified=datetime(2026, 1, 1))


def test_presigned_url_repr_hides_the_signature() -> None:
    url = PresignedUrl(
        url="https://h/b/k?X-Amz-Signature=abc", method="GET", expires_at=datetime.now(UTC)
    )
    assert "abc" not in repr(url)


@pytest.mark.parametrize(
    "value",
    [
        "image/jpeg",
        "IMAGE/PNG",
        "text/plain; charset=utf-8",
        "  image/webp  ",
        'multipart/form-data; boundary="x y"',
    ],
)
def test_valid_content_types(value: str) -> None:
    assert validate_content_type(value) == value.strip()


@pytest.mark.parametrize(
    "value",
    ["", "jpeg", "image/", "image/jpeg\r\nX: y", "imäge/jpeg", "image/jpeg;", "a/" + "b" * 300],
)
def test_invalid_content_types(value: str) -> None:
    with pytest.raises(ValidationError, match="MIME type"):
        validate_content_type(value)


def test_metadata_rules() -> None:
    assert validate_metadata(None) == {}
    assert validate_metadata({"a-1": "printable ~!"}) == {"a-1": "printable ~!"}
    with pytest.raises(TypeError):
        validate_metadata([("a", "b")])
    with pytest.raises(TypeError):
        validate_metadata({"a": 1})
    with pytest.raises(ValidationError, match="reserved"):
        validate_metadata({"demeter-x": "1"})
    with pytest.raises(ValidationError, match="1536"):
        validate_metadata({f"k{i}": "v" * 100 for i in range(25)})


def test_expiry_bounds_and_types() -> None:
    assert validate_expires_in(1) == 1
    assert validate_expires_in(timedelta(days=7)) == 7 * 24 * 3600
    assert validate_expires_in(timedelta(hours=24)) == 86400
    for bad in (0, 7 * 24 * 3600 + 1, timedelta(seconds=0.5), -1):
        with pytest.raises(ValidationError):
            validate_expires_in(bad)
    for wrong in (True, 1.0, "60", None):
        with pytest.raises(TypeError):
            validate_expires_in(wrong)


def test_methods_and_digests() -> None:
    assert validate_method("PUT") == "PUT"
    with pytest.raises(ValidationError):
        validate_method("get")
    assert validate_sha256("a" * 64) == "a" * 64
    with pytest.raises(ValidationError):
        validate_sha256("A" * 64)


def test_errors_are_typed_and_actionable() -> None:
    missing = ObjectNotFound("s/a.jpg", "bucket")
    assert isinstance(missing, StorageError)
    assert isinstance(missing, LookupError)
    assert (
        "s/a.jpg" in str(missing) and "bucket" in str(missing) and "check the key" in str(missing)
    )
    assert isinstance(ValidationError("x"), ValueError)
    assert StorageUnavailable("down", retry_after=3.5).retry_after == 3.5


def test_secrets_never_show() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) + str(secret) + f"{secret}" + repr([secret])
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2")
    assert secret != Secret("other")
    assert secret.__eq__("hunter2") is NotImplemented
    assert hash(secret) == hash(Secret("hunter2"))
    assert not Secret("")
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]
