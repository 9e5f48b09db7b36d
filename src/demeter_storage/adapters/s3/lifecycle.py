"""Lifecycle policies to and from S3 bucket lifecycle configurations.

Rules written by demeter-storage carry IDs prefixed with ``demeter:``; rules
without that prefix belong to someone else (another tool, an operator) and are
kept as they are. Applying a policy replaces the managed rules only, and skips
the write altogether when nothing would change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from demeter_storage.domain.errors import ConfigurationError, ValidationError
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule

MANAGED_PREFIX: Final = "demeter:"


def to_s3_rule(rule: LifecycleRule) -> dict[str, Any]:
    """The S3 form of one rule."""
    s3: dict[str, Any] = {
        "ID": f"{MANAGED_PREFIX}{rule.id}",
        "Status": "Enabled",
        "Filter": {"Prefix": rule.prefix},
    }
    if rule.expire_after_days is not None:
        s3["Expiration"] = {"Days": rule.expire_after_days}
    if rule.abort_incomplete_uploads_after_days is not None:
        s3["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": rule.abort_incomplete_uploads_after_days
        }
    if rule.transition_after_days is not None:
        s3["Transitions"] = [
            {"Days": rule.transition_after_days, "StorageClass": rule.transition_storage_class}
        ]
    if rule.noncurrent_expire_after_days is not None:
        s3["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule.noncurrent_expire_after_days}
    return s3


def is_managed(s3_rule: Mapping[str, Any]) -> bool:
    """Whether demeter-storage wrote this rule."""
    return str(s3_rule.get("ID", "")).startswith(MANAGED_PREFIX)


def from_s3_rule(s3_rule: Mapping[str, Any]) -> LifecycleRule:
    """Read back a rule demeter-storage wrote.

    Raises:
        ConfigurationError: the rule was edited into something this package cannot express.
    """
    rule_id = str(s3_rule["ID"])[len(MANAGED_PREFIX) :]
    filters = s3_rule.get("Filter") or {}
    prefix = filters.get("Prefix", s3_rule.get("Prefix", ""))
    transitions = s3_rule.get("Transitions") or []
    try:
        return LifecycleRule(
            id=rule_id,
            prefix=prefix,
            expire_after_days=(s3_rule.get("Expiration") or {}).get("Days"),
            abort_incomplete_uploads_after_days=(
                s3_rule.get("AbortIncompleteMultipartUpload") or {}
            ).get("DaysAfterInitiation"),
            transition_after_days=transitions[0].get("Days") if transitions else None,
            transition_storage_class=transitions[0].get("StorageClass") if transitions else None,
            noncurrent_expire_after_days=(s3_rule.get("NoncurrentVersionExpiration") or {}).get(
                "NoncurrentDays"
            ),
        )
    except ValidationError as exc:
        raise ConfigurationError(
            f"the bucket's lifecycle rule {s3_rule.get('ID')!r} was edited by hand ({exc}); "
            "apply the policy again to restore it"
        ) from exc


def managed_policy(s3_rules: Iterable[Mapping[str, Any]]) -> LifecyclePolicy:
    """The policy formed by the managed rules of a bucket configuration."""
    return LifecyclePolicy(
        rules=sorted((from_s3_rule(r) for r in s3_rules if is_managed(r)), key=lambda r: r.id)
    )


def merged_rules(
    existing: Iterable[Mapping[str, Any]], policy: LifecyclePolicy
) -> list[dict[str, Any]]:
    """The configuration to write: foreign rules as they are, then the policy's rules."""
    foreign = [dict(rule) for rule in existing if not is_managed(rule)]
    return foreign + [to_s3_rule(rule) for rule in sorted(policy.rules, key=lambda r: r.id)]
