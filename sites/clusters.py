"""The Kubernetes adapter for one site: `SiteCluster`, over the official `kubernetes` client.

Nothing else in edgefleet imports `kubernetes`. One ApiClient per site per worker process, built from
the site's decrypted credentials (never the global default configuration, never the kubeconfig loader:
see `_configuration`), and a timeout on every call. Client errors are mapped to three exception types
that workflow steps translate into outcomes: `ClusterUnavailable` (transient: connection refused,
timeout, 5xx, 429 — retry later), `ClusterRefused` (permanent: credentials refused, forbidden) and
`ClusterNotFound` (404).
"""

import base64
import contextlib
import datetime as dt
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import pydantic
import urllib3
import yaml
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sites.kubeconfig import ClusterCredentials, CredentialsInvalid, parse_stored
from sites.models import Cluster


class ClusterError(Exception):
    """Base of the adapter's errors; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ClusterUnavailable(ClusterError):
    """The site did not answer or answered with a transient error: try again later."""


class ClusterRefused(ClusterError):
    """The site refused our credentials or the action: retrying will not help."""


class ClusterNotFound(ClusterError):
    """The object asked for does not exist."""


class ClusterNotConfigured(ClusterError):
    """The site has no API endpoint or credentials recorded."""


def _translate(exc: Exception) -> ClusterError:
    if isinstance(exc, ApiException):
        status = exc.status or 0
        reason = _status_message(exc)
        if status == 429 or status >= 500 or status == 0:
            retry_after = None
            if exc.headers and exc.headers.get("Retry-After", "").isdigit():
                retry_after = float(exc.headers["Retry-After"])
            return ClusterUnavailable(f"HTTP {status}: {reason}", status=status, retry_after=retry_after)
        if status == 404:
            return ClusterNotFound(f"not found: {reason}", status=status)
        if status in (401, 403):
            return ClusterRefused(f"HTTP {status}: {reason}", status=status)
        return ClusterRefused(f"HTTP {status}: {reason}", status=status)
    return ClusterUnavailable(f"{type(exc).__name__}: {exc}")


def _custom_object(obj: Any, kind: str) -> dict[str, Any]:
    """A custom object as the client returns it (a dict, not validated: the client has no model for it),
    or ClusterUnavailable when the answer is none: an HTML page the client passes on as a string, `{}`,
    another kind. Such an answer is no status, so the site is neither reached nor judged on it."""
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        shown = repr(obj)[:60]
        raise ClusterUnavailable(f"the site answered with something malformed: not a {kind}: {shown}")
    return obj


def _status_message(exc: ApiException) -> str:
    try:
        body = yaml.safe_load(exc.body) if exc.body else None
    except yaml.YAMLError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        causes = [
            str(cause["message"])
            for cause in ((body.get("details") or {}).get("causes") or [])
            if isinstance(cause, dict) and cause.get("message")
        ]
        # A refused eviction says which disruption budget refused it only in its causes.
        return "; ".join([str(body["message"]), *causes])
    return str(exc.reason or "error")


class SiteCluster:
    """Operations on one site's K3s API. Build with `SiteCluster.for_cluster(cluster)`."""

    def __init__(self, api_client: k8s.ApiClient, *, site_code: str, timeout: float):
        self.api_client = api_client
        self.site_code = site_code
        self.timeout = timeout

    @classmethod
    def for_cluster(cls, cluster: Cluster) -> "SiteCluster":
        timeout = settings.KUBE_TIMEOUT_SECONDS
        return cls(_client_cache.get(cluster), site_code=cluster.site.code, timeout=timeout)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=(min(5.0, self.timeout), self.timeout), **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc) from exc
        except pydantic.ValidationError as exc:
            # The client validates answers against the API's schema; a malformed one is not a cluster.
            raise ClusterUnavailable(f"the site answered with a malformed {exc.title}") from exc
        except ValueError as exc:
            # Not JSON at all (a captive portal, a proxy's error page): the client's json.loads raised.
            raise ClusterUnavailable(f"the site answered with something malformed: {exc}") from exc

    def version(self) -> str:
        """The cluster's version string, e.g. `v1.31.4+k3s1`."""
        info = self._call(k8s.VersionApi(self.api_client).get_code)
        return str(info.git_version)

    # --- nodes ------------------------------------------------------------------------------------

    def node(self, name: str) -> "NodeInfo | None":
        """The node, or None when the cluster has no node of that name."""
        try:
            return NodeInfo.of(self._call(self._core.read_node, name))
        except ClusterNotFound:
            return None

    def nodes(self, label_selector: str | None = None) -> list["NodeInfo"]:
        found = self._call(self._core.list_node, label_selector=label_selector)
        return [NodeInfo.of(item) for item in found.items]

    def node_leases(self) -> dict[str, dt.datetime]:
        """When each node's kubelet last renewed its Lease (`kube-node-lease`), by node name: one list call.
        A kubelet renews every 10 s; the node controller marks a node Unknown 40 s after renewals stop."""
        found = self._call(k8s.CoordinationV1Api(self.api_client).list_namespaced_lease, NODE_LEASE_NAMESPACE)
        return {
            item.metadata.name: item.spec.renew_time
            for item in found.items
            if item.spec is not None and item.spec.renew_time is not None
        }

    def label_node(self, name: str, labels: dict[str, str | None]) -> None:
        """Set (or, with None, remove) labels; a merge patch, so other labels stay."""
        self._call(self._core.patch_node, name, {"metadata": {"labels": labels}})

    def cordon(self, name: str) -> None:
        self._call(self._core.patch_node, name, {"spec": {"unschedulable": True}})

    def uncordon(self, name: str) -> None:
        self._call(self._core.patch_node, name, {"spec": {"unschedulable": None}})

    def taint(self, name: str, *, key: str, value: str = "", effect: str = "NoExecute") -> None:
        """Add a taint unless the node has it. The taint list is replaced as a whole, so the write is
        conditional on the resourceVersion read: a concurrent change makes it a 409 (try again)."""
        node = self._call(self._core.read_node, name)
        taints = [t.to_dict() for t in (node.spec.taints or [])]
        if any(t.get("key") == key and t.get("effect") == effect for t in taints):
            return
        taints.append({"key": key, "value": value, "effect": effect})
        patch = {"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}}
        try:
            self._call(self._core.patch_node, name, patch, _content_type="application/merge-patch+json")
        except ClusterRefused as exc:
            if exc.status == 409:
                raise ClusterUnavailable(f"node {name} changed while tainting it", status=409) from exc
            raise

    def delete_node(self, name: str) -> bool:
        """Delete the Node object; False when it was already gone (deleting twice is fine)."""
        try:
            self._call(self._core.delete_node, name)
        except ClusterNotFound:
            return False
        return True

    # --- draining ---------------------------------------------------------------------------------

    def pods_on_node(self, name: str) -> list["PodInfo"]:
        found = self._call(self._core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={name}")
        return [PodInfo.of(item) for item in found.items]

    def evict(self, namespace: str, name: str) -> str:
        """Ask the Eviction API to evict a pod: "evicted", "gone", or "blocked" (a disruption budget
        forbids it now, answered 429: wait and ask again)."""
        return self._evict(namespace, name)[0]

    def _evict(self, namespace: str, name: str) -> tuple[str, str]:
        """(outcome, why): `why` is the API server's reason for a blocked eviction (the budget named)."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        try:
            self._call(self._core.create_namespaced_pod_eviction, name, namespace, body)
        except ClusterNotFound:
            return "gone", ""
        except ClusterUnavailable as exc:
            if exc.status == 429:
                return "blocked", str(exc)
            raise
        return "evicted", ""

    def drain(self, name: str) -> "DrainProgress":
        """One pass of `kubectl drain`: evict every pod on the node except DaemonSet and mirror pods.
        Call again until `done`; a blocked eviction is retried on the next pass, never forced."""
        progress = DrainProgress()
        for pod in self.pods_on_node(name):
            if pod.daemonset or pod.mirror or pod.finished:
                continue
            outcome, why = self._evict(pod.namespace, pod.name)
            if outcome == "blocked":
                progress.blocked.append(f"{pod.namespace}/{pod.name}")
                progress.reasons[f"{pod.namespace}/{pod.name}"] = why
            elif outcome == "evicted":
                progress.evicted.append(f"{pod.namespace}/{pod.name}")
        return progress

    # --- jobs -------------------------------------------------------------------------------------

    def create_job(
        self,
        *,
        namespace: str,
        name: str,
        node: str,
        image: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        secret_env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        tolerations: list[dict[str, str]] | None = None,
        deadline_seconds: int = 3600,
    ) -> bool:
        """Create a Job whose pod runs on `node`. False when it exists already (a retried step).

        `tolerations` are exactly those given (none by default): each caller says what its pod must
        tolerate, so an image we did not build never runs past a taint it has no business ignoring.

        `secret_env` values never enter the Job's spec (readable by anyone who may list Jobs, and kept in
        its history): they go in a Secret named like the Job and owned by it, so it is deleted with the
        Job, and the container reads them through `valueFrom.secretKeyRef`. The pod waits for the Secret
        (a kubelet retries a missing one), so creating it right after the Job, which it needs for its
        owner reference, is safe; see `ensure_job_secret` for a step that died in between.
        """
        container: dict[str, Any] = {"name": "main", "image": image}
        if command:
            container["command"] = command
        variables: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted((env or {}).items())]
        variables += [
            {"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": k}}} for k in sorted(secret_env or {})
        ]
        if variables:
            container["env"] = variables
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {
                "backoffLimit": 2,
                "activeDeadlineSeconds": deadline_seconds,
                "template": {
                    "metadata": {"labels": labels or {}},
                    "spec": {
                        "nodeName": node,
                        "restartPolicy": "Never",
                        "tolerations": list(tolerations or []),
                        "containers": [container],
                    },
                },
            },
        }
        try:
            created = self._call(k8s.BatchV1Api(self.api_client).create_namespaced_job, namespace, body)
        except ClusterRefused as exc:
            if exc.status == 409:
                return False
            raise
        if secret_env:
            self._create_job_secret(namespace, name, created.metadata.uid, secret_env, labels or {})
        return True

    def ensure_job_secret(self, namespace: str, job_name: str, values: dict[str, str]) -> bool:
        """Create the Job's Secret if it is missing (a step that died between the Job and its Secret).
        False when it exists already; ClusterNotFound when the Job is gone."""
        job = self._call(k8s.BatchV1Api(self.api_client).read_namespaced_job, job_name, namespace)
        return self._create_job_secret(namespace, job_name, job.metadata.uid, values, job.metadata.labels or {})

    def job_secret_exists(self, namespace: str, job_name: str) -> bool:
        try:
            self._call(self._core.read_namespaced_secret, job_name, namespace)
        except ClusterNotFound:
            return False
        return True

    def delete_job_secret(self, namespace: str, job_name: str) -> bool:
        """Delete the Job's Secret once the Job is done with it; False when it was gone already."""
        try:
            self._call(self._core.delete_namespaced_secret, job_name, namespace)
        except ClusterNotFound:
            return False
        return True

    def _create_job_secret(
        self, namespace: str, job_name: str, job_uid: str, values: dict[str, str], labels: dict[str, str]
    ) -> bool:
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job_uid, "blockOwnerDeletion": True}
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "immutable": True,
            "metadata": {"name": job_name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
        }
        try:
            self._call(self._core.create_namespaced_secret, namespace, body)
        except ClusterRefused as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def job(self, namespace: str, name: str) -> "JobStatus | None":
        try:
            found = self._call(k8s.BatchV1Api(self.api_client).read_namespaced_job, name, namespace)
        except ClusterNotFound:
            return None
        return JobStatus.of(found)

    def ensure_namespace(self, name: str) -> None:
        try:
            self._call(
                self._core.create_namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        except ClusterRefused as exc:
            if exc.status != 409:
                raise

    # --- GitOps sync and workload health ---------------------------------------------------------

    def sync_status(self) -> "SyncStatus | None":
        """The edge agent's status: the Flux Kustomization `site` in `flux-system` (None if absent)."""
        api = k8s.CustomObjectsApi(self.api_client)
        try:
            obj = self._call(
                api.get_namespaced_custom_object, FLUX_GROUP, FLUX_VERSION, "flux-system", "kustomizations", "site"
            )
        except ClusterNotFound:
            return None
        return SyncStatus.of(_custom_object(obj, "Kustomization"))

    # --- the edge's GitOps source (onboarding points it at the site's project) ----------------------

    def git_source(self, namespace: str = "flux-system", name: str = "site") -> "GitSource | None":
        """The Flux GitRepository the edge reads (None if absent): its URL, Secret and Ready condition."""
        api = k8s.CustomObjectsApi(self.api_client)
        try:
            obj = self._call(
                api.get_namespaced_custom_object, FLUX_SOURCE_GROUP, FLUX_VERSION, namespace, "gitrepositories", name
            )
        except ClusterNotFound:
            return None
        return GitSource.of(_custom_object(obj, "GitRepository"))

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
        try:
            secret = self._call(self._core.read_namespaced_secret, name, namespace)
        except ClusterNotFound:
            return None
        return dict(secret.metadata.annotations or {})

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
        try:
            self._call(self._core.create_namespaced_secret, namespace, body)
            return "created"
        except ClusterRefused as exc:
            if exc.status != 409:
                raise
        current = self._call(self._core.read_namespaced_secret, name, namespace)
        metadata["resourceVersion"] = current.metadata.resource_version
        try:
            self._call(self._core.replace_namespaced_secret, name, namespace, body)
        except ClusterRefused as exc:
            if exc.status == 409:
                raise ClusterUnavailable(
                    f"secret {namespace}/{name} changed while it was replaced", status=409
                ) from exc
            raise
        return "replaced"

    def deployments(self, namespace: str, label_selector: str | None = None) -> list["DeploymentHealth"]:
        found = self._call(
            k8s.AppsV1Api(self.api_client).list_namespaced_deployment, namespace, label_selector=label_selector
        )
        return [DeploymentHealth.of(item) for item in found.items]

    def pod_health(self, namespace: str, label_selector: str | None = None) -> list["PodHealth"]:
        """The pods of a namespace as a rollout judges them: their owner, phase, readiness and why any
        container waits (CrashLoopBackOff, ImagePullBackOff, ...). Read only when a workload is not
        available: a healthy site costs no pod list."""
        found = self._call(self._core.list_namespaced_pod, namespace, label_selector=label_selector)
        return [PodHealth.of(item) for item in found.items]

    @property
    def _core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)


