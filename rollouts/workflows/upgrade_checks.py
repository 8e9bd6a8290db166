"""How a site run judges a K3s upgrade (a release of the platform's `k3s` application): from the cluster,
not the repository. The commit writes the system-upgrade-controller Plans; the edge applying them only
starts the upgrade. The site has converged when:

- every node reports the release's version (`status.nodeInfo.kubeletVersion`), is Ready and schedulable
  (uncordoned); and
- every Deployment that was Available before the commit (`before`, read just ahead of it) is Available
  again.

Then the site's recorded K3s version (`Cluster.k3s_version`, what sites.k3s_versions reports) is the new one.

A Plan whose Job failed (Complete False, JobFailed) fails the site with the controller's message, which
names the Job, the node and the reason; that node stays cordoned on its old version (nothing reverts a
K3s upgrade: docs/OPERATIONS.md). While it waits the message says how many nodes are done, which ones are
being upgraded, and which disruption budgets hold a drain (a drain waits; it is never forced).
"""

from dataclasses import dataclass
from typing import Any

from rollouts.models import SiteRollout
from rollouts.workflows import converge
from sites.cluster_versions import available_deployments, blocking_budgets, node_versions, upgrade_plans
from sites.k3s_versions import upgrade_problem
from sites.probing import cluster_record_version


@dataclass(frozen=True)
class UpgradeVerdict:
    state: str  # "healthy", "failed" or "wait"
    message: str

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    @property
    def failed(self) -> bool:
        return self.state == "failed"


def before(row: SiteRollout, version: str) -> tuple[dict[str, Any], str]:
    """Read the site before its upgrade: what its API runs (refused if `version` would skip a minor
    version or go back) and which Deployments are Available. Returns (the run's `upgrade` record, why
    the upgrade must not be made here, "" when it may)."""
    cluster = converge.cluster_of(row)
    current = cluster.version()
    problem = upgrade_problem(current, version)
    if problem:
        return {}, f"the K3s upgrade to {version} is refused at {row.site.code}: {problem}"
    record = {
        "version": version,
        "from_version": current,
        "available_before": [list(key) for key in available_deployments(cluster)],
    }
    return record, ""


def judge(row: SiteRollout, ctx: dict[str, Any]) -> UpgradeVerdict:
    upgrade = ctx["upgrade"]
    target = str(upgrade["version"])
    code = row.site.code
    cluster = converge.cluster_of(row)
    plans = upgrade_plans(cluster)
    converge.answered(ctx)
    for plan in plans:
        if plan.complete is False and plan.reason == "JobFailed":
            return UpgradeVerdict(
                "failed",
                f"the K3s upgrade to {target} failed at {code}: {plan.message} (plan {plan.name}); the node is "
                "left cordoned on its old version for a person (docs/OPERATIONS.md)",
            )
    nodes = node_versions(cluster)
    done = [n for n in nodes if n.kubelet_version == target]
    cordoned = sorted(n.name for n in nodes if n.unschedulable)
    not_ready = sorted(n.name for n in nodes if n.ready is not True)
    if len(done) < len(nodes) or cordoned or not_ready:
        parts = [f"upgrading K3s to {target}: {len(done)}/{len(nodes)} nodes done"]
        applying = [f"{name} ({plan.name})" for plan in plans for name in plan.applying]
        if applying:
            parts.append("applying on " + ", ".join(applying))
        if cordoned:
            parts.append("cordoned: " + ", ".join(cordoned))
            budgets = blocking_budgets(cluster)
            if budgets:
                parts.append("a drain waits for the disruption budget(s) " + ", ".join(budgets))
        if not_ready:
            parts.append("not Ready: " + ", ".join(not_ready))
        return UpgradeVerdict("wait", "; ".join(parts))
    wanted = [(str(ns), str(name)) for ns, name in upgrade.get("available_before") or []]
    available = set(available_deployments(cluster))
    missing = [f"{ns}/{name}" for ns, name in wanted if (ns, name) not in available]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return UpgradeVerdict(
            "wait", f"all {len(nodes)} nodes on {target}; waiting for workloads available before to be again: {shown}"
        )
    cluster_record_version(site_id=row.site_id, k3s_version=target)  # the fleet's versions are current at once
    return UpgradeVerdict(
        "healthy",
        f"all {len(nodes)} nodes on {target}, Ready and schedulable; {len(wanted)} workloads available again",
    )
