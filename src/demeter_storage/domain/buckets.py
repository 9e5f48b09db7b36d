"""Bucket names: S3's rules, for every backend.

The same names work everywhere, so a configuration moves from the local or
in-memory store to S3 unchanged; and on the local store, where a bucket is a
directory under the storage root, the rules leave no way out of the root (no
``/``, no name made of dots, nothing hidden).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from demeter_storage.domain.errors import ConfigurationError

_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
RESERVED_PREFIXES: Final = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES: Final = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
RULE: Final = (
    "use 3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or "
    "digit, without '..', not shaped like an IP address"
)


def bucket_name_problem(name: object) -> str | None:
    """Why ``name`` breaks S3's bucket naming rules, or None if it follows them.

    The rules are AWS's (general purpose buckets): 3 to 63 characters of
    lowercase letters, digits, ``.`` and ``-``; a letter or digit first and
    last; no ``..``; not an IPv4 address; none of AWS's reserved prefixes
    (``xn--``...) and suffixes (``-s3alias``...).
    """
    if not isinstance(name, str):
        return f"must be a str, got {type(name).__name__}"
    if not _NAME.fullmatch(name) or ".." in name:
        return f"{name!r} is not a valid bucket name: {RULE}"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        return f"{name!r} is not a valid bucket name: it is shaped like an IP address"
    if name.startswith(RESERVED_PREFIXES) or name.endswith(RESERVED_SUFFIXES):
        return f"{name!r} is not a valid bucket name: S3 reserves its prefix or suffix"
    return None


def validate_bucket_name(name: object) -> str:
    """Return ``name`` if it follows S3's bucket naming rules.

    Raises:
        TypeError: not a str.
        ConfigurationError: not a valid bucket name.
    """
    if not isinstance(name, str):
        raise TypeError(f"bucket must be a str, got {type(name).__name__}")
    problem = bucket_name_problem(name)
    if problem:
        raise ConfigurationError(f"invalid bucket name: {problem}")
    return name
