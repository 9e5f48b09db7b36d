"""What the fuzz tests share: example counts, hostile inputs and their oracles.

``DEMETER_FUZZ_EXAMPLES`` sets the examples of each main property (the CI
slice's default keeps the fuzz modules under a minute; ``nox -s fuzz`` sets
20,000). The oracles restate the documented input rules (docs/service.md,
``domain/keys.py``'s docstring) independently of the code under test, so that
"accepted" and "refused" are both checked, not only "did not crash".

``test_fuzz_strategies.py`` checks the strategies themselves; the ``loop``
fixture is in this directory's conftest.py.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.domain.errors import ValidationError
from demeter_storage.service.image_service import ImageService, ServiceConfig
from demeter_storage.testing import ManualClock

T = TypeVar("T")
EXAMPLES_ENV = "DEMETER_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 600
"""Examples per main property in the CI slice."""


def examples() -> int:
    """Examples per main property: ``DEMETER_FUZZ_EXAMPLES``, else the CI slice's."""
    raw = os.environ.get(EXAMPLES_ENV, "").strip()
    return int(raw) if raw else DEFAULT_EXAMPLES


def fuzz_settings(weight: float = 1.0) -> settings:
    """Hypothesis settings for a property run ``weight`` times the main count.

    The ``loop`` fixture is shared by the examples on purpose (one event loop
    for all of them), hence the function-scoped-fixture health check is off.
    """
    return settings(
        max_examples=max(int(examples() * weight), 10),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


# Hostile pieces of names and keys: traversal, separators and their Unicode
# look-alikes (NFKC folds several to '.', '..' or '/'), controls, invisible
# format characters, whitespace, combining marks, lone surrogates, and names
# whose NFC form differs from what was typed.
PIECES = (
    *("a", "B", "0", "-", "_", "photo", "IMG_0001", ".jpg", "viz_", "thumb_", "sess"),
    *(".", "..", "...", "/", "\\", "//", "./", "../", "..\\", "~", ":", "C:", "%2e%2e", "%2f"),
    *("\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"),
    *("\u200b", "\u200d", "\u202e", "\u2066", "\ufeff", "\u00ad", "\u180e"),
    *(" ", "\u00a0", "\u2000", "\u3000", "\u205f"),
    *("\uff0e", "\uff0f", "\uff3c", "\u2024", "\u2025", "\u2026", "\ufe52", "\ufe68", "\u2215"),
    *("\u2044", "\u29f8", "\u3002", "\u0338", "\u2216", "\u00b7"),
    *("e\u0301", "\u00e9", "\u0301", "\u212b", "\u2126", "\ufb01", "\u1100\u1161", "\u0958"),
    *("\ud800", "\udcff", "\U0001f331", "\U0001f1eb\U0001f1f7", "\U0001f468\u200d\U0001f33e"),
    *("\u05d0", "\u0627", "\u4e2d\u6587", "\U00020000", "\U000e0041", "\U0010fffd"),
    *("con", "NUL", "aux.jpg", "*", "?", "<", ">", "|", '"', "'", "#", "&", "+", "=", "%"),
)
LONG_UNITS = ("a", "\u00e9", "\u4e2d", "\U0001f331", "e\u0301")
"""Repeated to reach the byte limits (128, 200, 220, 1024) with 1 to 4 bytes a character."""

plain_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,30}(\.jpg)?", fullmatch=True)
"""Names every rule accepts (the fuzzer must not only try refused ones)."""

awkward_text = st.one_of(
    plain_names,
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=10).map("".join),
    st.builds(
        lambda unit, count, tail: unit * count + tail,
        st.sampled_from(LONG_UNITS),
        st.integers(30, 260),
        st.sampled_from(("", ".jpg", ".")),
    ),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cf")), max_size=60),
)
"""A session id or filename: a str of any sort."""

names = st.one_of(
    awkward_text,
    awkward_text,
    awkward_text,
    st.sampled_from([None, 0, 1.5, b"photo.jpg", bytearray(b"a"), ["a"], {"a": 1}]),
)
"""What a caller might pass as a session id or filename, str or not."""

