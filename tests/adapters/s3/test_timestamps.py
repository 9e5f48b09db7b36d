"""S3's timestamps, parsed without dateutil, always as botocore's own parser parses them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import botocore.parsers
import pytest
from botocore.utils import parse_timestamp
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from demeter_storage.adapters.s3 import timestamps as s3_timestamps
from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.adapters.s3.timestamps import parse_s3_timestamp

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
instants = st.datetimes(max_value=datetime(9999, 12, 30))  # from year 1


def _outcome(parse: object, value: str) -> tuple[object, ...]:
    """What a parser makes of ``value``: the instant and its UTC offset, or the error's type."""
    # Not the zone object: botocore's varies by machine (dateutil gives ``tzlocal``
    # for a "Z" where the machine's own zone is UTC, ``tzutc`` elsewhere).
    assert callable(parse)
    try:
        parsed = parse(value)
    except Exception as exc:  # botocore's parser raises several kinds
        return ("raised", type(exc))
    return (parsed, parsed.utcoffset())


def _same_as_botocore(value: str) -> None:
    assert _outcome(parse_s3_timestamp, value) == _outcome(parse_timestamp, value)


@given(instants, st.sampled_from(WEEKDAYS))
def test_http_dates_parse_as_botocore_parses_them(instant: datetime, weekday: str) -> None:
    # S3's header format; the weekday is taken as written, right or wrong, as dateutil takes it.
    month = MONTHS[instant.month - 1]
    _same_as_botocore(f"{weekday}, {instant:%d} {month} {instant.year:04d} {instant:%H:%M:%S} GMT")


@given(instants, st.integers(min_value=0, max_value=6))
def test_iso_dates_in_utc_parse_as_botocore_parses_them(instant: datetime, digits: int) -> None:
    fraction = f".{instant.microsecond:06d}"[: digits + 1] if digits else ""
    _same_as_botocore(f"{instant.year:04d}-{instant:%m-%dT%H:%M:%S}{fraction}Z")


@given(
    st.from_regex(
        r"\A(?:Mon|Sun|Xyz), [0-3][0-9] (?:Jan|Feb|Nov|Dec|Xyz) [0-9]{4} "
        r"[0-2][0-9]:[0-6][0-9]:[0-6][0-9] GMT\Z"
        r"|\A[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](?:\.[0-9]{1,7})?Z\Z",
        fullmatch=True,
    )
)
def test_impossible_dates_in_either_shape_get_botocore_s_answer(value: str) -> None:
    # The 31st of February, hour 29, second 60, month "Xyz", year 0050: botocore's
    # parser judges them.
    _same_as_botocore(value)


@pytest.mark.parametrize(
    "value",
    [
        "1700000000",  # epoch seconds
        "2026-11-25T01:20:13+01:00",  # an offset other than Z
        "2026-11-25 01:20:13",
        "Wed, 25 Nov 2026 01:20:13 +0000",
        "Wed, 5 Nov 2026 01:20:13 GMT",  # a day of one digit
        "not a date",
    ],
)
def test_other_shapes_are_left_to_botocore(value: str) -> None:
    _same_as_botocore(value)


def test_the_two_shapes_name_the_instant_they_say_in_utc() -> None:
    expected = datetime(2026, 11, 25, 1, 20, 13, tzinfo=UTC)
    assert parse_s3_timestamp("Wed, 25 Nov 2026 01:20:13 GMT") == expected
    assert parse_s3_timestamp("Wed, 25 Nov 2026 01:20:13 GMT").tzinfo is UTC
    half_a_second_later = expected + timedelta(microseconds=500_000)
    assert parse_s3_timestamp("2026-11-25T01:20:13.5Z") == half_a_second_later


@pytest.fixture
def botocore_parser_refused(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """botocore's timestamp parser fails the test if called, directly or as the fallback."""

    def refused(value: str) -> datetime:
        raise AssertionError(f"botocore's default parser was called for {value!r}")

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="photos")
        monkeypatch.setattr(botocore.parsers, "DEFAULT_TIMESTAMP_PARSER", refused)
        monkeypatch.setattr(s3_timestamps, "parse_timestamp", refused)
        yield


@pytest.mark.usefixtures("botocore_parser_refused")
async def test_the_store_s_own_client_parses_its_timestamps_directly() -> None:
    async with S3ImageStore("photos", config=S3Config(region="us-east-1")) as store:
        written = await store.put("s/a.jpg", b"\xff\xd8 a photo", content_type="image/jpeg")
        head = await store.head("s/a.jpg")
        listed = [info async for info in store.list("s/")]
    assert head.last_modified is not None and listed[0].last_modified is not None
    assert abs(head.last_modified - written.last_modified) < timedelta(minutes=1)  # type: ignore[operator]
    assert listed[0].last_modified.replace(microsecond=0) == head.last_modified
    # A client the store did not build keeps botocore's parser: the refusal is really in place.
    with pytest.raises(AssertionError, match="default parser was called"):
        boto3.client("s3", region_name="us-east-1").head_object(Bucket="photos", Key="s/a.jpg")
