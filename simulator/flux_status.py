"""The status Flux's controllers report, as the simulated GitOps agent writes it: the Kustomization's
applied and attempted revisions, inventory and Ready condition, and the GitRepository's artifact (or
its `GitOperationFailed` condition when the source cannot be read)."""

from typing import Any

from simulator.resources import BY_PLURAL
from simulator.store import now_iso


def revision(sha: str) -> str:
    return f"main@sha1:{sha}"


def report_kustomization(
    ks: dict[str, Any],
    sha: str | None,
    ready: bool,
    reason: str,
    message: str,
    inventory: set[tuple[str, str, str]],
) -> None:
    """Set the Kustomization's status after an attempt at `sha` (None: no artifact to attempt)."""
    status = ks.setdefault("status", {})
    generation = ks["metadata"].get("generation", 1)
    status["observedGeneration"] = generation
    if sha is not None:
        status["lastAttemptedRevision"] = revision(sha)
        if ready:
            status["lastAppliedRevision"] = revision(sha)
            status["inventory"] = {
                "entries": [
                    {
                        "id": f"{ns}_{name}_{BY_PLURAL[plural].group}_{BY_PLURAL[plural].kind}",
                        "v": BY_PLURAL[plural].version,
                    }
                    for plural, ns, name in sorted(inventory)
                ]
            }
    previous = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    value = "True" if ready else "False"
    changed = previous is None or previous.get("status") != value
    status["conditions"] = [
        {
            "type": "Ready",
            "status": value,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": now_iso() if changed or previous is None else previous["lastTransitionTime"],
        }
    ]
    status["lastHandledReconcileAt"] = now_iso()


def source_artifact_status(repo: dict[str, Any], sha: str) -> dict[str, Any]:
    """The GitRepository's status once it has an artifact for `sha`."""
    now = now_iso()
    message = f"stored artifact for revision '{revision(sha)}'"
    return {
        "observedGeneration": repo["metadata"].get("generation", 1),
        "artifact": {
            "revision": revision(sha),
            "path": f"gitrepository/flux-system/site/{sha}.tar.gz",
            "url": f"http://source-controller.flux-system.svc.cluster.local./gitrepository/flux-system/site/{sha}.tar.gz",
            "lastUpdateTime": now,
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": message,
                "observedGeneration": repo["metadata"].get("generation", 1),
                "lastTransitionTime": now,
            },
        ],
    }


def report_source_failure(repo: dict[str, Any], message: str) -> None:
    """The source-controller cannot fetch: Ready False, GitOperationFailed; the artifact it had stays."""
    status = repo.setdefault("status", {})
    status["observedGeneration"] = repo["metadata"].get("generation", 1)
    status["conditions"] = [
        {
            "type": "Ready",
            "status": "False",
            "reason": "GitOperationFailed",
            "message": message,
            "observedGeneration": status["observedGeneration"],
            "lastTransitionTime": now_iso(),
        }
    ]
