"""S3's two timestamp formats, parsed directly: botocore's dateutil parser slows listings down.

S3 sends RFC 1123 in headers (``Wed, 25 Nov 2026 01:20:13 GMT``) and ISO 8601
in UTC in XML bodies (``2026-11-25T01:20:13.000Z``); :func:`parse_s3_timestamp`
reads those two and gives anything else to botocore's own parser, so its
answer is always botocore's instant (a property test holds it to that), in
:data:`datetime.UTC`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

import botocore.session
from botocore.utils import parse_timestamp

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_RFC_1123: Final = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) ([A-Z][a-z]{2}) "
    # Years from 1000 only: dateutil reads "0050" after a month name as two digits (2050).
    r"([1-9][0-9]{3}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_ISO_8601_UTC: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?Z"
)


def parse_s3_timestamp(value: str | float) -> datetime:
    """The instant ``value`` names, as botocore's default timestamp parser reads it."""
    if isinstance(value, str):  # botocore's event-stream parser hands over epoch floats
        try:
            if match := _RFC_1123.fullmatch(value):
                day, month_name, year, hour, minute, second = match.groups()
                return datetime(
                    int(year), _MONTHS[month_name], int(day), int(hour), int(minute), int(second),
                    tzinfo=UTC,
                )  # fmt: skip
            if match := _ISO_8601_UTC.fullmatch(value):
                year, month, day, hour, minute, second, fraction = match.groups()
                return datetime(
                    int(year), int(month), int(day), int(hour), int(minute), int(second),
                    int(fraction.ljust(6, "0")) if fraction else 0, tzinfo=UTC,
                )  # fmt: skip
        except (KeyError, ValueError):
            pass  # no such month or day: botocore's parser says what it makes of it
    return parse_timestamp(value)  # type: ignore[arg-type]  # takes numbers too; the stubs say str


def parse_timestamps_directly(session: botocore.session.Session) -> None:
    """Have the clients ``session`` creates from now on parse with :func:`parse_s3_timestamp`."""
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_s3_timestamp
    )