_joined_keys = st.lists(awkward_text, min_size=1, max_size=4).map("/".join)
keys = st.one_of(
    _joined_keys,
    _joined_keys,
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=12).map("".join),
    st.text(max_size=80),
    # Near the 1,024-byte limit with long segments (the local store's test adds a key
    # 510 levels deep as an explicit example: such keys take half a second each).
    st.lists(
        st.sampled_from(["k", "a" * 200, "\u00e9" * 110, "\U0001f331" * 55]), min_size=2, max_size=8
    ).map("/".join),
    st.sampled_from([None, 7, b"s/a.jpg", "k/" * 20 + "x.jpg"]),
)
"""What a caller might pass as an object key."""


# The rules, restated (see the module docstring of demeter_storage.domain.keys).

FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def segment_is_safe(segment: str) -> bool:
    """Whether an NFC-normalised key segment obeys every documented rule."""
    if not segment or any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in segment):
        return False
    for form in (segment, unicodedata.normalize("NFKC", segment)):
        if "/" in form or "\\" in form or ".." in form or form[:1] == "." or form[-1:] == ".":
            return False
    return segment == segment.strip() and len(segment.encode("utf-8")) <= 220


def expected_name(value: object, max_bytes: int) -> str | None:
    """The NFC name ``value`` must be stored under, or None if it must be refused."""
    assert isinstance(value, str)
    text = unicodedata.normalize("NFC", value)
    if not segment_is_safe(text) or len(text.encode("utf-8")) > max_bytes:
        return None
    return text


def expected_key(value: object) -> str | None:
    """The NFC key ``value`` must be stored under, or None if it must be refused."""
    assert isinstance(value, str)
    text = unicodedata.normalize("NFC", value)
    if not all(segment_is_safe(segment) for segment in text.split("/")):
        return None
    return text if len(text.encode("utf-8")) <= 1024 else None


def expected_original_key(session_id: object, filename: object) -> str | type[TypeError] | None:
    """``{session}/{filename}`` as it must be stored; None: refused; TypeError: not a str."""
    if not isinstance(session_id, str) or not isinstance(filename, str):
        return TypeError
    session = expected_name(session_id, 128)
    name = expected_name(filename, 200)
    if session is None or name is None or name.startswith("thumb_") or session == "_staging":
        return None  # thumb_ names and the _staging session are reserved
    return f"{session}/{name}"


# Images: the leading bytes of each accepted format, and what is not one.

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00"
TIFF_LE, TIFF_BE, BIGTIFF = b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08", b"II+\x00"
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
HEIF = b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1miaf"
IMAGE_HEADS = {
    "image/jpeg": [JPEG],
    "image/png": [PNG],
    "image/webp": [WEBP],
    "image/tiff": [TIFF_LE, TIFF_BE, BIGTIFF],
    "image/heic": [HEIC],
    "image/heif": [HEIF],
}
NOT_IMAGES = [
    b"GIF89a\x01\x00\x01\x00",
    b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1",  # AVIF: not accepted
    b"<html><script>alert(1)</script>",
    b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>",
    b"%PDF-1.7\n",
    b"PK\x03\x04\x14\x00",
    b"#!/bin/sh\nrm -rf /\n",
    b"BM6\x00\x00\x00",
    b"\xef\xbb\xbf\xff\xd8\xff",  # a BOM before a JPEG signature
    b" \xff\xd8\xff",
]


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    """Whole, truncated, polyglot, zero and non-image data."""
    heads = [head for group in IMAGE_HEADS.values() for head in group]
    kind = draw(st.sampled_from(["image", "truncated", "polyglot", "zeros", "other", "random"]))
    tail = draw(st.binary(max_size=256))
    if kind == "image":
        return draw(st.sampled_from(heads)) + tail
    if kind == "truncated":
        head = draw(st.sampled_from(heads))
        return head[: draw(st.integers(0, len(head) - 1))]
    if kind == "polyglot":
        first, second = draw(st.sampled_from(heads + NOT_IMAGES)), draw(st.sampled_from(heads))
        return first + draw(st.binary(max_size=8)) + second + tail
    if kind == "zeros":
        return b"\x00" * draw(st.integers(0, 64))
    if kind == "other":
        return draw(st.sampled_from(NOT_IMAGES)) + tail
    return draw(st.binary(max_size=300))


