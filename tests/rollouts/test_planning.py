"""Wave planning: determinism, spread across regions and time zones, canaries, cumulative marks."""

from collections import Counter
from dataclasses import dataclass

import pytest

from fleet.errors import Invalid
from rollouts.planning import check_threshold, check_waves, plan_waves, spread_order, threshold_exceeded


@dataclass(frozen=True)
class S:
    code: str
    region: str = "us-south"
    timezone: str = "America/Chicago"


def fleet(n: int) -> list[S]:
    """n sites over 4 regions x 2 time zones, unevenly."""
    regions = ["us-south", "us-south", "us-south", "us-west", "us-east", "eu-west"]
    zones = {"us-south": ["America/Chicago", "America/Denver"], "us-west": ["America/Los_Angeles"]}
    sites = []
    for i in range(n):
        region = regions[i % len(regions)]
        tz = zones.get(region, ["UTC"])[i % len(zones.get(region, ["UTC"]))]
        sites.append(S(f"TX-{i:04d}", region, tz))
    return sites


def codes(waves: list) -> list[list[str]]:
    return [list(w.sites) for w in waves]


def test_same_plan_and_fleet_give_the_same_waves_whatever_the_input_order() -> None:
    sites = fleet(200)
    spec = [{"sites": ["TX-0007"]}, {"percent": 10}, {"count": 50}, {"percent": 100}]

    first = plan_waves(waves=spec, sites=sites, seed="plan:1")
    again = plan_waves(waves=spec, sites=list(reversed(sites)), seed="plan:1")
    other = plan_waves(waves=spec, sites=sites, seed="plan:2")

    assert codes(first) == codes(again)
    assert codes(first) != codes(other)


def test_cumulative_percent_and_count_with_canaries_first() -> None:
    waves = plan_waves(
        waves=[{"name": "canary", "sites": ["TX-0007", "TX-0003"]}, {"percent": 10}, {"count": 50}, {"percent": 100}],
        sites=fleet(200),
        seed="s",
    )

    assert [w.name for w in waves] == ["canary", "wave 1", "wave 2", "wave 3"]
    assert [w.size for w in waves] == [2, 18, 30, 150]  # reaches 2, 20 (10%), 50, 200
    assert list(waves[0].sites) == ["TX-0007", "TX-0003"]
    every = [c for w in waves for c in w.sites]
    assert len(every) == len(set(every)) == 200


def test_percent_rounds_up_and_every_wave_gets_a_site() -> None:
    waves = plan_waves(waves=[{"percent": 1}, {"percent": 2}, {"percent": 100}], sites=fleet(30), seed="s")
    assert [w.size for w in waves] == [1, 1, 28]  # ceil(0.3)=1; ceil(0.6)=1 already reached -> at least one


def test_small_targets_drop_empty_waves_and_the_last_takes_the_rest() -> None:
    waves = plan_waves(
        waves=[{"count": 1}, {"percent": 50}, {"percent": 75}, {"percent": 100}], sites=fleet(2), seed="s"
    )
    assert [w.size for w in waves] == [1, 1]
    assert [w.plan_index for w in waves] == [0, 1]
    assert [w.index for w in waves] == [0, 1]

    short = plan_waves(waves=[{"count": 3}], sites=fleet(10), seed="s")
    assert [w.size for w in short] == [10]


def test_canaries_outside_the_target_are_left_out() -> None:
    waves = plan_waves(waves=[{"sites": ["XX-9999", "TX-0001"]}, {"percent": 100}], sites=fleet(5), seed="s")
    assert list(waves[0].sites) == ["TX-0001"]
    assert waves[1].size == 4


def test_waves_are_spread_over_regions_and_time_zones() -> None:
    sites = fleet(600)
    buckets = Counter((s.region, s.timezone) for s in sites)
    bucket_of = {s.code: (s.region, s.timezone) for s in sites}

    waves = plan_waves(waves=[{"count": len(buckets)}, {"percent": 10}, {"percent": 100}], sites=sites, seed="s")

    # The first wave, as large as the number of buckets, has one site from each.
    assert {bucket_of[c] for c in waves[0].sites} == set(buckets)
    # The 10% wave is a proportional slice of every bucket (within one site).
    second = Counter(bucket_of[c] for c in waves[1].sites)
    for bucket, size in buckets.items():
        share = size * waves[1].size / len(sites)
        assert abs(second[bucket] - share) <= 1.5, (bucket, second[bucket], share)


def test_spread_order_is_a_permutation() -> None:
    sites = fleet(50)
    assert sorted(spread_order(sites, "x")) == sorted(s.code for s in sites)


def test_duplicate_sites_in_the_target_are_a_bug() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan_waves(waves=[{"percent": 100}], sites=[S("TX-0001"), S("TX-0001")], seed="s")


@pytest.mark.parametrize(
    ("waves", "target", "message"),
    [
        ([], {"all": True}, "non-empty list"),
        ([{"percent": 10}], {"all": True}, "the waves do not cover the target"),
        ([{"percent": 10}, {"count": 500}], {"all": True}, "the waves do not cover the target"),
        ([{"percent": 0}, {"percent": 100}], {"all": True}, "percent must be between 1 and 100"),
        ([{"percent": 101}], {"all": True}, "percent must be between 1 and 100"),
        ([{"count": 0}, {"percent": 100}], {"all": True}, "count must be at least 1"),
        ([{"percent": 50}, {"percent": 20}, {"percent": 100}], {"all": True}, "cumulative"),
        ([{"percent": 10, "count": 3}, {"percent": 100}], {"all": True}, "exactly one of sites, percent or count"),
        ([{"size": 3}, {"percent": 100}], {"all": True}, "unknown keys size"),
        ([{"percent": "10"}, {"percent": 100}], {"all": True}, "whole number"),
        ([{"sites": []}, {"percent": 100}], {"all": True}, "non-empty list of site codes"),
        ([{"sites": ["A-001"]}, {"sites": ["A-001"]}, {"percent": 100}], {"all": True}, "lists a site twice"),
        ([{"sites": ["A-003"]}, {"percent": 100}], {"sites": ["A-001"]}, "canary sites not in the target: A-003"),
        ([{"count": 1}], {"sites": ["A-001", "A-002"]}, "reach every listed site"),
    ],
)
def test_bad_waves_are_refused(waves: list, target: dict, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_waves(waves, target)
    assert message in caught.value.message
    assert "waves" in caught.value.errors


def test_explicit_targets_may_end_with_a_count_or_a_site_list() -> None:
    check_waves([{"count": 2}], {"sites": ["A-001", "A-002"]})
    check_waves([{"sites": ["A-001"]}, {"sites": ["A-002"]}], {"sites": ["A-001", "A-002"]})


@pytest.mark.parametrize(
    "threshold", [{}, {"percent": -1}, {"percent": 101}, {"count": -1}, {"count": 1.5}, {"ratio": 1}, []]
)
def test_bad_thresholds_are_refused(threshold: object) -> None:
    with pytest.raises(Invalid) as caught:
        check_threshold(threshold)
    assert "failure_threshold" in caught.value.errors


def test_threshold_is_the_most_failures_tolerated() -> None:
    assert not threshold_exceeded({"count": 0}, failed=0, size=10)
    assert threshold_exceeded({"count": 0}, failed=1, size=10)
    assert not threshold_exceeded({"percent": 10}, failed=2, size=20)
    assert threshold_exceeded({"percent": 10}, failed=3, size=20)
    assert not threshold_exceeded({"percent": 100}, failed=20, size=20)
