"""Rules for object keys, session ids and filenames.

Keys are ``/``-separated segments. The app's keys are ``{session_id}/{filename}``
for originals and ``{session_id}/viz_{filename}`` for visualizations; a direct
upload lands at ``_staging/{image_id}`` first (a session id may never be
``_staging``), and only the confirm step copies it to its key. Every
segment is NFC-normalised and then checked; so is its NFKC form, so that a
Unicode look-alike (fullwidth dots or solidus, say) cannot become ``..`` or a
separator in some later system that folds compatibility characters.
"""

from __future__ import annotations

import re
import unicodedata

from demeter_storage.domain.errors import ValidationError

MAX_KEY_BYTES = 1024
"""S3's own limit on a key, in UTF-8 bytes."""

MAX_SEGMENT_BYTES = 220
"""Leaves room under the usual 255-byte file-name limit for the local store's
sidecar names (``.{name}.meta.json``)."""

MAX_FILENAME_BYTES = 200
"""Leaves room in a segment for the ``viz_`` and ``thumb_`` prefixes and ``.jpg``."""

MAX_SESSION_ID_BYTES = 128

VISUALIZATION_PREFIX = "viz_"
THUMBNAIL_PREFIX = "thumb_"
STAGING_SESSION = "_staging"
"""The reserved first segment of the keys direct uploads post to."""

# Cc: controls (NUL, newline, DEL...), Cf: invisible format characters such as
# right-to-left overrides, Cs: lone surrogates, Zl/Zp: line and paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SEPARATORS = ("/", "\\")
# Printable ASCII is its own NFC and NFKC form, so an all-ASCII segment only needs
# the plain rules: this pattern checks them at once (the common case, and fast).
_PLAIN_ASCII_SEGMENT = re.compile(
    r"(?![ .])(?!.*\.\.)[\x20-\x2e\x30-\x5b\x5d-\x7e]{1,220}(?<![ .])"
)


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return value


def _segment_problem(segment: str) -> str | None:
    """Return why ``segment`` is not a valid key segment, or None if it is."""
    if _PLAIN_ASCII_SEGMENT.fullmatch(segment):
        return None
    return _full_segment_problem(segment)


def _full_segment_problem(segment: str) -> str | None:
    if not segment:
        return "it is empty (no leading, trailing or doubled '/')"
    for form in (segment, unicodedata.normalize("NFKC", segment)):
        if any(sep in form for sep in _SEPARATORS):
            return "it contains '/' or '\\' (or a Unicode look-alike of one)"
        if ".." in form:
            return "it contains '..' (or a Unicode look-alike of it)"
        if form.startswith("."):
            return "it starts with a dot (or a Unicode look-alike of one)"
        if form.endswith("."):
            return "it ends with a dot"
    for char in segment:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return f"it contains the control or invisible character U+{ord(char):04X}"
    if segment != segment.strip():
        return "it starts or ends with whitespace"
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        return f"it is longer than {MAX_SEGMENT_BYTES} UTF-8 bytes"
    return None


def _normalise(value: str, what: str) -> str:
    try:
        return unicodedata.normalize("NFC", value)
    except UnicodeError as exc:  # pragma: no cover - normalize accepts any str today
        raise ValidationError(f"{what} {value!r} is not valid Unicode: {exc}") from exc


def validate_segment(value: object, what: str = "segment") -> str:
    """Return ``value`` NFC-normalised if it is a valid single key segment.

    Raises:
        TypeError: ``value`` is not a str.
        ValidationError: the segment breaks a rule; the message says which.
    """
    text = _normalise(_require_str(value, what), what)
    problem = _segment_problem(text)
    if problem:
        raise ValidationError(f"invalid {what} {value!r}: {problem}; choose another name")
    return text


