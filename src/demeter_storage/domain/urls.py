"""URLs that may carry credentials: one masker, and the shape rules of the settings' URLs.

The database, Redis and S3 endpoint URLs come from the environment and may
hold a password (``postgresql+asyncpg://user:password@host/db``, or a
``?password=`` parameter). Anything that shows such a URL (a ``repr``, an
error, a log line, the CLI, a circuit breaker's name and so its Redis keys)
shows :func:`mask_url` of it. :func:`redact` removes a URL's passwords from
text someone else wrote, such as a driver's error message.

Masking never parses strictly: hostile URLs are exactly the ones a parser
reads differently from the library that uses them (SQLAlchemy lets a password
hold ``/``, ``?`` and ``#``; ``urllib`` ends the host at the first of them).
So everything between ``://`` and the last ``@`` is userinfo, and everything
after its first ``:`` is a password.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

from demeter_storage.domain.secrets import MASK

_SECRET_PARAMETER: Final = re.compile(
    r"(?i)([?&;][^=&;#]*(?:pass|pwd|secret|token|credential)[^=&;#]*=)([^&;#]*)"
)
"""A query parameter whose name says it holds a secret (``password``, ``auth_token``...)."""
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_LABEL_WITH_UNDERSCORE: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_UNSAFE: Final = re.compile(r"[\x00-\x20\x7f]")
"""Whitespace and control characters: ``urlsplit`` silently drops some of them."""


def mask_url(url: str) -> str:
    """``url`` with every password in it replaced by ``********``.

    The user name stays (it helps to tell two URLs apart); a password in the
    userinfo or in a query parameter named like one is masked, however the
    URL is malformed.
    """
    masked = _SECRET_PARAMETER.sub(lambda m: m.group(1) + MASK, url)
    prefix, userinfo, host = _userinfo(masked)
    if userinfo is None or ":" not in userinfo:
        return masked
    return f"{prefix}{userinfo.partition(':')[0]}:{MASK}@{host}"


def url_secrets(url: str) -> frozenset[str]:
    """The passwords ``url`` holds, as written and percent-decoded (for :func:`redact`)."""
    found = {match.group(2) for match in _SECRET_PARAMETER.finditer(url)}
    _, userinfo, _ = _userinfo(url)
    if userinfo is not None and ":" in userinfo:
        found.add(userinfo.partition(":")[2])
    # How a strict parser reads it too: it may end the password earlier.
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        found.add(password)
    found |= {unquote(secret) for secret in found}
    return frozenset(secret for secret in found if secret)


def _userinfo(url: str) -> tuple[str, str | None, str]:
    """``(scheme://, userinfo, the rest)``: userinfo runs to the last ``@`` (None without one)."""
    scheme = _SCHEME.match(url)
    prefix = scheme.group(0) if scheme else ""
    userinfo, at, rest = url[len(prefix) :].rpartition("@")
    return (prefix, userinfo, rest) if at else (prefix, None, url[len(prefix) :])


def redact(text: str, *urls: str | None) -> str:
    """``text`` with the passwords of ``urls`` replaced by ``********``."""
    secrets = set().union(*(url_secrets(url) for url in urls if url))
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        text = text.replace(secret, MASK)
    return text


def endpoint_identity(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lowercased: a name that carries no credentials.

    Raises:
        ValueError: ``url`` has no host, or an invalid port.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("the URL has no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def http_url_problem(url: str, *, underscores: bool = True) -> str | None:
    """Why ``url`` is not a usable ``http(s)://host[:port][/path]`` URL, or None.

    Credentials, a query and a fragment are refused: the URL is copied into
    every URL handed to clients. ``underscores=False`` holds host names to
    RFC 1123, as botocore does for endpoints.
    """
    if _UNSAFE.search(url):
        return "must not contain spaces or control characters"
    if "?" in url or "#" in url:
        return "must not have a query or a fragment"
    parts, problem = _split(url)
    if problem:
        return problem
    assert parts is not None
    if parts.scheme.lower() not in ("http", "https"):
        return "must start with http:// or https://"
    if "@" in parts.netloc:
        return (
            "must not carry credentials (they would be copied into every URL given to "
            "clients); give S3 credentials as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        )
    return _host_problem(parts, underscores=underscores)


REDIS_SCHEMES: Final = ("redis", "rediss", "unix")


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable Redis URL (``redis[s]://host[:port][/db]``, ``unix://path``)."""
    if _UNSAFE.search(url):
        return "must not contain spaces or control characters"
    parts, problem = _split(url)
    if problem:
        return problem
    assert parts is not None
    scheme = parts.scheme.lower()
    if scheme not in REDIS_SCHEMES:
        return "must start with redis://, rediss:// or unix://"
    if scheme == "unix":
        return None if parts.path else "needs the socket's path (unix:///run/redis.sock)"
    database = parts.path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        return "the database after the host must be a number (redis://host:6379/0)"
    return _host_problem(parts, underscores=True)


def _split(url: str) -> tuple[SplitResult | None, str | None]:
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: invalid ports raise here
    except ValueError:
        return None, "is not a valid URL (check the host and the port)"
    if port == 0:
        return None, "the port must be from 1 to 65535"
    return parts, None


def _host_problem(parts: SplitResult, *, underscores: bool) -> str | None:
    host = parts.hostname
    if not host:
        return "needs a host (scheme://host[:port])"
    if ":" in host:  # an IPv6 literal; urlsplit accepts anything between the brackets
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return f"{host!r} is not an IPv6 address"
        return None
    label = _LABEL_WITH_UNDERSCORE if underscores else _LABEL
    name = host.removesuffix(".")
    if len(name) > 253 or not all(label.fullmatch(part) for part in name.split(".")):
        return f"{host!r} is not a valid host name"
    return None