def sniffed_type(data: bytes) -> str | None:
    """The accepted type whose signature ``data`` starts with (the rules, restated)."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, len(head) - 3, 4)}
        if brands & {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}:
            return "image/heic"
        if brands & {b"mif1", b"msf1", b"mif2"}:
            return "image/heif"
    return None


async def chunked(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    """``data`` as an async stream cut at ``sizes`` (empty chunks included)."""
    position = 0
    for size in sizes:
        yield data[position : position + size]
        position += size
    if position < len(data):
        yield data[position:]


async def outcome(call: Awaitable[T]) -> T | ValidationError | TypeError:
    """The call's result, or the typed error it raised (``ValidationError``, ``TypeError``)."""
    try:
        return await call
    except (ValidationError, TypeError) as refused:
        return refused


def memory_service(**config: Any) -> tuple[ImageService, ManualClock]:
    """A fresh service on in-memory stores and metadata (thumbnails off)."""
    clock = ManualClock()
    service = ImageService(
        originals=InMemoryImageStore("demeter-photos-original", clock=clock.now),
        visualizations=InMemoryImageStore("demeter-photos-viz", clock=clock.now),
        metadata=InMemoryMetadataRepository(),
        config=ServiceConfig(**config),
        clock=clock.now,
    )
    return service, clock


async def leftovers(service: ImageService) -> list[str]:
    """Every object key and record key the service's stores and metadata hold."""
    found = []
    for store in (service.originals, service.visualizations):
        found += [f"{store.name}:{info.key}" async for info in store.list()]
    found += [f"row:{record.key}" async for record in service.metadata.records()]
    return found


# Content types: the accepted ones, their aliases, and the documented syntax.

ACCEPTED = ("image/jpeg", "image/png", "image/webp", "image/tiff", "image/heic", "image/heif")
ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/tif": "image/tiff",
    "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heif",
}
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
MIME = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=(\"[\x20\x21\x23-\x7e]*\"|{_TOKEN}))*")
"""``type/subtype[; param=value]``, as the service documents content types."""

clean_types = st.builds(
    lambda base, upper, params, space: space + (base.upper() if upper else base) + params + space,
    st.sampled_from([*ACCEPTED, *ALIASES, "image/gif", "text/html", "application/octet-stream"]),
    st.booleans(),
    st.sampled_from(["", "; charset=binary", ';q="1"', " ; a=b ;c=d", ";", "; x", "; a=\u00e9"]),
    st.sampled_from(["", " ", "\t", "\u3000"]),
)
content_types = st.one_of(
    clean_types,
    clean_types,
    st.text(st.sampled_from('abcegijmpx/;="+- \t.*\x00\u00e9'), max_size=30),
    st.text(max_size=20),
    st.sampled_from([None, 5, b"image/jpeg", "image/jpeg" + "x" * 250]),
)


# Tampering: a few characters of a signed value changed.


def mutate(text: str, edits: list[tuple[str, int, str]]) -> str:
    """``text`` with each ``(operation, position, character)`` edit applied in turn."""
    for operation, position, char in edits:
        if operation == "insert":
            index = position % (len(text) + 1)
            text = text[:index] + char + text[index:]
        elif text:
            index = position % len(text)
            text = text[:index] + (char if operation == "replace" else "") + text[index + 1 :]
    return text


edits = st.lists(
    st.tuples(
        st.sampled_from(["replace", "replace", "insert", "delete"]),
        st.integers(0, 300),
        st.sampled_from("0123456789abcdefABCDEF%+-_.~/?#&=; \u00e9"),
    ),
    min_size=1,
    max_size=3,
)
"""Up to three one-character replacements, insertions or deletions."""
