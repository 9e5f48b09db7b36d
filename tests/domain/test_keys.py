"""Key, session id and filename rules."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from demeter_storage.domain import keys
from demeter_storage.domain.errors import ValidationError


@pytest.mark.parametrize(
    ("session_id", "filename", "expected"),
    [
        ("sess-1", "IMG_0001.jpg", "sess-1/IMG_0001.jpg"),
        ("2025-10-21", "row 3 plant.png", "2025-10-21/row 3 plant.png"),
        ("s", "café.jpg", "s/café.jpg"),
        ("s", "🌱.heic", "s/🌱.heic"),
        ("s", "a.b.c", "s/a.b.c"),
        ("s", "x" * 200, "s/" + "x" * 200),
    ],
)
def test_original_and_visualization_keys(session_id: str, filename: str, expected: str) -> None:
    assert keys.original_key(session_id, filename) == expected
    session, name = expected.split("/")
    assert keys.visualization_key(session_id, filename) == f"{session}/viz_{name}"
    assert keys.thumbnail_key(session_id, filename) == f"{session}/thumb_{name}.jpg"


def test_names_are_nfc_normalised() -> None:
    nfd = unicodedata.normalize("NFD", "café.jpg")
    assert nfd != "café.jpg"
    assert keys.original_key("s", nfd) == "s/café.jpg"
    assert keys.validate_key(f"s/{nfd}") == "s/café.jpg"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("a/b", "'/'"),
        ("a\\b", "'\\'"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        (".hidden", "dot"),
        ("trailing.", "ends with a dot"),
        ("nul\x00", "U+0000"),
        ("bell\x07", "U+0007"),
        ("rtl\u202e", "U+202E"),
        ("\uff0e\uff0e", "look-alike"),
        ("a\uff0fb", "look-alike"),
        ("\uff0ehidden", "look-alike"),
        (" padded", "whitespace"),
        ("x" * 201, "200"),
        ("é" * 101, "200"),
    ],
)
def test_invalid_filenames_say_why(value: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)) as caught:
        keys.validate_filename(value)
    assert "choose a" in str(caught.value)


def test_session_ids_are_bounded() -> None:
    assert keys.validate_session_id("s" * 128) == "s" * 128
    with pytest.raises(ValidationError, match="128"):
        keys.validate_session_id("s" * 129)


def test_thumbnail_names_are_reserved_for_thumbnails() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        keys.original_key("s", "thumb_a.jpg")


def test_whole_key_is_at_most_1024_bytes() -> None:
    segment = "é" * 100  # 200 UTF-8 bytes
    five = "/".join([segment] * 5)  # 1004 bytes
    assert keys.validate_key(five) == five
    with pytest.raises(ValidationError, match="1024"):
        keys.validate_key(five + "/abcdefghijklmnopqrstu")
    with pytest.raises(ValidationError, match="220"):
        keys.validate_key("s/" + "x" * 221)


@pytest.mark.parametrize("value", [None, 1, b"s/a.jpg", ["s", "a"]])
def test_non_strings_are_type_errors(value: object) -> None:
    with pytest.raises(TypeError, match="must be a str"):
        keys.validate_key(value)
    with pytest.raises(TypeError):
        keys.validate_session_id(value)


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("", True),
        ("s", True),
        ("s1/", True),
        ("s1/photo.", True),
        ("s1/ph", True),
        ("/", False),
        ("s1//", False),
        ("../", False),
        ("s1/..", False),
        ("s\x00", False),
        ("s1/.hid", False),
        ("x" * 1025, False),
    ],
)
def test_prefixes(prefix: str, ok: bool) -> None:
    if ok:
        assert keys.validate_prefix(prefix) == prefix
    else:
        with pytest.raises(ValidationError):
            keys.validate_prefix(prefix)


@given(st.text(max_size=60))
def test_any_accepted_key_is_stable_and_safe(text: str) -> None:
    try:
        key = keys.validate_key(text)
    except ValidationError:
        return
    assert keys.validate_key(key) == key
    assert unicodedata.is_normalized("NFC", key)
    for segment in key.split("/"):
        folded = unicodedata.normalize("NFKC", segment)
        assert segment and ".." not in folded and "\\" not in folded
        assert not folded.startswith(".") and not folded.endswith(".")
    assert len(key.encode()) <= keys.MAX_KEY_BYTES


@example("a..b")
@example(".a")
@example("a.")
@example(" a")
@example("a ")
@example("a" * 220)
@example("a" * 221)
@example("a/b")
@example("a\\b")
@example("a\x7f")
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=230))
def test_the_ascii_fast_path_agrees_with_the_full_rules(text: str) -> None:
    fast = keys._PLAIN_ASCII_SEGMENT.fullmatch(text) is not None
    assert fast == (keys._full_segment_problem(text) is None)


@pytest.mark.parametrize(
    ("found", "addressable"),
    [
        ("s1/photo.jpg", True),
        ("s1/cafe\u0301.jpg", False),  # decomposed: validate_key would give another key
        ("s1/caf\u00e9.jpg", True),
        ("s1//photo.jpg", False),
        ("../etc/passwd", False),
        ("", False),
    ],
)
def test_a_key_found_in_a_store_is_addressable_only_exactly_as_it_is(
    found: str, addressable: bool
) -> None:
    assert keys.is_addressable(found) is addressable


@given(st.text(max_size=40))
def test_what_validate_key_returns_is_addressable(text: str) -> None:
    try:
        valid = keys.validate_key(text)
    except ValidationError:
        assert not keys.is_addressable(text)
    else:
        assert keys.is_addressable(valid)
