"""S3's bucket naming rules, in the domain, for every backend."""

from __future__ import annotations

import pytest

from demeter_storage.domain.buckets import bucket_name_problem, validate_bucket_name
from demeter_storage.domain.errors import ConfigurationError


@pytest.mark.parametrize("name", ["abc", "demeter-photos-original", "a.b-c", "0" * 63, "a1b"])
def test_valid_names(name: str) -> None:
    assert bucket_name_problem(name) is None
    assert validate_bucket_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        *("ab", "a" * 64, "Abc", "a_b", "-ab", "ab-", ".ab", "ab.", "a..b", "../../x", "/abs"),
        *("a/b", "10.0.0.1", "xn--abc", "sthree-x", "amzn-s3-demo-x", "abc-s3alias"),
        *("abc--ol-s3", "abc.mrap", "abc--x-s3", "abc--table-s3", "abc\n", "a\x00c", ""),
    ],
)
def test_invalid_names(name: str) -> None:
    assert bucket_name_problem(name) is not None
    with pytest.raises(ConfigurationError, match="invalid bucket name"):
        validate_bucket_name(name)


def test_a_name_that_is_not_a_str_is_a_type_error() -> None:
    assert bucket_name_problem(5) == "must be a str, got int"
    with pytest.raises(TypeError):
        validate_bucket_name(5)
