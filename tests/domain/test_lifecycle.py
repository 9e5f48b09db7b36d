"""Lifecycle rules and policies: what is valid, what conflicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from demeter_storage import ObjectInfo, ValidationError
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule, is_expired


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"expire_after_days": 0}, "from 1"),
        ({"expire_after_days": -3}, "from 1"),
        ({"expire_after_days": 1.5}, "whole number"),
        ({"expire_after_days": True}, "whole number"),
        ({"abort_incomplete_uploads_after_days": 0}, "from 1"),
        ({}, "does nothing"),
        ({"transition_after_days": 30}, "together"),
        (
            {"transition_after_days": 30, "transition_storage_class": "COLD"},
            "unknown storage class",
        ),
        (
            {
                "expire_after_days": 10,
                "transition_after_days": 30,
                "transition_storage_class": "GLACIER",
            },
            "expire before they transition",
        ),
        ({"expire_after_days": 5, "prefix": "../"}, "prefix"),
        ({"expire_after_days": 5, "prefix": "/abs"}, "prefix"),
    ],
)
def test_invalid_rules_are_refused_by_name(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        LifecycleRule(id="my-rule", **fields)  # type: ignore[arg-type]
    assert "my-rule" in str(caught.value)


@pytest.mark.parametrize("rule_id", ["", "has space", "x" * 201, "-lead", "slash/no"])
def test_rule_ids_are_plain_names(rule_id: str) -> None:
    with pytest.raises(ValidationError, match="rule id"):
        LifecycleRule(id=rule_id, expire_after_days=1)


def test_overlapping_rules_with_conflicting_actions_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"'all' and 'sessions' overlap.*expire_after_days"):
        LifecyclePolicy(
            rules=[
                LifecycleRule(id="all", expire_after_days=30),
                LifecycleRule(id="sessions", prefix="s1/", expire_after_days=60),
            ]
        )
    with pytest.raises(ValidationError, match="expire before they transition"):
        LifecyclePolicy(
            rules=[
                LifecycleRule(id="expire", expire_after_days=30),
                LifecycleRule(
                    id="archive", transition_after_days=60, transition_storage_class="GLACIER_IR"
                ),
            ]
        )
    with pytest.raises(ValidationError, match="used twice"):
        LifecyclePolicy(
            rules=[
                LifecycleRule(id="a", expire_after_days=1),
                LifecycleRule(id="a", expire_after_days=1),
            ]
        )
    with pytest.raises(TypeError):
        LifecyclePolicy(rules=[{"id": "a"}])  # type: ignore[list-item]


def test_rules_that_cannot_meet_do_not_conflict() -> None:
    policy = LifecyclePolicy(
        rules=[
            LifecycleRule(id="viz", bucket="viz", expire_after_days=90),
            LifecycleRule(
                id="s1", bucket="viz", prefix="s1/", abort_incomplete_uploads_after_days=2
            ),
            LifecycleRule(id="s2", bucket="orig", prefix="s2/", expire_after_days=10),
            LifecycleRule(id="s3", bucket="orig", prefix="s3/", expire_after_days=20),
            LifecycleRule(id="same", bucket="orig", prefix="s2/x", expire_after_days=10),
            LifecycleRule(id="abort", abort_incomplete_uploads_after_days=2),
        ]
    )
    assert [r.id for r in policy.for_bucket("viz").rules] == ["viz", "s1", "abort"]
    assert all(r.bucket is None for r in policy.for_bucket("viz").rules)
    assert [r.id for r in policy.for_bucket("orig").rules] == ["s2", "s3", "same", "abort"]


def test_the_default_policy() -> None:
    policy = LifecyclePolicy.default(visualization_bucket="viz")
    by_id = {rule.id: rule for rule in policy.rules}
    assert by_id["expire-visualizations"].bucket == "viz"
    assert by_id["expire-visualizations"].expire_after_days == 90
    assert by_id["abort-incomplete-uploads"].bucket is None
    assert by_id["abort-incomplete-uploads"].abort_incomplete_uploads_after_days == 1
    assert policy.for_bucket("originals").rules == (
        LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_uploads_after_days=1),
    )
    assert (
        LifecyclePolicy.default(
            visualizations_expire_after_days=None, abort_incomplete_uploads_after_days=None
        )
        == LifecyclePolicy()
    )


def test_policies_round_trip_through_dicts() -> None:
    policy = LifecyclePolicy(
        rules=[
            LifecycleRule(id="viz", bucket="viz", prefix="s/", expire_after_days=90),
            LifecycleRule(
                id="archive",
                bucket="orig",
                transition_after_days=30,
                transition_storage_class="GLACIER_IR",
                noncurrent_expire_after_days=7,
            ),
        ]
    )
    assert LifecyclePolicy.from_dict(policy.to_dict()) == policy
    for bad in (
        [],
        {"rules": {}},
        {"rules": [1]},
        {"rules": [{"id": "x", "days": 3}]},
        {"rules": [{"expire_after_days": 3}]},
    ):
        with pytest.raises(ValidationError):
            LifecyclePolicy.from_dict(bad)  # type: ignore[arg-type]


def test_expiry_is_judged_by_age_and_prefix() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    rules = [LifecycleRule(id="r", prefix="s1/", expire_after_days=10)]

    def info(key: str, age_days: float | None) -> ObjectInfo:
        written = None if age_days is None else now - timedelta(days=age_days)
        return ObjectInfo(key=key, size=1, content_type=None, last_modified=written)

    assert is_expired(info("s1/a", 10), rules, now)
    assert not is_expired(info("s1/a", 9.9), rules, now)
    assert not is_expired(info("s2/a", 30), rules, now)
    assert not is_expired(info("s1/a", None), rules, now)
