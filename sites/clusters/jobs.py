"""Jobs pinned to a node (the wipe and maintenance jobs), the Secret that carries a Job's sensitive
environment, their status (`JobStatus`), and the namespaces they run in."""

import base64
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from sites.clusters.client import ClusterClient


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


class JobOperations(ClusterClient):
    """Create and read Jobs and their Secrets."""

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
        created = self._create(k8s.BatchV1Api(self.api_client).create_namespaced_job, namespace, body)
        if created is None:
            return False
        if secret_env:
            self._create_job_secret(namespace, name, created.metadata.uid, secret_env, labels or {})
        return True

    def ensure_job_secret(self, namespace: str, job_name: str, values: dict[str, str]) -> bool:
        """Create the Job's Secret if it is missing (a step that died between the Job and its Secret).
        False when it exists already; ClusterNotFound when the Job is gone."""
        job = self._call(k8s.BatchV1Api(self.api_client).read_namespaced_job, job_name, namespace)
        return self._create_job_secret(namespace, job_name, job.metadata.uid, values, job.metadata.labels or {})

    def job_secret_exists(self, namespace: str, job_name: str) -> bool:
        return self._exists(self._core.read_namespaced_secret, job_name, namespace)

    def delete_job_secret(self, namespace: str, job_name: str) -> bool:
        """Delete the Job's Secret once the Job is done with it; False when it was gone already."""
        return self._exists(self._core.delete_namespaced_secret, job_name, namespace)

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
        return self._create(self._core.create_namespaced_secret, namespace, body) is not None

    def job(self, namespace: str, name: str) -> JobStatus | None:
        found = self._find(k8s.BatchV1Api(self.api_client).read_namespaced_job, name, namespace)
        return None if found is None else JobStatus.of(found)

    def ensure_namespace(self, name: str) -> None:
        self._create(self._core.create_namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
