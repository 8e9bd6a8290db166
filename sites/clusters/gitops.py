"""The edge's GitOps agent as the control plane sees it: the Flux Kustomization's sync status
(`SyncStatus`), the GitRepository it reads (`GitSource`, pointed at the site's project on onboarding),
and the credentials Secret that GitRepository names."""

import base64
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from sites.clusters.client import ClusterClient
from sites.clusters.errors import ClusterUnavailable


def _custom_object(obj: Any, kind: str) -> dict[str, Any]:
    """A custom object as the client returns it (a dict, not validated: the client has no model for it),
    or ClusterUnavailable when the answer is none: an HTML page the client passes on as a string, `{}`,
    another kind. Such an answer is no status, so the site is neither reached nor judged on it."""
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        shown = repr(obj)[:60]
        raise ClusterUnavailable(f"the site answered with something malformed: not a {kind}: {shown}")
    return obj


FLUX_GROUP = "kustomize.toolkit.fluxcd.io"
FLUX_SOURCE_GROUP = "source.toolkit.fluxcd.io"
FLUX_VERSION = "v1"


@dataclass(frozen=True)
class SyncStatus:
    last_applied_revision: str
    last_attempted_revision: str
    ready: bool | None
    reason: str
    message: str
    since: str = ""  # the Ready condition's lastTransitionTime, as the edge wrote it

    @classmethod
    def of(cls, obj: dict[str, Any]) -> "SyncStatus":
        status = obj.get("status") or {}
        ready: bool | None = None
        reason = message = since = ""
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Ready":
                ready = {"True": True, "False": False}.get(condition.get("status"))
                reason, message = condition.get("reason", ""), condition.get("message", "")
                since = str(condition.get("lastTransitionTime") or "")
        return cls(
            last_applied_revision=status.get("lastAppliedRevision", ""),
            last_attempted_revision=status.get("lastAttemptedRevision", ""),
            ready=ready,
            reason=reason,
            message=message,
            since=since,
        )

    def applied(self, sha: str) -> bool:
        """Flux's contract: the commit is applied when lastAppliedRevision names it and Ready is True."""
        return self.ready is True and revision_sha(self.last_applied_revision) == sha

    def failed_at(self, sha: str) -> bool:
        """The agent tried this commit and reports Ready False."""
        return self.ready is False and revision_sha(self.last_attempted_revision) == sha


@dataclass(frozen=True)
class GitSource:
    """The Flux GitRepository the edge reads: where, with which Secret, and whether it can read it now
    (Ready, with source-controller's reason and message, e.g. "authentication required")."""

    url: str
    secret_name: str
    branch: str
    ready: bool | None
    reason: str
    message: str
    revision: str  # status.artifact.revision, `main@sha1:<sha>`

    @classmethod
    def of(cls, obj: dict[str, Any]) -> "GitSource":
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        ready: bool | None = None
        reason = message = ""
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Ready":
                ready = {"True": True, "False": False}.get(condition.get("status"))
                reason, message = str(condition.get("reason", "")), str(condition.get("message", ""))
        return cls(
            url=str(spec.get("url") or ""),
            secret_name=str((spec.get("secretRef") or {}).get("name") or ""),
            branch=str((spec.get("ref") or {}).get("branch") or ""),
            ready=ready,
            reason=reason,
            message=message,
            revision=str((status.get("artifact") or {}).get("revision") or ""),
        )


def revision_sha(revision: str) -> str:
    """`main@sha1:<sha>` (Flux v2) or `main/<sha>` (older) -> `<sha>`."""
    for separator in ("@sha1:", "/"):
        if separator in revision:
            return revision.rsplit(separator, 1)[1]
    return revision


class GitOpsOperations(ClusterClient):
    """Read the edge's sync status and point its GitRepository, with its Secret."""

    def sync_status(self) -> SyncStatus | None:
        """The edge agent's status: the Flux Kustomization `site` in `flux-system` (None if absent)."""
        api = k8s.CustomObjectsApi(self.api_client)
        obj = self._find(
            api.get_namespaced_custom_object, FLUX_GROUP, FLUX_VERSION, "flux-system", "kustomizations", "site"
        )
        return None if obj is None else SyncStatus.of(_custom_object(obj, "Kustomization"))

    # --- the edge's GitOps source (onboarding points it at the site's project) ----------------------

    def git_source(self, namespace: str = "flux-system", name: str = "site") -> GitSource | None:
        """The Flux GitRepository the edge reads (None if absent): its URL, Secret and Ready condition."""
        api = k8s.CustomObjectsApi(self.api_client)
        obj = self._find(
            api.get_namespaced_custom_object, FLUX_SOURCE_GROUP, FLUX_VERSION, namespace, "gitrepositories", name
        )
        return None if obj is None else GitSource.of(_custom_object(obj, "GitRepository"))

    def point_git_source(
        self, *, url: str, secret_name: str, branch: str = "main", namespace: str = "flux-system", name: str = "site"
    ) -> bool:
        """Make the GitRepository read `url`, with the basic-auth Secret `secret_name` ("" for none), as
        `flux bootstrap` applies its sync objects: created when missing, else a merge patch of the spec.
        False when it already reads exactly that (nothing written)."""
        current = self.git_source(namespace, name)
        if current is not None and (current.url, current.secret_name, current.branch) == (url, secret_name, branch):
            return False
        api = k8s.CustomObjectsApi(self.api_client)
        spec: dict[str, Any] = {"url": url, "ref": {"branch": branch}}
        if current is None:
            if secret_name:
                spec["secretRef"] = {"name": secret_name}
            body = {
                "apiVersion": f"{FLUX_SOURCE_GROUP}/{FLUX_VERSION}",
                "kind": "GitRepository",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"interval": "1m", **spec},
            }
            self._call(
                api.create_namespaced_custom_object, FLUX_SOURCE_GROUP, FLUX_VERSION, namespace, "gitrepositories", body
            )
            return True
        spec["secretRef"] = {"name": secret_name} if secret_name else None  # null removes it (merge patch)
        self._call(
            api.patch_namespaced_custom_object,
            FLUX_SOURCE_GROUP,
            FLUX_VERSION,
            namespace,
            "gitrepositories",
            name,
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )
        return True

    def secret_annotations(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's annotations (never its data), or None when there is no such Secret."""
        secret = self._find(self._core.read_namespaced_secret, name, namespace)
        return None if secret is None else dict(secret.metadata.annotations or {})

    def put_secret(
        self,
        namespace: str,
        name: str,
        *,
        values: dict[str, str],
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Create the Secret with exactly `values`, or replace the data, labels and annotations of the one
        there: "created" or "replaced". The write is conditional on the version read, so a concurrent
        change is a 409 (ClusterUnavailable: try again)."""
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        metadata.update({k: v for k, v in (("annotations", annotations), ("labels", labels)) if v})
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": metadata,
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
        }
        if self._create(self._core.create_namespaced_secret, namespace, body) is not None:
            return "created"
        current = self._call(self._core.read_namespaced_secret, name, namespace)
        metadata["resourceVersion"] = current.metadata.resource_version
        changed = f"secret {namespace}/{name} changed while it was replaced"
        self._if_unchanged(changed, self._core.replace_namespaced_secret, name, namespace, body)
        return "replaced"
