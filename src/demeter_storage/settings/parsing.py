"""Two cattrs converters: the environment's text into settings, and values given in code checked.

Each field of :class:`~demeter_storage.settings.storage.StorageSettings` is
made with :func:`setting`, whose metadata names its variable (``env``), says
what it means (``help``), and may give its inclusive limits (``bounds``) or
mark it as a URL that may hold a password (``url``). The same metadata makes
the converter's keys, the checks' messages and the settings table.

:data:`from_text` has one structure hook per type a setting holds (``bool``,
``int``, ``float``, ``str``, ``Path``, ``Secret`` and the ``Literal``
choices below; cattrs adds ``| None``), and one per settings class that reads
each field from its variable. :data:`in_code` has a hook per type too, which
only says whether a value given in code is of that type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from attrs import AttrsInstance
from cattrs.gen import make_dict_structure_fn, override

from demeter_storage.domain.secrets import MASK, Secret
from demeter_storage.domain.urls import mask_url

Backend = Literal["local", "s3", "memory"]
AddressingStyle = Literal["auto", "path", "virtual"]
S3Engine = Literal["boto3", "obstore"]
ExpiredRecords = Literal["mark", "remove"]
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
T = TypeVar("T", bound=AttrsInstance)


def setting(
    env: str,
    default: Any,
    help: str,
    *,
    bounds: tuple[float, float] | None = None,
    url: bool = False,
    converter: Callable[[Any], Any] | None = None,
) -> Any:
    """A field read from the variable ``env``; ``bounds`` are the inclusive limits of a number.

    A ``url`` may hold a password: it shows masked in ``repr`` and in every problem.
    """
    metadata = {"env": env, "help": help, "bounds": bounds, "url": url}
    return attrs.field(
        default=default,
        converter=converter,
        repr=_masked if url else True,
        metadata=metadata,
    )


def _masked(value: object) -> str:
    if value is None:
        return "None"
    return repr(mask_url(value)) if isinstance(value, str) else f"<{type(value).__name__}>"


def _is_choice(kind: Any) -> bool:
    return get_origin(kind) is Literal


# The environment's text.


def _bool(raw: str, _: type) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _path(raw: str, _: type) -> Path:
    try:
        return Path(raw).expanduser()
    except RuntimeError as exc:  # "~someone" whose home is unknown
        raise ValueError(f"cannot expand the home directory ({exc})") from None


def _choice(raw: str, kind: Any) -> str:
    allowed: tuple[str, ...] = get_args(kind)
    if raw.lower() not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}")
    return raw.lower()


def _settings_hook(cls: type[T]) -> Callable[[Mapping[str, str], Any], T]:
    """Each field of ``cls`` read from its variable, hooks of every field run, errors kept."""
    renamed = {field.name: override(rename=field.metadata["env"]) for field in attrs.fields(cls)}
    # The overrides are **kwargs beside the _cattrs_* flags: mypy cannot tell them apart.
    return make_dict_structure_fn(cls, from_text, **renamed)  # type: ignore[arg-type]


from_text: Final = cattrs.Converter(detailed_validation=True)
"""Structures ``{variable: text}`` into settings; text that does not parse raises."""
from_text.register_structure_hook(bool, _bool)
from_text.register_structure_hook(int, lambda raw, _: int(raw.replace("_", "")))
from_text.register_structure_hook(float, lambda raw, _: float(raw))
from_text.register_structure_hook(str, lambda raw, _: raw)
from_text.register_structure_hook(Path, _path)
from_text.register_structure_hook(Secret, lambda raw, _: Secret(raw))
from_text.register_structure_hook_func(_is_choice, _choice)
from_text.register_structure_hook_factory(attrs.has, _settings_hook)


def structure_environment(values: Mapping[str, str], cls: type[T]) -> tuple[T, list[str]]:
    """Settings of ``cls`` from ``{variable: text}``, and a problem per text that did not parse.

    A variable that did not parse keeps its field's default, so that the
    settings can still be checked for every other problem.
    """
    try:
        return from_text.structure(values, cls), []
    except cattrs.ClassValidationError as exc:
        with_notes, without = exc.group_exceptions()
        if without:  # not a field's text: a bug, not a setting
            raise
        failed = {note.name: error for error, note in with_notes}
    problems = []
    refused = set()
    for field in attrs.fields(cls):  # in declaration order
        if field.name in failed:
            env = field.metadata["env"]
            refused.add(env)
            problems.append(f"{env}={_quoted(values[env], field)}: {failed[field.name]}")
    kept = {env: text for env, text in values.items() if env not in refused}
    return from_text.structure(kept, cls), problems


def _quoted(raw: str, field: attrs.Attribute[Any]) -> str:
    """How text that did not parse is quoted: secrets masked, URLs' passwords masked."""
    if Secret in (field.type, *get_args(field.type)):
        return MASK
    return repr(mask_url(raw)) if field.metadata["url"] else repr(raw)


# Values given in code.


class _Mistyped(TypeError):
    """A value given in code is not of its field's type."""


def _instance_of(expected: type | tuple[type, ...], name: str) -> Callable[[Any, type], Any]:
    def check(value: Any, kind: type) -> Any:
        if value is None:
            raise _Mistyped("must be set")
        # bool is an int to Python, never to a setting (except a bool's).
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, expected):
            raise _Mistyped(f"must be {name}, got {type(value).__name__}")
        return value

    return check


def _choice_in_code(value: Any, kind: Any) -> Any:
    allowed: tuple[str, ...] = get_args(kind)
    if isinstance(value, str) and value in allowed:
        return value
    raise _Mistyped(f"must be one of {', '.join(allowed)}")


in_code: Final = cattrs.Converter()
"""Passes a value given in code through unchanged if it is of the type asked, else raises."""
in_code.register_structure_hook(bool, _instance_of(bool, "a bool"))
in_code.register_structure_hook(int, _instance_of(int, "an int"))
in_code.register_structure_hook(float, _instance_of((int, float), "a float"))
in_code.register_structure_hook(str, _instance_of(str, "a str"))
in_code.register_structure_hook(Path, _instance_of(Path, "a Path"))
in_code.register_structure_hook(Secret, _instance_of(Secret, "a Secret"))
in_code.register_structure_hook_func(_is_choice, _choice_in_code)


def type_problem(value: Any, kind: Any) -> str | None:
    """Why ``value`` (given in code) is not of the type ``kind``, or None."""
    try:
        in_code.structure(value, kind)
    except _Mistyped as exc:
        return str(exc)
    return None
