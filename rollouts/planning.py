"""Wave planning: a pure function from a plan's waves and its target sites to waves of site codes.

Wave semantics (what a plan's `waves` mean):

- `{"sites": ["TX-0412", ...]}` is an explicit wave (a canary): exactly those sites, in that order,
  when they are in the target and not already in an earlier wave.
- `{"percent": p}` and `{"count": n}` are **cumulative**, like Argo Rollouts' and Flagger's steps: the
  wave brings the number of sites reached so far (earlier waves, canaries included) up to
  `ceil(p% of the target)` or `min(n, target size)`. `[{"percent": 10}, {"percent": 50}, {"percent": 100}]`
  on 200 sites gives waves of 20, 80 and 100 sites.
- Every wave that has sites left to take takes at least one, even if its mark was already reached
  (so `{"sites": [5 codes]}` then `{"percent": 1}` on 200 sites still gives a second wave of one site).
- The last wave takes every site not yet reached, whatever it says (validation insists that it says
  `{"percent": 100}`, or covers an explicit target, so this only matters if the fleet grew).
- A wave left with no site (a small target) is dropped: the rollout has fewer waves than the plan.
- An optional `"name"`; the default is `canary` for an explicit wave and `wave <n>` otherwise.

Order within the target (deterministic: the same plan and the same fleet give the same waves): sites
are grouped in (region, time zone) buckets; within a bucket they are ordered by a stable hash of
(plan seed, site code); then all sites are sorted by their fractional rank in their bucket (rank / bucket
size), ties broken by a hash of the bucket. So the first sites taken are one per bucket (round robin),
and every later wave is a proportional slice of every bucket: no wave is all one region or time zone.
"""

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fleet.errors import Invalid

TARGET_KINDS = ("all", "labels", "sites")
# The most site codes a plan may list (target or canaries): a fleet's worth, and far below the number of
# parameters one PostgreSQL query takes when they are looked up.
MAX_LISTED_SITES = 20_000
DAY = 86_400
# The range of each of a plan's numbers, checked on every write (API, admin, services) and applied again
# when a rollout reads its snapshot, so a value stored some other way cannot overflow a timedelta in the
# driver: a plan says "bake for 10**18 seconds" nowhere.
PLAN_NUMBER_RANGES: dict[str, tuple[int, int]] = {
    "max_parallel": (1, 100_000),
    "bake_seconds": (0, 30 * DAY),
    "site_deadline_seconds": (1, 30 * DAY),
    "progress_deadline_seconds": (1, 30 * DAY),
    "min_success_seconds": (0, 30 * DAY),
}
# Numbers a plan may leave empty (None: progress_deadline_seconds then means each Deployment's own).
NULLABLE_PLAN_NUMBERS = frozenset({"progress_deadline_seconds"})


class PlannableSite(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def timezone(self) -> str: ...


@dataclass(frozen=True)
class PlannedWave:
    """A wave as planned: its position in the rollout, its name, the plan wave it came from, its sites."""

    index: int
    name: str
    plan_index: int
    sites: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.sites)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def spread_order(sites: Sequence[PlannableSite], seed: str) -> list[str]:
    """Site codes in rollout order: stable per seed, interleaved across (region, time zone) buckets."""
    buckets: dict[tuple[str, str], list[str]] = defaultdict(list)
    for site in sites:
        buckets[(site.region, site.timezone)].append(site.code)
    keyed: list[tuple[float, str, str]] = []
    for (region, tz), codes in buckets.items():
        bucket_hash = _hash(seed, "bucket", region, tz)
        ordered = sorted(codes, key=lambda code: (_hash(seed, code), code))
        keyed.extend((rank / len(ordered), bucket_hash, code) for rank, code in enumerate(ordered))
    keyed.sort()
    return [code for _, _, code in keyed]


def plan_waves(*, waves: Sequence[dict[str, Any]], sites: Sequence[PlannableSite], seed: str) -> list[PlannedWave]:
    """Split the target `sites` into waves per the plan's `waves` (see the module docstring)."""
    in_target = {site.code for site in sites}
    if len(in_target) != len(sites):
        raise ValueError("a site appears twice in the target")
    total = len(sites)
    order = spread_order(sites, seed)
    used: set[str] = set()
    cursor = 0
    planned: list[PlannedWave] = []
    for plan_index, spec in enumerate(waves):
        last = plan_index == len(waves) - 1
        members: list[str] = []
        if "sites" in spec:
            members = [code for code in dict.fromkeys(spec["sites"]) if code in in_target and code not in used]
            name = spec.get("name") or "canary"
        else:
            name = spec.get("name") or f"wave {plan_index}"
            if "percent" in spec:
                mark = math.ceil(total * spec["percent"] / 100)
            else:
                mark = min(int(spec["count"]), total)
            want = max(mark - len(used), 1)
            while len(members) < want and cursor < len(order):
                code = order[cursor]
                cursor += 1
                if code not in used:
                    members.append(code)
        used.update(members)
        if last:
            rest = [code for code in order[cursor:] if code not in used]
            members.extend(rest)
            used.update(rest)
        if members:
            planned.append(PlannedWave(index=len(planned), name=str(name), plan_index=plan_index, sites=tuple(members)))
    return planned