def validate_key(value: object) -> str:
    """Return ``value`` NFC-normalised if it is a valid object key.

    Raises:
        TypeError: ``value`` is not a str.
        ValidationError: a segment breaks a rule or the key is too long.
    """
    text = _normalise(_require_str(value, "key"), "key")
    for segment in text.split("/"):
        problem = _segment_problem(segment)
        if problem:
            raise ValidationError(
                f"invalid key {value!r}: segment {segment!r} is refused because {problem}"
            )
    if len(text.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValidationError(
            f"invalid key {text[:40]!r}...: longer than {MAX_KEY_BYTES} UTF-8 bytes; "
            "use a shorter session id or filename"
        )
    return text


def is_addressable(key: str) -> bool:
    """Whether ``key``, as found in a store, is a valid key exactly as it is (NFC included).

    A listing skips the keys other tools wrote that no method here could address.
    """
    try:
        return validate_key(key) == key
    except ValueError:  # ValidationError is one
        return False


def validate_prefix(value: object) -> str:
    """Return ``value`` NFC-normalised if it can start a valid key ("" lists everything).

    Every complete segment must be valid; the last one may be partial (so
    ``"sess"`` matches ``"session-1/a.jpg"``), but it must not hold anything a
    segment may never hold.

    Raises:
        TypeError: ``value`` is not a str.
        ValidationError: the prefix can never match a valid key.
    """
    text = _normalise(_require_str(value, "prefix"), "prefix")
    if not text:
        return text
    *complete, partial = text.split("/")
    for segment in complete:
        problem = _segment_problem(segment)
        if problem:
            raise ValidationError(
                f"invalid prefix {value!r}: segment {segment!r} is refused because {problem}"
            )
    if partial:
        # A partial segment may legitimately end in "." (as in "photo." for
        # "photo.jpg"), so check it with a harmless completion appended.
        problem = _segment_problem(partial + "x")
        if problem and "bytes" not in problem:
            raise ValidationError(f"invalid prefix {value!r}: {problem}")
    if len(text.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValidationError(f"invalid prefix: longer than {MAX_KEY_BYTES} UTF-8 bytes")
    return text


def validate_session_id(value: object) -> str:
    """Return a valid, NFC-normalised session id (one key segment, at most 128 bytes)."""
    text = validate_segment(value, "session id")
    if len(text.encode("utf-8")) > MAX_SESSION_ID_BYTES:
        raise ValidationError(
            f"invalid session id {value!r}: longer than {MAX_SESSION_ID_BYTES} UTF-8 bytes"
        )
    if text == STAGING_SESSION:
        raise ValidationError(
            f"invalid session id {value!r}: it is reserved for direct uploads in flight; "
            "choose another"
        )
    return text


def validate_filename(value: object) -> str:
    """Return a valid, NFC-normalised filename (one key segment, at most 200 bytes)."""
    text = validate_segment(value, "filename")
    if len(text.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise ValidationError(
            f"invalid filename {value!r}: longer than {MAX_FILENAME_BYTES} UTF-8 bytes; "
            "choose a shorter name"
        )
    return text


def original_key(session_id: str, filename: str) -> str:
    """Key of an original photo: ``{session_id}/{filename}``.

    Names starting with ``thumb_`` are reserved for the thumbnails stored beside
    the originals, so an upload can never overwrite another photo's thumbnail.
    """
    name = validate_filename(filename)
    if name.startswith(THUMBNAIL_PREFIX):
        raise ValidationError(
            f"invalid filename {filename!r}: names starting with {THUMBNAIL_PREFIX!r} are "
            "reserved for thumbnails; rename the file"
        )
    return validate_key(f"{validate_session_id(session_id)}/{name}")


def visualization_key(session_id: str, filename: str) -> str:
    """Key of a visualization: ``{session_id}/viz_{filename}``."""
    name = validate_filename(filename)
    return validate_key(
        f"{validate_session_id(session_id)}/{validate_segment(VISUALIZATION_PREFIX + name)}"
    )


def thumbnail_key(session_id: str, filename: str) -> str:
    """Key of an original's thumbnail: ``{session_id}/thumb_{filename}.jpg``."""
    name = validate_filename(filename)
    return validate_key(
        f"{validate_session_id(session_id)}/{validate_segment(THUMBNAIL_PREFIX + name + '.jpg')}"
    )


def staging_key(image_id: object) -> str:
    """Where the direct upload of ``image_id`` posts its bytes: ``_staging/{image_id}``.

    A client can post there as often as its form allows; the image's own key is
    written only by the confirm step, so nothing posted later can change it.
    """
    return f"{STAGING_SESSION}/{image_id}"


def is_staging_key(key: str) -> bool:
    """Whether ``key`` is a direct upload's landing place."""
    return key.startswith(STAGING_SESSION + "/")