NODE_LEASE_NAMESPACE = "kube-node-lease"
FLUX_GROUP = "kustomize.toolkit.fluxcd.io"
FLUX_SOURCE_GROUP = "source.toolkit.fluxcd.io"
FLUX_VERSION = "v1"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ready: bool | None  # None: the node stopped reporting (condition Unknown)
    unschedulable: bool
    labels: dict[str, str]
    taints: list[str]
    # The Ready condition: since when it has had this status (lastTransitionTime), the kubelet's last
    # status post (lastHeartbeatTime), and its reason and message. None when the node has no condition.
    ready_since: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    ready_reason: str = ""
    ready_message: str = ""

    @classmethod
    def of(cls, node: Any) -> "NodeInfo":
        ready: bool | None = False
        condition = next(
            (c for c in ((node.status.conditions if node.status else None) or []) if c.type == "Ready"), None
        )
        if condition is not None:
            ready = {"True": True, "False": False}.get(condition.status)
        spec = node.spec
        return cls(
            name=node.metadata.name,
            ready=ready,
            unschedulable=bool(spec and spec.unschedulable),
            labels=dict(node.metadata.labels or {}),
            taints=[f"{t.key}:{t.effect}" for t in ((spec.taints if spec else None) or [])],
            ready_since=condition.last_transition_time if condition is not None else None,
            heartbeat_at=condition.last_heartbeat_time if condition is not None else None,
            ready_reason=(condition.reason or "") if condition is not None else "",
            ready_message=(condition.message or "") if condition is not None else "",
        )


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    daemonset: bool
    mirror: bool
    finished: bool

    @classmethod
    def of(cls, pod: Any) -> "PodInfo":
        owners = pod.metadata.owner_references or []
        return cls(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            daemonset=any(o.kind == "DaemonSet" for o in owners),
            mirror=MIRROR_ANNOTATION in (pod.metadata.annotations or {}),
            finished=bool(pod.status and pod.status.phase in ("Succeeded", "Failed")),
        )