# --- checks of a plan's shape (no database) --------------------------------------------------------


def check_target(target: Any) -> dict[str, Any]:
    """`{"all": true}` | `{"labels": "<selector>"}` | `{"sites": [codes]}`; raises Invalid otherwise."""
    if not isinstance(target, dict) or len(target) != 1 or next(iter(target)) not in TARGET_KINDS:
        raise Invalid(
            'target must be one of {"all": true}, {"labels": "<selector>"}, {"sites": ["<code>", ...]}', field="target"
        )
    kind, value = next(iter(target.items()))
    if kind == "all" and value is not True:
        raise Invalid('target {"all": ...} must be true', field="target")
    if kind == "labels" and (not isinstance(value, str) or not value.strip()):
        raise Invalid("target labels must be a label selector string, e.g. tier=pilot", field="target")
    if kind == "sites":
        if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
            raise Invalid("target sites must be a non-empty list of site codes", field="target")
        if len(value) > MAX_LISTED_SITES:
            raise Invalid(f"target sites lists more than {MAX_LISTED_SITES} sites", field="target")
        if len(set(value)) != len(value):
            raise Invalid("target sites lists a site twice", field="target")
    return target


def check_waves(waves: Any, target: dict[str, Any]) -> list[dict[str, Any]]:
    """Shape of each wave, increasing marks, and a last wave that reaches the whole target."""
    if not isinstance(waves, list) or not waves:
        raise Invalid('waves must be a non-empty list, e.g. [{"percent": 10}, {"percent": 100}]', field="waves")
    if len(waves) > 50:
        raise Invalid("a plan has at most 50 waves", field="waves")
    seen_sites: set[str] = set()
    last_mark: dict[str, int] = {}
    for i, wave in enumerate(waves):
        where = f"wave {i}"
        if not isinstance(wave, dict):
            raise Invalid(f"{where} must be an object", field="waves")
        unknown = set(wave) - {"name", "sites", "percent", "count"}
        if unknown:
            raise Invalid(f"{where}: unknown keys {', '.join(sorted(unknown))}", field="waves")
        sizes = [k for k in ("sites", "percent", "count") if k in wave]
        if len(sizes) != 1:
            raise Invalid(f"{where} needs exactly one of sites, percent or count", field="waves")
        if "name" in wave and (not isinstance(wave["name"], str) or not 0 < len(wave["name"]) <= 100):
            raise Invalid(f"{where}: name must be a string of 1 to 100 characters", field="waves")
        kind = sizes[0]
        value = wave[kind]
        if kind == "sites":
            if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
                raise Invalid(f"{where}: sites must be a non-empty list of site codes", field="waves")
            twice = seen_sites & set(value)
            if twice or len(set(value)) != len(value):
                raise Invalid(f"{where} lists a site twice: {', '.join(sorted(twice) or value)}", field="waves")
            seen_sites.update(value)
            if len(seen_sites) > MAX_LISTED_SITES:
                raise Invalid(f"the waves list more than {MAX_LISTED_SITES} sites", field="waves")
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{where}: {kind} must be a whole number", field="waves")
        if kind == "percent" and not 1 <= value <= 100:
            raise Invalid(f"{where}: percent must be between 1 and 100, not {value}", field="waves")
        if kind == "count" and value < 1:
            raise Invalid(f"{where}: count must be at least 1, not {value}", field="waves")
        if kind in last_mark and value <= last_mark[kind]:
            raise Invalid(
                f"{where}: {kind} {value} does not grow past the previous {kind} wave ({last_mark[kind]}); "
                "percent and count are cumulative",
                field="waves",
            )
        last_mark[kind] = value
    explicit = target.get("sites")
    if explicit is not None:
        outside = sorted(seen_sites - set(explicit))
        if outside:
            raise Invalid(f"canary sites not in the target: {', '.join(outside)}", field="waves")
    final = waves[-1]
    covers = final.get("percent") == 100
    if explicit is not None:
        covers = covers or final.get("count", 0) >= len(explicit) or ("sites" in final and seen_sites >= set(explicit))
    if not covers:
        raise Invalid(
            'the waves do not cover the target: the last wave must be {"percent": 100}'
            + (" or reach every listed site" if explicit is not None else ""),
            field="waves",
        )
    return waves


