r"""Lifecycle policies as code: what expires, when, in which bucket.

A :class:`LifecyclePolicy` is a set of :class:`LifecycleRule`\\ s. Each rule
applies to the keys under a prefix, in one bucket or in every bucket the
policy is applied to, and does one or more of: expire objects after N days,
abort incomplete multipart uploads after N days, move objects to another
storage class after N days (S3 only), expire noncurrent versions after N days
(versioned S3 buckets only).

S3 stores write the policy into the bucket's lifecycle configuration and the
server enforces it; the local and in-memory stores enforce it themselves in
``sweep()``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from demeter_storage.domain.errors import ValidationError
from demeter_storage.domain.keys import validate_prefix
from demeter_storage.domain.objects import ObjectInfo

logger = logging.getLogger(__name__)

STORAGE_CLASSES: Final = frozenset(
    {
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "GLACIER_IR",
        "DEEP_ARCHIVE",
    }
)
"""Storage classes S3 can transition objects to."""

_RULE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_ACTIONS: Final = (
    "expire_after_days",
    "abort_incomplete_uploads_after_days",
    "transition_after_days",
    "noncurrent_expire_after_days",
)
MAX_DAYS: Final = 100 * 365


def _days(rule_id: str, name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"lifecycle rule {rule_id!r}: {name} must be a whole number of days")
    if not 1 <= value <= MAX_DAYS:
        raise ValidationError(
            f"lifecycle rule {rule_id!r}: {name} must be from 1 to {MAX_DAYS} days, got {value}"
        )


@attrs.frozen
class LifecycleRule:
    """One rule of a lifecycle policy.

    Attributes:
        id: a name, unique in its policy (letters, digits, ``.``, ``_``, ``-``).
        prefix: the keys it applies to (``""``: all, ``"s1/"``: one session).
        bucket: the bucket it applies to; None for every bucket the policy is applied to.
        expire_after_days: delete objects this many days after they were written.
        abort_incomplete_uploads_after_days: abort multipart uploads left unfinished
            this long (their parts cost money and are invisible).
        transition_after_days: move objects to ``transition_storage_class`` after
            this many days (S3 only; other stores ignore it with a warning).
        transition_storage_class: e.g. ``"GLACIER_IR"`` or ``"STANDARD_IA"``.
        noncurrent_expire_after_days: delete old versions this long after they
            were replaced (versioned S3 buckets only).
    """

    id: str
    prefix: str = ""
    bucket: str | None = None
    expire_after_days: int | None = None
    abort_incomplete_uploads_after_days: int | None = None
    transition_after_days: int | None = None
    transition_storage_class: str | None = None
    noncurrent_expire_after_days: int | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.id, str) or not _RULE_ID.match(self.id):
            raise ValidationError(
                f"invalid lifecycle rule id {self.id!r}: use 1-200 letters, digits, '.', '_' or '-'"
            )
        try:
            validate_prefix(self.prefix)
        except (ValidationError, TypeError) as exc:
            raise ValidationError(f"lifecycle rule {self.id!r}: {exc}") from None
        for name in _ACTIONS:
            _days(self.id, name, getattr(self, name))
        if all(getattr(self, name) is None for name in _ACTIONS):
            raise ValidationError(f"lifecycle rule {self.id!r} does nothing: give it an action")
        if (self.transition_after_days is None) != (self.transition_storage_class is None):
            raise ValidationError(
                f"lifecycle rule {self.id!r}: give transition_after_days and "
                "transition_storage_class together"
            )
        if (
            self.transition_storage_class is not None
            and self.transition_storage_class not in STORAGE_CLASSES
        ):
            known = ", ".join(sorted(STORAGE_CLASSES))
            raise ValidationError(
                f"lifecycle rule {self.id!r}: unknown storage class "
                f"{self.transition_storage_class!r}; use one of {known}"
            )
        if (
            self.expire_after_days is not None
            and self.transition_after_days is not None
            and self.expire_after_days <= self.transition_after_days
        ):
            raise ValidationError(
                f"lifecycle rule {self.id!r}: objects would expire before they transition"
            )

    def applies_to(self, bucket: str) -> bool:
        """Whether the rule covers ``bucket``."""
        return self.bucket is None or self.bucket == bucket

    def matches(self, key: str) -> bool:
        """Whether the rule covers ``key``."""
        return key.startswith(self.prefix)

    def overlaps(self, other: LifecycleRule) -> bool:
        """Whether some key of some bucket is covered by both rules."""
        same_buckets = self.bucket is None or other.bucket is None or self.bucket == other.bucket
        nested = self.prefix.startswith(other.prefix) or other.prefix.startswith(self.prefix)
        return same_buckets and nested


def _rules(value: Iterable[LifecycleRule]) -> tuple[LifecycleRule, ...]:
    return tuple(value)


@attrs.frozen
class LifecyclePolicy:
    """A set of lifecycle rules, checked for consistency.

    Raises:
        ValidationError: duplicate ids, or overlapping rules whose actions conflict
            (the same action with different days, or an expiry before a transition).
    """

    rules: tuple[LifecycleRule, ...] = attrs.field(default=(), converter=_rules)

    def __attrs_post_init__(self) -> None:
        seen: set[str] = set()
        for rule in self.rules:
            if not isinstance(rule, LifecycleRule):
                raise TypeError("rules must be LifecycleRule instances")
            if rule.id in seen:
                raise ValidationError(f"lifecycle rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        for index, first in enumerate(self.rules):
            for second in self.rules[index + 1 :]:
                if first.overlaps(second):
                    _check_compatible(first, second)

    @classmethod
    def default(
        cls,
        *,
        visualization_bucket: str = "demeter-photos-viz",
        visualizations_expire_after_days: int | None = 90,
        abort_incomplete_uploads_after_days: int | None = 1,
    ) -> LifecyclePolicy:
        """The default policy.

        Visualizations expire after 90 days, unfinished multipart uploads are
        aborted after 1 day, originals are kept.
        """
        rules = []
        if abort_incomplete_uploads_after_days is not None:
            rules.append(
                LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_uploads_after_days=abort_incomplete_uploads_after_days,
                )
            )
        if visualizations_expire_after_days is not None:
            rules.append(
                LifecycleRule(
                    id="expire-visualizations",
                    bucket=visualization_bucket,
                    expire_after_days=visualizations_expire_after_days,
                )
            )
        return cls(rules=rules)

    def for_bucket(self, bucket: str) -> LifecyclePolicy:
        """The rules that cover ``bucket``, as a policy of their own (bucket-agnostic)."""
        covering = [rule for rule in self.rules if rule.applies_to(bucket)]
        return LifecyclePolicy(rules=[attrs.evolve(rule, bucket=None) for rule in covering])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what :meth:`from_dict` reads)."""
        return {
            "rules": [
                {
                    name: value
                    for name, value in attrs.asdict(rule).items()
                    if value not in (None, "")
                }
                for rule in self.rules
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LifecyclePolicy:
        """Read a policy from :meth:`to_dict`'s form (a settings file, say).

        Raises:
            ValidationError: unknown fields or invalid rules, naming the rule.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("rules", []), list):
            raise ValidationError('a lifecycle policy is {"rules": [{...}, ...]}')
        known = {field.name for field in attrs.fields(LifecycleRule)}
        rules = []
        for raw in data.get("rules", []):
            if not isinstance(raw, Mapping):
                raise ValidationError("each lifecycle rule is an object")
            unknown = set(raw) - known
            if unknown:
                raise ValidationError(
                    f"lifecycle rule {raw.get('id')!r}: unknown fields {', '.join(sorted(unknown))}"
                )
            try:
                rules.append(LifecycleRule(**raw))
            except TypeError as exc:
                raise ValidationError(f"lifecycle rule {raw.get('id')!r}: {exc}") from None
        return cls(rules=rules)


def _rule_dict(rule: LifecycleRule) -> dict[str, Any]:
    return {name: value for name, value in attrs.asdict(rule).items() if value not in (None, "")}


def _check_compatible(first: LifecycleRule, second: LifecycleRule) -> None:
    for name in _ACTIONS:
        a, b = getattr(first, name), getattr(second, name)
        if a is not None and b is not None and a != b:
            raise ValidationError(
                f"lifecycle rules {first.id!r} and {second.id!r} overlap and set {name} "
                f"differently ({a} and {b}); merge them or separate their prefixes"
            )
    for expiring, moving in ((first, second), (second, first)):
        if (
            expiring.expire_after_days is not None
            and moving.transition_after_days is not None
            and expiring.expire_after_days <= moving.transition_after_days
        ):
            raise ValidationError(
                f"lifecycle rules {expiring.id!r} and {moving.id!r} overlap: objects would "
                "expire before they transition"
            )


def is_expired(info: ObjectInfo, rules: Sequence[LifecycleRule], now: datetime) -> bool:
    """Whether an expiry rule covering ``info`` has passed at ``now``."""
    if info.last_modified is None:
        return False
    return any(
        rule.expire_after_days is not None
        and rule.matches(info.key)
        and info.last_modified <= now - timedelta(days=rule.expire_after_days)
        for rule in rules
    )


def warn_unenforceable(policy: LifecyclePolicy, store: str) -> None:
    """Log the rules a store without S3's lifecycle engine cannot carry out."""
    for rule in policy.rules:
        if rule.transition_after_days is not None or rule.noncurrent_expire_after_days is not None:
            logger.warning(
                "lifecycle rule %r: storage-class transitions and noncurrent versions exist "
                "only on S3; store %r ignores them",
                rule.id,
                store,
            )
