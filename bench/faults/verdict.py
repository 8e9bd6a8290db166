"""The checks every experiment ends with, made from outside the control plane: each site's repository
read with plain `git log`, each site's cluster read with the official kubernetes client; then compared
with what the rollout reports. And the figures the reliability table records.
"""

import datetime as dt
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRAILER = "Edgefleet-Rollout"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Outcome:
    """One experiment's result: its checks, and the figures for docs/RELIABILITY.md."""

    scenario: str
    injected: str
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # per site: state, skip reason, commits, error

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def table(self) -> str:
        width = max([len(c.name) for c in self.checks] + [10])
        lines = [f"experiment {self.scenario}: {self.injected}", f"{'check':{width}}  verdict  detail"]
        for c in self.checks:
            lines.append(f"{c.name:{width}}  {'PASS' if c.ok else 'FAIL':7}  {c.detail}")
        lines.append("figures: " + ", ".join(f"{k} {v}" for k, v in self.figures.items()))
        lines.append(f"VERDICT {self.scenario}: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


def rollout_commits(repo: Path, rollout_id: int, branch: str = "main") -> list[tuple[str, dt.datetime]]:
    """(sha, committer time) of every commit on the branch carrying the rollout's trailer, by plain git."""
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "log", branch, "--format=%H %ct", f"--grep=^{TRAILER}: {rollout_id}$"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in out.splitlines():
        sha, seconds = line.split()
        found.append((sha, dt.datetime.fromtimestamp(int(seconds), tz=dt.UTC)))
    return found


def paths_at_head(repo: Path, branch: str = "main") -> set[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", branch],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.splitlines())


def runs_release(kubeconfig: Path, namespace: str, deployment: str, version: str) -> tuple[bool, str]:
    """Whether the site's cluster runs `version` of the Deployment, available; and what it runs instead."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        found = client.AppsV1Api(api_client).read_namespaced_deployment(deployment, namespace, _request_timeout=20)
    except ApiException as exc:
        return False, f"no Deployment {namespace}/{deployment} ({exc.status})"
    finally:
        api_client.close()
    image = str(found.spec.template.spec.containers[0].image)  # type: ignore[union-attr]
    status = found.status
    conditions = (status.conditions if status is not None else None) or []
    available = any(c.type == "Available" and c.status == "True" for c in conditions)
    ok = image.endswith(f":{version}") and available and (status.available_replicas or 0) >= 1  # type: ignore[union-attr]
    return ok, f"{image}, available={available}"


def check_rollout(
    outcome: Outcome,
    *,
    rollout: Any,
    repo_path: Any,
    kubeconfig_path: Any,
    deployment: tuple[str, str],
    halted_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The four promises, checked site by site from outside; returns per-site facts for scenario checks."""
    from rollouts.choices import SiteRolloutState, SkipReason
    from rollouts.models import SiteRollout

    rollout.refresh_from_db()
    rows = list(SiteRollout.objects.filter(rollout=rollout).select_related("site").order_by("position"))
    version = rollout.release.version
    namespace, name = deployment
    facts: dict[str, Any] = {}
    doubles: list[str] = []
    unexplained: list[str] = []
    false_success: list[str] = []
    late: list[str] = []
    open_sites: list[str] = []
    commits_total = 0
    for row in rows:
        code = row.site.code
        commits = rollout_commits(repo_path(code), rollout.pk)
        commits_total += len(commits)
        facts[code] = {
            "state": row.state,
            "skip_reason": row.skip_reason,
            "commits": len(commits),
            "error": row.error,
            "started_at": row.started_at,
        }
        if len(commits) > 1:
            doubles.append(code)
        if row.state == SiteRolloutState.SUCCEEDED:
            ok, seen = runs_release(kubeconfig_path(code), namespace, name, version)
            if not ok or len(commits) != 1:
                false_success.append(f"{code} ({len(commits)} commits, runs {seen})")
        elif row.state == SiteRolloutState.SKIPPED and row.skip_reason == SkipReason.NOT_STARTED and commits:
            unexplained.append(f"{code} skipped as not started but has {len(commits)} commit(s)")
        elif row.state not in (SiteRolloutState.FAILED, SiteRolloutState.SKIPPED):
            open_sites.append(f"{code} {row.state}")
        if halted_at is not None:
            late.extend(f"{code} {sha[:10]} at {when:%H:%M:%S}" for sha, when in commits if when > halted_at)
    counts = {state: sum(1 for row in rows if row.state == state) for state in SiteRolloutState.values}
    reported = {state: n for state, n in rollout.counts.items() if n}
    actual = {state: n for state, n in counts.items() if n}
    outcome.check("rollout finished", rollout.state in ("succeeded", "halted"), f"state {rollout.state}")
    outcome.check("every site ended", not open_sites, ", ".join(open_sites[:5]) or f"{len(rows)} sites")
    outcome.check("counters match the sites", reported == actual, f"reported {reported}, rows {actual}")
    outcome.check("at most one commit per site", not doubles, ", ".join(doubles[:5]) or f"{commits_total} commits")
    outcome.check(
        "succeeded => the cluster runs it",
        not false_success,
        "; ".join(false_success[:3]) or f"{counts['succeeded']} sites checked with the kubernetes client",
    )
    outcome.check("no commit where none was made", not unexplained, "; ".join(unexplained[:3]))
    if halted_at is not None:
        outcome.check("no commit after the halt", not late, "; ".join(late[:3]))
    outcome.figures.update(
        sites=len(rows),
        commits=commits_total,
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        skipped=counts["skipped"],
    )
    return facts


def retries_of(rollout: Any) -> dict[str, Any]:
    """Retried and timed-out step attempts of the rollout's site runs, and the most attempts at one step."""
    from django.db.models import Count, Max, Sum

    from fleet.workflows.models import StepRun
    from rollouts.models import SiteRollout

    ids = [str(pk) for pk in SiteRollout.objects.filter(rollout=rollout).values_list("pk", flat=True)]
    steps = StepRun.objects.filter(run__kind="rollout.site", run__subject_id__in=ids)
    by_state = dict(steps.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    return {
        "retries": by_state.get("retrying", 0) + by_state.get("timed_out", 0),
        "max_attempt": steps.aggregate(m=Max("attempt"))["m"] or 0,
        "polls": steps.filter(state="waiting").aggregate(n=Sum("polls"))["n"] or 0,
    }
