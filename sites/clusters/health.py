"""Workload health as a rollout judges it: Deployments (`DeploymentHealth`, with their Progressing and
Available conditions) and pods (`PodHealth`, with why any container waits)."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from sites.clusters.client import ClusterClient


def _replicas(spec: Any) -> int:
    """A Deployment without `replicas` means one."""
    return 1 if spec is None or spec.replicas is None else int(spec.replicas)


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


class WorkloadOperations(ClusterClient):
    """Read the Deployments and pods of a namespace."""

    def deployments(self, namespace: str, label_selector: str | None = None) -> list[DeploymentHealth]:
        found = self._call(
            k8s.AppsV1Api(self.api_client).list_namespaced_deployment, namespace, label_selector=label_selector
        )
        return [DeploymentHealth.of(item) for item in found.items]

    def pod_health(self, namespace: str, label_selector: str | None = None) -> list[PodHealth]:
        """The pods of a namespace as a rollout judges them: their owner, phase, readiness and why any
        container waits (CrashLoopBackOff, ImagePullBackOff, ...). Read only when a workload is not
        available: a healthy site costs no pod list."""
        found = self._call(self._core.list_namespaced_pod, namespace, label_selector=label_selector)
        return [PodHealth.of(item) for item in found.items]