@dataclass
class DrainProgress:
    evicted: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # blocked pod -> why (names the disruption budget)

    @property
    def done(self) -> bool:
        """Nothing was left to evict on this pass (evicted pods may still be terminating; pass again)."""
        return not self.evicted and not self.blocked


@dataclass(frozen=True)
class JobStatus:
    succeeded: int
    failed: int
    active: int
    complete: bool
    failed_for_good: bool
    message: str

    @classmethod
    def of(cls, job: Any) -> "JobStatus":
        status = job.status
        conditions = {c.type: c for c in ((status.conditions if status else None) or []) if c.status == "True"}
        failed = conditions.get("Failed")
        return cls(
            succeeded=(status.succeeded if status else 0) or 0,
            failed=(status.failed if status else 0) or 0,
            active=(status.active if status else 0) or 0,
            complete="Complete" in conditions,
            failed_for_good=failed is not None,
            message=(failed.message or failed.reason or "") if failed else "",
        )


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


def _replicas(spec: Any) -> int:
    """A Deployment without `replicas` means one."""
    return 1 if spec is None or spec.replicas is None else int(spec.replicas)


def revision_sha(revision: str) -> str:
    """`main@sha1:<sha>` (Flux v2) or `main/<sha>` (older) -> `<sha>`."""
    for separator in ("@sha1:", "/"):
        if separator in revision:
            return revision.rsplit(separator, 1)[1]
    return revision