def check_threshold(threshold: Any) -> dict[str, int]:
    """`{"percent": 0-100}` or `{"count": n >= 0}`: the most failed sites one wave tolerates."""
    if not isinstance(threshold, dict) or len(threshold) != 1 or next(iter(threshold)) not in ("percent", "count"):
        raise Invalid('failure_threshold must be {"percent": 0-100} or {"count": n}', field="failure_threshold")
    kind, value = next(iter(threshold.items()))
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"failure_threshold {kind} must be a whole number", field="failure_threshold")
    if kind == "percent" and not 0 <= value <= 100:
        raise Invalid(f"failure_threshold percent must be between 0 and 100, not {value}", field="failure_threshold")
    if kind == "count" and value < 0:
        raise Invalid(f"failure_threshold count must be 0 or more, not {value}", field="failure_threshold")
    return threshold


def snapshot_threshold(snapshot: dict[str, Any]) -> dict[str, int]:
    """The failure threshold a rollout's plan snapshot holds (none given: no failure tolerated)."""
    return dict(snapshot.get("failure_threshold") or {"count": 0})


def snapshot_site_deadline(snapshot: dict[str, Any]) -> int:
    """Seconds a started site may take, from a rollout's plan snapshot (RolloutPlan's default if absent)."""
    return snapshot_number(snapshot, "site_deadline_seconds", 6 * 3600)


def check_plan_numbers(values: dict[str, Any]) -> None:
    """Each of PLAN_NUMBER_RANGES' numbers present in `values` is a whole number in its range; Invalid naming
    the field otherwise."""
    for name, (low, high) in PLAN_NUMBER_RANGES.items():
        if name not in values:
            continue
        value = values[name]
        if value is None and name in NULLABLE_PLAN_NUMBERS:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{name} must be a whole number", field=name)
        if value < low:
            raise Invalid(f"{name} must be at least {low}, not {value}", field=name)
        if value > high:
            raise Invalid(f"{name} must be at most {high}, not {value}", field=name)


def snapshot_number(snapshot: dict[str, Any], name: str, default: int) -> int:
    """One of a plan snapshot's numbers, brought into its range (a stored value was checked when the plan
    was written; this keeps a driver pass safe from one that was not)."""
    low, high = PLAN_NUMBER_RANGES[name]
    value = snapshot.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        value = default
    return int(min(max(value, low), high))


def threshold_exceeded(threshold: dict[str, int], *, failed: int, size: int) -> bool:
    """Whether `failed` sites of a wave of `size` are more than the threshold tolerates."""
    if "count" in threshold:
        return failed > threshold["count"]
    return failed * 100 > threshold.get("percent", 0) * size


def describe_threshold(threshold: dict[str, int]) -> str:
    return f"{threshold['count']} site(s)" if "count" in threshold else f"{threshold.get('percent', 0)}%"


def snapshot_progress_deadline(snapshot: dict[str, Any]) -> int | None:
    """The plan's progress deadline in seconds (None: each Deployment's own progressDeadlineSeconds)."""
    if not snapshot.get("progress_deadline_seconds"):
        return None
    return snapshot_number(snapshot, "progress_deadline_seconds", 600)


def snapshot_min_success(snapshot: dict[str, Any]) -> int:
    """How long a site must stay healthy before it counts as succeeded (0: at once)."""
    return snapshot_number(snapshot, "min_success_seconds", 0)


def describe_gates(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What judges each site and each wave, for the dry run and the admin: when a site fails, when it is
    skipped, what halts a wave."""
    deadline = snapshot_progress_deadline(snapshot)
    return {
        "failure_threshold": snapshot_threshold(snapshot),
        "failure_threshold_text": f"a wave halts when more than {describe_threshold(snapshot_threshold(snapshot))} "
        "of its sites failed",
        "progress_deadline_seconds": deadline,
        "progress_deadline_text": (
            f"a site fails when a Deployment of the release makes no progress for {deadline} s"
            if deadline
            else "a site fails when a Deployment of the release exceeds its own progressDeadlineSeconds "
            "(Kubernetes' default 600 s)"
        ),
        "min_success_seconds": snapshot_min_success(snapshot),
        "site_deadline_seconds": snapshot_site_deadline(snapshot),
        "allow_unreachable_waves": bool(snapshot.get("allow_unreachable_waves")),
    }
