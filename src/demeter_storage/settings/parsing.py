"""What a setting's annotation means: the text it is read from, and the values it holds.

:class:`~demeter_storage.settings.storage.StorageSettings` annotates its fields with a
few plain types (``int``, ``float``, ``bool``, ``str``, ``Path``, ``Secret``,
optionally ``| None``) and the choice types below. :func:`parse_setting` turns
an environment string into such a value; :func:`type_problem` says when a
value given in code is not one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal, get_args

from demeter_storage.domain.secrets import MASK, Secret
from demeter_storage.domain.urls import mask_url

Backend = Literal["local", "s3", "memory"]
AddressingStyle = Literal["auto", "path", "virtual"]
S3Engine = Literal["boto3", "obstore"]
ExpiredRecords = Literal["mark", "remove"]
_CHOICES: Final = {
    "Backend": Backend,
    "AddressingStyle": AddressingStyle,
    "S3Engine": S3Engine,
    "ExpiredRecords": ExpiredRecords,
}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def parse_setting(raw: str, annotation: Any) -> Any:
    """Turn an environment string into a value of the field's type."""
    text = str(annotation).replace(" ", "")
    optional = text.endswith("|None")
    base = text.removesuffix("|None")
    if base == "bool":
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true/false, yes/no, on/off or 1/0")
    if base == "int":
        return int(raw.replace("_", ""))
    if base == "float":
        return float(raw)
    if base == "Path":
        try:
            return Path(raw).expanduser()
        except RuntimeError as exc:  # "~someone" whose home is unknown
            raise ValueError(f"cannot expand the home directory ({exc})") from None
    if base == "Secret":
        return Secret(raw)
    if base in _CHOICES:
        allowed = get_args(_CHOICES[base])
        if raw.lower() not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return raw.lower()
    if base == "str":
        return raw
    raise TypeError(f"unsupported setting type {annotation}{' (optional)' if optional else ''}")


_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
    "Path": Path,
    "Secret": Secret,
}


def type_problem(value: Any, annotation: Any) -> str | None:
    """Why ``value`` is not of the field's type (settings made in code), or None."""
    text = str(annotation).replace(" ", "")
    base = text.removesuffix("|None")
    if value is None:
        return None if text.endswith("|None") else "must be set"
    if base in _CHOICES:
        allowed = get_args(_CHOICES[base])
        if isinstance(value, str) and value in allowed:
            return None
        return f"must be one of {', '.join(allowed)}"
    expected = _TYPES[base]
    if (isinstance(value, bool) and base != "bool") or not isinstance(value, expected):
        return f"must be {'an' if base == 'int' else 'a'} {base}, got {type(value).__name__}"
    return None


def shown_raw(raw: str, annotation: Any, *, url: bool) -> str:
    """How a value that did not parse is quoted: secrets masked, URLs' passwords masked."""
    if "Secret" in str(annotation):
        return MASK
    return repr(mask_url(raw)) if url else repr(raw)