@dataclass(frozen=True)
class WorkloadCondition:
    """One condition of a workload's status (Progressing, Available): True/False/None (Unknown), its
    reason and message, since when it has had this status, and when it was last updated."""

    status: bool | None
    reason: str
    message: str
    since: dt.datetime | None
    updated: dt.datetime | None

    @classmethod
    def of(cls, condition: Any) -> "WorkloadCondition":
        return cls(
            status={"True": True, "False": False}.get(condition.status),
            reason=condition.reason or "",
            message=condition.message or "",
            since=condition.last_transition_time,
            updated=getattr(condition, "last_update_time", None),
        )


def _conditions(status: Any) -> dict[str, WorkloadCondition]:
    return {c.type: WorkloadCondition.of(c) for c in ((status.conditions if status else None) or [])}


# Kubernetes' reason for a rollout that made no progress for spec.progressDeadlineSeconds.
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class DeploymentHealth:
    name: str
    generation: int
    observed_generation: int
    replicas: int
    updated: int
    available: int
    namespace: str = ""
    ready: int = 0
    total: int = 0  # status.replicas: pods of every ReplicaSet, old ones included
    progress_deadline_seconds: int | None = None  # spec.progressDeadlineSeconds (None: no deadline)
    progressing: WorkloadCondition | None = None
    available_condition: WorkloadCondition | None = None

    @classmethod
    def of(cls, deployment: Any) -> "DeploymentHealth":
        status, spec = deployment.status, deployment.spec
        conditions = _conditions(status)
        deadline = spec.progress_deadline_seconds if spec is not None else None
        return cls(
            name=deployment.metadata.name,
            namespace=deployment.metadata.namespace or "",
            generation=deployment.metadata.generation or 0,
            observed_generation=(status.observed_generation if status else 0) or 0,
            replicas=_replicas(spec),
            updated=(status.updated_replicas if status else 0) or 0,
            available=(status.available_replicas if status else 0) or 0,
            ready=(status.ready_replicas if status else 0) or 0,
            total=(status.replicas if status else 0) or 0,
            progress_deadline_seconds=None if deadline is None or deadline >= 2**31 - 1 else int(deadline),
            progressing=conditions.get("Progressing"),
            available_condition=conditions.get("Available"),
        )

    @property
    def healthy(self) -> bool:
        """Available at its new generation: the controller saw the change and every replica is updated
        and available (`kubectl rollout status` semantics)."""
        return (
            self.observed_generation >= self.generation
            and self.updated >= self.replicas
            and self.available >= self.replicas
        )

    @property
    def deadline_exceeded(self) -> bool:
        """The Deployment itself says its rollout is broken: Progressing False with
        ProgressDeadlineExceeded, about its current generation (an older verdict says nothing new)."""
        return (
            self.observed_generation >= self.generation
            and self.progressing is not None
            and self.progressing.status is False
            and self.progressing.reason == PROGRESS_DEADLINE_EXCEEDED
        )


