"""The benchmarks' verdicts on the targets, from synthetic figures (no server, no timing).

A page whose target table says "yes" for a missed target (or the reverse) would
mislead more than no page; these hold the judging code to the rule the page
states: each round's figure over its baseline's from the same round, the
median of those ratios against the goal, every judged contender at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import common  # noqa: PLC0415 - the benchmarks' own modules, from their directory
        import s3_throughput  # noqa: PLC0415
        import service_overhead  # noqa: PLC0415

        yield {"common": common, "small": s3_throughput, "service": service_overhead}
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_paired_ratios_judge_each_round_against_its_own_baseline(
    bench: dict[str, ModuleType],
) -> None:
    paired = bench["common"].paired_ratios([90.0, 200.0, 95.0], [100.0, 100.0, 190.0])
    assert (paired.median, paired.low, paired.high) == (0.9, 0.5, 2.0)
    with pytest.raises(ValueError, match="cannot pair"):
        bench["common"].paired_ratios([1.0], [1.0, 2.0])


def _small_rates(bench: dict[str, ModuleType], wrapped_obstore_up: float) -> dict:
    common = bench["common"]
    rates = {}
    for direction in ("up", "down"):
        for concurrency in (1, 16):
            case = (direction, concurrency)
            rates[(case, common.BASELINE)] = [100.0, 110.0, 90.0]
            rates[(case, common.S3_STORE)] = [99.0, 108.0, 89.0]
            rates[(case, common.RESILIENT)] = [97.0, 106.0, 88.0]
            rates[(case, common.RAW_OBSTORE)] = [200.0, 220.0, 180.0]
            rates[(case, common.OBSTORE_ADAPTER)] = [196.0, 214.0, 175.0]
            wrapped = wrapped_obstore_up if direction == "up" else 0.97
            rates[(case, common.RESILIENT_OBSTORE)] = [200.0 * wrapped, 220.0 * wrapped, 180.0]
    return rates


def _verdicts(targets: list) -> dict[str, bool | None]:
    return {target.name: target.met for target in targets}


def test_the_obstore_target_judges_the_store_as_deployed_too(
    bench: dict[str, ModuleType],
) -> None:
    small = bench["small"]
    met = _verdicts(small.targets(_small_rates(bench, wrapped_obstore_up=0.95)))
    assert met == {small.RESILIENT_TARGET_NAME: True, small.OBSTORE_TARGET_NAME: True}
    # The bare adapter alone still meets it; the wrapped one, 0.85x on two of three rounds, not.
    missed = _verdicts(small.targets(_small_rates(bench, wrapped_obstore_up=0.85)))
    assert missed[small.OBSTORE_TARGET_NAME] is False
    assert missed[small.RESILIENT_TARGET_NAME] is True


def test_a_target_without_its_contenders_is_not_measured(bench: dict[str, ModuleType]) -> None:
    small, common = bench["small"], bench["common"]
    rates = {
        key: value
        for key, value in _small_rates(bench, 0.95).items()
        if key[1] != common.RESILIENT_OBSTORE
    }
    assert _verdicts(small.targets(rates))[small.OBSTORE_TARGET_NAME] is None


def test_the_resilient_target_fails_on_its_worst_case(bench: dict[str, ModuleType]) -> None:
    small, common = bench["small"], bench["common"]
    rates = _small_rates(bench, 0.95)
    rates[(("down", 1), common.RESILIENT)] = [94.0, 104.0, 85.0]  # 0.94x in every round
    (resilient,) = [t for t in small.targets(rates) if t.name == small.RESILIENT_TARGET_NAME]
    assert resilient.met is False
    assert resilient.measured.startswith("worst 0.94x (down x1); 3 of 4 cases met")
    assert resilient.limit


def test_the_service_target_is_the_median_of_per_round_ratios(
    bench: dict[str, ModuleType],
) -> None:
    service = bench["service"]
    concurrency = service.TARGET_CONCURRENCY
    cpu = {(concurrency, service.BARE): [1.0] * 3, (concurrency, service.POSTGRES): [1.3] * 3}

    def verdict(postgres: list[float]) -> bool | None:
        rates = {(concurrency, service.BARE): [100.0, 200.0, 100.0]}
        rates[(concurrency, service.POSTGRES)] = postgres
        (target,) = service.targets(rates, cpu)
        return target.met

    # Rounds at 0.85x, 0.79x and 0.81x: their median, 0.81x, meets 0.80x.
    assert verdict([85.0, 158.0, 81.0]) is True
    assert verdict([79.0, 170.0, 75.0]) is False
    assert service.targets({}, {})[0].met is None


def test_the_service_limit_never_credits_its_own_steps_with_negative_time(
    bench: dict[str, ModuleType],
) -> None:
    service = bench["service"]
    concurrency = service.TARGET_CONCURRENCY
    rates = {
        (concurrency, service.BARE): [100.0, 100.0, 100.0],
        (concurrency, service.POSTGRES): [66.0, 66.0, 66.0],
        (concurrency, service.IN_MEMORY): [97.0, 97.0, 97.0],
    }

    def limit(in_memory_cpu: float) -> str:
        cpu = {
            (concurrency, service.BARE): [1.20] * 3,
            (concurrency, service.POSTGRES): [1.63] * 3,
            (concurrency, service.IN_MEMORY): [in_memory_cpu] * 3,
        }
        (target,) = service.targets(rates, cpu)
        assert target.met is False
        return target.limit

    assert "own steps (checks, URL, records in memory) took 0.05 ms" in limit(1.25)
    below = limit(1.08)
    assert "-0." not in below
    assert "the 0.43 ms more than the bare put are PostgreSQL's two writes" in below