@dataclass(frozen=True)
class ContainerWaiting:
    """A container that is not running, and why (the kubelet's reason and message)."""

    container: str
    reason: str
    message: str
    restarts: int


@dataclass(frozen=True)
class PodHealth:
    namespace: str
    name: str
    owner_kind: str  # of its controller: ReplicaSet, DaemonSet, StatefulSet, Job, or ""
    owner_name: str
    phase: str
    ready: bool
    waiting: tuple[ContainerWaiting, ...]

    @classmethod
    def of(cls, pod: Any) -> "PodHealth":
        owner = next((o for o in (pod.metadata.owner_references or []) if o.controller), None)
        status = pod.status
        ready = any(c.type == "Ready" and c.status == "True" for c in ((status.conditions if status else None) or []))
        waiting = []
        for container in [*((status.init_container_statuses if status else None) or []),
                          *((status.container_statuses if status else None) or [])]:  # fmt: skip
            state = container.state.waiting if container.state else None
            if state is not None and state.reason:
                waiting.append(
                    ContainerWaiting(
                        container=container.name,
                        reason=state.reason,
                        message=state.message or "",
                        restarts=container.restart_count or 0,
                    )
                )
        return cls(
            namespace=pod.metadata.namespace or "",
            name=pod.metadata.name,
            owner_kind=owner.kind if owner else "",
            owner_name=owner.name if owner else "",
            phase=(status.phase if status else "") or "",
            ready=ready and not pod.metadata.deletion_timestamp,
            waiting=tuple(waiting),
        )

    def deployment(self) -> str:
        """The Deployment the pod belongs to, by its ReplicaSet's name `<deployment>-<template hash>`."""
        if self.owner_kind != "ReplicaSet" or "-" not in self.owner_name:
            return ""
        return self.owner_name.rsplit("-", 1)[0]


class _ClientCache:
    """One ApiClient per site per process, rebuilt when the cluster's credentials change; bounded LRU."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._clients: OrderedDict[int, tuple[str, k8s.ApiClient]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cluster: Cluster) -> k8s.ApiClient:
        if not cluster.api_url or not cluster.credentials_encrypted:
            raise ClusterNotConfigured(f"site {cluster.site.code} has no cluster endpoint or credentials")
        fingerprint = hashlib.sha256(f"{cluster.api_url}\n{cluster.credentials_encrypted}".encode()).hexdigest()
        with self._lock:
            cached = self._clients.get(cluster.pk)
            if cached and cached[0] == fingerprint:
                self._clients.move_to_end(cluster.pk)
                return cached[1]
        api_client = k8s.ApiClient(_configuration(cluster))
        with self._lock:
            old = self._clients.pop(cluster.pk, None)
            self._clients[cluster.pk] = (fingerprint, api_client)
            while len(self._clients) > self.capacity:
                _, (_, evicted) = self._clients.popitem(last=False)
                evicted.close()
        if old:
            old[1].close()
        return api_client

    def clear(self) -> None:
        with self._lock:
            for _, api_client in self._clients.values():
                api_client.close()
            self._clients.clear()


_client_cache = _ClientCache(capacity=settings.KUBE_CLIENT_CACHE_SIZE)


def _configuration(cluster: Cluster) -> k8s.Configuration:
    """The client's configuration, built field by field from the checked credentials.

    Never the kubeconfig loader: it would run `exec` and `auth-provider` commands, read files and follow
    proxies that a stored kubeconfig names. The stored value is parsed again here exactly as on write
    (`sites.kubeconfig`), so a row that got around the services is refused with a sentence, not run.
    """
    credentials = _checked_credentials(cluster)
    configuration = k8s.Configuration()
    configuration.host = credentials.server
    if credentials.token:
        configuration.api_key = {"authorization": credentials.token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    configuration.verify_ssl = not credentials.insecure_skip_tls_verify
    try:
        if credentials.ca_pem:
            configuration.ssl_ca_cert = _tls_file(credentials.ca_pem, ".crt")
        if credentials.client_cert_pem and credentials.client_key_pem:
            # One file holding the certificate and its key: ssl's load_cert_chain reads both from it.
            configuration.cert_file = _tls_file(credentials.client_cert_pem + credentials.client_key_pem, ".pem")
    except OSError as exc:
        raise ClusterUnavailable(
            f"cannot write the TLS files of site {cluster.site.code} under {settings.DATA_DIR}: {exc.strerror}"
        ) from exc
    # No silent urllib3 retries: a step decides when to try again, and a timeout must mean the timeout.
    configuration.retries = 0
    configuration.connection_pool_maxsize = 2
    return configuration


def _checked_credentials(cluster: Cluster) -> ClusterCredentials:
    site = cluster.site.code
    try:
        secret = cluster.credentials()
    except (ImproperlyConfigured, ValueError) as exc:  # a key no longer configured, or not JSON
        raise ClusterRefused(f"the stored credentials of site {site} cannot be read: {exc}") from exc
    try:
        return parse_stored(secret, api_url=cluster.api_url, production=settings.PRODUCTION)
    except CredentialsInvalid as exc:
        raise ClusterRefused(
            f"the stored credentials of site {site} are refused and were not used: {exc.message}; "
            "set them again through the API or the admin"
        ) from exc


def _tls_file(content: str, suffix: str) -> str:
    """The client wants paths for the CA and the client certificate: one file per distinct content under
    DATA_DIR/kube-tls (0700), named by the content's sha256 (no path ever comes from input), written 0600
    under a temporary name and renamed into place, so another process never reads half a file."""
    directory = settings.DATA_DIR / "kube-tls"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / (hashlib.sha256(content.encode()).hexdigest()[:32] + suffix)
    if path.exists():
        return str(path)
    fd, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return str(path)
